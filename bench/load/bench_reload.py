#!/usr/bin/python3
"""What a SIGHUP reload costs (issue: operations).

  bench/load/bench_reload.py [--build DIR] [--n N] [--reps R] [--reloads K]

Load: h2load, small gRPC Predict over h2c (-c 4 -m 16), through tfgate (2 workers, the native
transport) to one tfs-sim. Rows, interleaved and repeated: no reload; a reload every 100 ms for
the whole run that keeps the pools (the route alternates between two pools on the same
tfs-sim, so every reload changes where calls go, over the same connections); and one that
also changes a pool setting, so every reload builds new pools with new connections.
Reported: requests done and failed, req/s, p50/p99 from h2load's per-request log, tfgate CPU
per request. Then memory: tfgate's RSS after warm-up, after K rebuilding reloads with no
traffic and after another K, to show that retired configurations are freed.
"""
import os
import signal
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from benchlib import GRPC_HEADERS, PREDICT, harness  # noqa: E402


def reloads_done(admin):
    import urllib.request
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith('tfgate_config_reloads_total{result="ok"}'):
            return int(float(line.split()[-1]))
    return 0


def main():
    a = benchlib.parse_args(__doc__, [("--reloads", {"type": int, "default": 200})])
    rows, memory = [], []
    with tempfile.TemporaryDirectory() as tmp:
        body = os.path.join(tmp, "small.grpc")
        benchlib.write_predict_body(body, [1.0, 2.0, 3.0, 4.0], False)
        sim = harness.Sim("--threads", "1")
        path = os.path.join(tmp, "gw.json")

        def write(route, keepalive_ms=30000):
            harness.write_json(tmp, "gw.json", {
                "workers": 2, "listen": [{"address": "127.0.0.1:0"}], "admin": {"address": "127.0.0.1:0"},
                "pools": {"a": {"targets": [sim.addr], "keepalive_ms": keepalive_ms},
                          "b": {"targets": [sim.addr]}},
                "routes": [{"model": "*", "pool": route}]})
        write("a")
        gw = harness.Gateway("--config", path)
        admin = int(gw.wait_line("admin listening on").rsplit(":", 1)[1].split()[0])
        url = "http://127.0.0.1:%d%s" % (gw.port, PREDICT)

        def reload(route, rebuild=False):
            # a keepalive that differs from the running one makes new pools
            write(route, 30000 + (route == "b") if rebuild else 30000)
            want = reloads_done(admin) + 1
            gw.signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while reloads_done(admin) < want and time.monotonic() < deadline:
                time.sleep(0.005)

        try:
            benchlib.measure([gw.pid], url, body, min(a.n, 5000), 4, 16, GRPC_HEADERS)  # warm-up
            runs = {"no reload": [], "reload every 100 ms, pools kept": [],
                    "reload every 100 ms, pools rebuilt": []}
            counts = {label: [] for label in runs}
            for _ in range(a.reps):
                for label in runs:
                    stop = threading.Event()
                    n_reloads = [0]

                    def reloader():
                        route = "a"
                        while not stop.is_set():
                            route = "b" if route == "a" else "a"
                            reload(route, rebuild=label.endswith("rebuilt"))
                            n_reloads[0] += 1
                            stop.wait(0.1)
                    t = threading.Thread(target=reloader) if label != "no reload" else None
                    if t:
                        t.start()
                    try:
                        runs[label].append(benchlib.measure([gw.pid], url, body, a.n, 4, 16, GRPC_HEADERS))
                    finally:
                        stop.set()
                        if t:
                            t.join()
                    if t:
                        counts[label].append(n_reloads[0])
            for label, rs in runs.items():
                rows.append((label, benchlib.median_run(rs)))
            # memory: idle reloads
            time.sleep(1)
            memory.append(("after warm-up and the load runs", benchlib.rss_kb(gw.pid)))
            for k in range(2):
                for i in range(a.reloads):
                    reload("b" if i % 2 else "a", rebuild=True)
                time.sleep(1)  # the main thread frees retired configurations within 200 ms
                memory.append(("after %d more idle reloads (pools rebuilt)" % a.reloads,
                               benchlib.rss_kb(gw.pid)))
        finally:
            gw.stop()
            sim.stop()

    print("SIGHUP reload under load, medians of %d runs; %s" % (a.reps, benchlib.header()))
    print()
    print("| run | reloads during the run | requests done | failed | req/s | p50 ms | p99 ms | tfgate CPU µs/req |")
    print("|---|---|---|---|---|---|---|---|")
    for label, med in rows:
        rl = "—" if label == "no reload" else "%d-%d" % (min(counts[label]), max(counts[label]))
        print("| %s | %s | %d | %d | %.0f | %.2f | %.2f | %.1f |" % (
            label, rl, med["succeeded"], med["failed"], med["rps"], med["p50"], med["p99"],
            list(med["cpu_us_per_req"].values())[0]))
    print()
    print("| tfgate RSS | KiB |")
    print("|---|---|")
    for label, kb in memory:
        print("| %s | %d |" % (label, kb))
    if len(memory) == 3:
        print()
        print("growth over the last %d reloads: %.1f KiB per reload" % (
            a.reloads, (memory[2][1] - memory[1][1]) / a.reloads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
