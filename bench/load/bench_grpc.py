#!/usr/bin/python3
"""gRPC passthrough cost: tfgate (native and grpc-core upstream transports) against Debian's
nginx (grpc_pass, upstream keepalive) in front of the same tfs-sim, with tfs-sim direct as the
baseline, all in one run (issue: gateway core).

  bench/load/bench_grpc.py [--build DIR] [--n N] [--reps R] [--conns C]

Rows: small Predict (4 floats) and large Predict (224x224x3 floats in tensor_content), driven
by h2load over h2c with gRPC framing; requests/s, p50/p99 from h2load's per-request log, and
CPU µs per request of the proxy process and of tfs-sim from /proc. Both proxies run one worker
process (nginx with master_process off) so their CPU is one process each. Then resident memory
with C idle HTTP/2 connections (preface and SETTINGS exchanged), per connection.
"""
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from benchlib import harness  # noqa: E402

from benchlib import GRPC_HEADERS, PREDICT  # noqa: E402

NGINX_CONF = """
worker_processes 1;
master_process off;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx.err warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream tfs {{
        server {sim};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} http2;
        keepalive_requests 100000000;  # the default 1000 closes h2load's connections mid-run
        client_max_body_size 64m;
        client_body_buffer_size 4m;
        http2_max_concurrent_streams 128;
        location / {{
            grpc_pass grpc://tfs;
            grpc_buffer_size 1m;
        }}
    }}
}}
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def idle_connections_memory(pid, port, n):
    """RSS growth of |pid| per idle HTTP/2 connection (client preface + SETTINGS, then idle)."""
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    time.sleep(0.3)
    before = benchlib.rss_kb(pid)
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(preface)
            socks.append(s)
        time.sleep(1.0)
        for s in socks:  # read the server's SETTINGS so both sides are fully set up
            s.settimeout(2)
            try:
                s.recv(4096)
            except OSError:
                pass
        time.sleep(0.5)
        after = benchlib.rss_kb(pid)
    finally:
        for s in socks:
            s.close()
    return (after - before) * 1024 / n


def plot(results, path):
    """Throughput and the proxy's CPU per call, per target, for both request sizes
    (python3-matplotlib): one figure from the same run as the table."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cases = list(dict.fromkeys(r[0] for r in results))
    fig, axes = plt.subplots(len(cases), 2, figsize=(10, 3.2 * len(cases)), dpi=110, squeeze=False)
    for row, cname in enumerate(cases):
        rows = [r for r in results if r[0] == cname]
        names = [r[1] for r in rows]
        colors = ["#999999" if r[6] is None else "#1f77b4" if "tfgate" in r[1] else "#d62728" for r in rows]
        ax = axes[row][0]
        ax.barh(names, [r[5]["rps"] for r in rows], color=colors)
        ax.set_xlabel("requests/s (higher is better)")
        ax.set_title(cname + ": throughput", fontsize=10)
        ax.invert_yaxis()
        for i, r in enumerate(rows):
            ax.text(r[5]["rps"], i, " %.0f  (p99 %.1f ms)" % (r[5]["rps"], r[5]["p99"]), va="center",
                    fontsize=8)
        ax.set_xlim(0, max(r[5]["rps"] for r in rows) * 1.45)
        ax = axes[row][1]
        prox = [r for r in rows if r[6] is not None]
        vals = [r[5]["cpu_us_per_req"][r[6]] for r in prox]
        ax.barh([r[1] for r in prox], vals, color=[c for c, r in zip(colors, rows) if r[6] is not None])
        ax.set_xlabel("proxy CPU µs per request (lower is better)")
        ax.set_title(cname + ": cost", fontsize=10)
        ax.invert_yaxis()
        for i, v in enumerate(vals):
            ax.text(v, i, " %.1f" % v, va="center", fontsize=8)
        ax.set_xlim(0, max(vals) * 1.25)
    fig.suptitle("gRPC passthrough in front of one tfs-sim (h2load over h2c, medians)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    print("plot: %s" % path)


def main():
    a = benchlib.parse_args(__doc__, [("--conns", {"type": int, "default": 1000}),
                                      ("--plot", {"help": "write throughput and cost bars (PNG) here"})])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))

    results, memory = [], []
    with tempfile.TemporaryDirectory() as tmp:
        small, large = os.path.join(tmp, "small.grpc"), os.path.join(tmp, "large.grpc")
        benchlib.write_predict_body(small, [1.0, 2.0, 3.0, 4.0], False)
        benchlib.write_predict_body(large, [0.5] * (224 * 224 * 3), True)
        sim = harness.Sim("--threads", "1")
        gw = harness.Gateway("--backend", sim.addr, "--workers", "1", "--channels", "2")
        gwc = harness.Gateway("--backend", sim.addr, "--workers", "1", "--channels", "2",
                              "--transport", "grpc-core")
        nport = free_port()
        for d in ("body", "proxy", "fcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(tmp, d), exist_ok=True)
        conf = os.path.join(tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(tmp=tmp, sim=sim.addr, port=nport))
        nginx = subprocess.Popen(["nginx", "-c", conf, "-p", tmp], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            for _ in range(100):
                if not harness.port_is_free(nport):
                    break
                time.sleep(0.05)
            targets = [("tfs-sim direct", None, sim.port), ("tfgate (native)", gw.pid, gw.port),
                       ("tfgate (grpc-core)", gwc.pid, gwc.port), ("nginx grpc_pass", nginx.pid, nport)]
            # memory first, on fresh processes: after the load runs the heaps hold free memory
            # that new connections would reuse, and the growth would read as zero
            for tname, pid, port in targets[1:]:
                memory.append((tname, benchlib.rss_kb(pid), idle_connections_memory(pid, port, a.conns)))
            cases = [("small Predict (4 floats)", small, a.n, 4, 32),
                     ("large Predict (224x224x3 floats)", large, max(1000, a.n // 30), 4, 4)]
            for cname, body, n, c, m in cases:
                for tname, pid, port in targets:
                    url = "http://127.0.0.1:%d%s" % (port, PREDICT)
                    pids = [sim.pid] + ([pid] if pid else [])
                    benchlib.measure(pids, url, body, min(n, 3000), c, m, GRPC_HEADERS)  # warm-up
                    runs = []
                    sim.control(op="reset_stats")
                    for _ in range(a.reps):
                        runs.append(benchlib.measure(pids, url, body, n, c, m, GRPC_HEADERS))
                    st = sim.stats()
                    med = benchlib.median_run(runs)
                    results.append((cname, tname, c, m, n, med, pid, st["errors"], st["calls"]["Predict"]))
        finally:
            os.killpg(nginx.pid, 15)
            nginx.wait(timeout=10)
            gw.stop()
            gwc.stop()
            sim.stop()

    print("gRPC passthrough, medians of %d runs; %s" % (a.reps, benchlib.header()))
    print()
    print("| request | target | h2load -c/-m | requests done | req/s | p50 ms | p99 ms | proxy CPU µs/req | tfs-sim CPU µs/req | gRPC errors |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for cname, tname, c, m, n, med, pid, errors, calls in results:
        cpu = med["cpu_us_per_req"]
        proxy = "%.1f" % cpu[pid] if pid else "—"
        simcpu = [v for k, v in cpu.items() if k != pid][0]
        print("| %s | %s | %d/%d | %d | %.0f | %.2f | %.2f | %s | %.1f | %d |" % (
            cname, tname, c, m, med["succeeded"], med["rps"], med["p50"], med["p99"], proxy, simcpu, errors))
    print()
    print("| target | RSS at start | RSS per idle HTTP/2 connection (%d connections) |" % a.conns)
    print("|---|---|---|")
    for tname, start, per in memory:
        print("| %s | %.1f MiB | %.1f KiB |" % (tname, start / 1024, per / 1024))
    if a.plot:
        print()
        plot(results, a.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
