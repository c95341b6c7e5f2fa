#!/usr/bin/python3
"""GPU saturation spillover on versus off, under overload (issue: traffic management).

  bench/load/bench_spillover.py [--build DIR] [--n N] [--reps R]

Backends (tfs-sim): a batching GPU (--device gpu: batches of up to 8, 20 ms each, one at a
time, at most 16 waiting, beyond that UNAVAILABLE "queue ... is full") and a CPU replica
(5 ms per request, 2 at a time). Two tfgate processes (one worker each) in front of them:
  - spillover off: every request goes to the GPU pool;
  - spillover on:  the GPU pool takes at most 16 in flight, the rest spills to the CPU pool
    (and a "queue full" answer is retried there, within the retry budget).
The load is mixed and more than the GPU alone can take: two h2load clients at once over REST
(HTTP/2), one sending single rows, one batches of 8 rows, 32 requests in flight in all (the
GPU holds 8 computing and 16 waiting). Reported per setting: requests, errors (any non-2xx:
503 from a full queue, 429 when all pools are saturated), error rate, p50/p99 latency of all
requests and of the answered ones (errors come back fast and would flatter the first),
medians of --reps.
"""
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from benchlib import harness  # noqa: E402

PATH = "/v1/models/half_plus_two:predict"


def run_h2load(url, body, n, c, m, out):
    with tempfile.NamedTemporaryFile(prefix="h2load-", suffix=".log", delete=False) as lf:
        log = lf.name
    p = subprocess.run(["h2load", "-n", str(n), "-c", str(c), "-m", str(m), "-d", body, "--log-file", log, url],
                       capture_output=True, text=True, timeout=600)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", p.stdout)
    lat, ok_lat = [], []
    with open(log) as f:
        for line in f:
            parts = line.split()  # start µs, HTTP status, duration µs
            if len(parts) >= 3:
                lat.append(int(parts[2]) / 1000.0)
                if parts[1].startswith("2"):
                    ok_lat.append(int(parts[2]) / 1000.0)
    os.unlink(log)
    out.append({"ok": int(codes.group(1)), "errors": int(codes.group(3)) + int(codes.group(4)),
                "latencies": lat, "ok_latencies": ok_lat, "raw": p.stdout})


def measure(port, small, big, n):
    url = "http://127.0.0.1:%d%s" % (port, PATH)
    out = []
    threads = [threading.Thread(target=run_h2load, args=(url, small, n, 4, 6, out)),
               threading.Thread(target=run_h2load, args=(url, big, n // 4, 2, 4, out))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat = sorted(l for r in out for l in r["latencies"])
    ok_lat = sorted(l for r in out for l in r["ok_latencies"])
    pct = lambda v, q: v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")
    done = sum(r["ok"] + r["errors"] for r in out)
    errors = sum(r["errors"] for r in out)
    return {"done": done, "errors": errors, "rate": errors / max(1, done), "p50": pct(lat, 0.5),
            "p99": pct(lat, 0.99), "ok_p50": pct(ok_lat, 0.5), "ok_p99": pct(ok_lat, 0.99),
            "ok_latencies": ok_lat}


def plot(rows, runs_by_label, path):
    """Latency CDF of the answered requests, spillover off and on (python3-matplotlib)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for label, med, _, _ in rows:
        lat = runs_by_label[label]["ok_latencies"]
        if not lat:
            continue
        ys = [(i + 1) / len(lat) for i in range(len(lat))]
        ax.plot(lat, ys, label="spillover %s: %.1f%% errors, p99 %.1f ms" % (label, 100 * med["rate"],
                                                                               med["ok_p99"]))
    ax.set_xlabel("latency of answered requests (ms)")
    ax.set_ylabel("fraction of requests")
    ax.set_title("GPU overload, mixed REST load: spillover to the CPU pool off vs on")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    print("plot: %s" % path)


def main():
    a = benchlib.parse_args(__doc__, [("--plot", {"help": "write a latency CDF (PNG) here"})])
    n = max(2000, a.n // 10)
    rows = []
    last = {}
    with tempfile.TemporaryDirectory() as tmp:
        small, big = os.path.join(tmp, "small.json"), os.path.join(tmp, "big.json")
        with open(small, "w") as f:
            f.write('{"instances": [1.0]}')
        with open(big, "w") as f:
            f.write('{"instances": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]}')
        gpu = harness.Sim("--device", "gpu", "--compute-us", "20000", "--per-item-us", "0", "--max-batch", "8",
                          "--batch-window-us", "1000", "--queue-limit", "16", "--concurrency", "1")
        cpu = harness.Sim("--compute-us", "5000", "--concurrency", "2")

        def gateway(name, spill):
            gpu_pool = {"device": "gpu", "targets": [gpu.addr]}
            route = {"model": "*", "pool": "gpu"}
            if spill:
                gpu_pool["max_inflight"] = 16
                route["fallbacks"] = ["cpu"]
            cfg = {"workers": 1, "listen": [{"address": "127.0.0.1:0"}],
                   "pools": {"gpu": gpu_pool, "cpu": {"targets": [cpu.addr]}}, "routes": [route]}
            return harness.Gateway("--config", harness.write_json(tmp, name + ".json", cfg))

        gws = [("off", gateway("off", False)), ("on", gateway("on", True))]
        try:
            for label, gw in gws:
                measure(gw.port, small, big, 500)  # warm-up
                runs = [measure(gw.port, small, big, n) for _ in range(a.reps)]
                last[label] = runs[-1]
                med = {k: statistics.median(r[k] for r in runs)
                       for k in ("done", "errors", "rate", "p50", "p99", "ok_p50", "ok_p99")}
                rows.append((label, med, gpu.stats()["calls"]["Predict"], cpu.stats()["calls"]["Predict"]))
                gpu.control(op="reset_stats")
                cpu.control(op="reset_stats")
        finally:
            for _, gw in gws:
                gw.stop()
            gpu.stop()
            cpu.stop()

    print("GPU saturation spillover under overload, medians of %d runs; %s" % (a.reps, benchlib.header()))
    print()
    print("| spillover | requests | errors | error rate | p50 ms (all) | p99 ms (all) | p50 ms (2xx) | p99 ms (2xx) | GPU calls | CPU calls |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, med, g, c in rows:
        print("| %s | %d | %d | %.1f%% | %.2f | %.2f | %.2f | %.2f | %d | %d |" % (
            label, med["done"], med["errors"], 100 * med["rate"], med["p50"], med["p99"], med["ok_p50"],
            med["ok_p99"], g, c))
    if a.plot:
        plot(rows, last, a.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
