#!/usr/bin/python3
"""tfs-sim throughput under h2load: the baseline every gateway benchmark is compared with, and
the proof that tfs-sim is not the bottleneck (issue: foundation).

  bench/load/bench_sim.py [--build DIR] [--n N] [--reps R]

Small Predict: half_plus_two with 4 floats. Large Predict: 224x224x3 floats in tensor_content
(602 KB). Prints a markdown table of medians over R runs.
"""
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from benchlib import harness  # noqa: E402

from benchlib import GRPC_HEADERS, PREDICT  # noqa: E402


def main():
    a = benchlib.parse_args(__doc__)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        small, large = os.path.join(tmp, "small.grpc"), os.path.join(tmp, "large.grpc")
        benchlib.write_predict_body(small, [1.0, 2.0, 3.0, 4.0], False)
        benchlib.write_predict_body(large, [0.5] * (224 * 224 * 3), True)
        for threads in (1, 2):
            sim = harness.Sim("--threads", str(threads))
            try:
                url = "http://%s%s" % (sim.addr, PREDICT)
                for name, body, n, c, m in (("small Predict (4 floats)", small, a.n, 4, 32),
                                            ("large Predict (224x224x3 floats)", large, max(1000, a.n // 30), 4, 4)):
                    benchlib.measure([sim.pid], url, body, min(n, 2000), c, m, GRPC_HEADERS)  # warm-up
                    runs = [benchlib.measure([sim.pid], url, body, n, c, m, GRPC_HEADERS) for _ in range(a.reps)]
                    med = benchlib.median_run(runs)
                    st = sim.stats()
                    assert st["errors"] == 0, st
                    rows.append((name, threads, c, m, n, med))
            finally:
                sim.stop()

    print("tfs-sim under h2load, medians of %d runs; %s" % (a.reps, benchlib.header()))
    print()
    print("| request | sim threads | h2load -c/-m | requests | req/s | p50 ms | p99 ms | tfs-sim CPU µs/req | failed |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, threads, c, m, n, med in rows:
        cpu = list(med["cpu_us_per_req"].values())[0]
        print("| %s | %d | %d/%d | %d | %.0f | %.2f | %.2f | %.1f | %d |" % (
            name, threads, c, m, n, med["rps"], med["p50"], med["p99"], cpu, med["failed"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
