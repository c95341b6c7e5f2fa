#!/usr/bin/python3
"""REST through tfgate beside gRPC through tfgate, in one run (issue: REST API).

  bench/load/bench_rest.py [--build DIR] [--n N] [--reps R]

Rows, all against one tfgate (native upstream, one worker) in front of one tfs-sim:
  - gRPC Predict, small (4 floats) and large (224x224x3 floats in tensor_content): the baseline;
  - REST :predict with the same tensors as JSON ({"instances": [...]}) over HTTP/2 (h2c) and
    HTTP/1.1 (h2load --h1, keep-alive, no pipelining).
The large REST body is the image as Python's json.dumps writes float32 pixels / 255 (shortest
double form, ~2.9 MB); its answer is the same-shaped tensor as TF Serving's JSON (~2 MB).
Reported: requests/s, p50/p99 (h2load's per-request log), and CPU µs per request of tfgate and
of tfs-sim from /proc; medians of --reps runs. REST's extra cost over gRPC is tfgate's CPU
column (the backend does the same work in both).
"""
import json
import os
import random
import struct
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from benchlib import harness  # noqa: E402

from benchlib import GRPC_HEADERS, PREDICT  # noqa: E402
REST = "/v1/models/half_plus_two:predict"


def image_values():
    rnd = random.Random(7)
    # float32(k / 255) as a Python float: what a client's array.tolist() holds
    return [struct.unpack("<f", struct.pack("<f", rnd.randrange(256) / 255.0))[0] for _ in range(224 * 224 * 3)]


def main():
    a = benchlib.parse_args(__doc__)

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        img = image_values()
        small_g, large_g = os.path.join(tmp, "small.grpc"), os.path.join(tmp, "large.grpc")
        benchlib.write_predict_body(small_g, [1.0, 2.0, 3.0, 4.0], False)
        benchlib.write_predict_body(large_g, img, True)
        small_j, large_j = os.path.join(tmp, "small.json"), os.path.join(tmp, "large.json")
        with open(small_j, "w") as f:
            f.write('{"instances": [1.0, 2.0, 3.0, 4.0]}')
        with open(large_j, "w") as f:
            # one instance of shape [224, 224, 3]: the same tensor as the gRPC body, batched
            rows = [[img[(y * 224 + x) * 3:(y * 224 + x) * 3 + 3] for x in range(224)] for y in range(224)]
            json.dump({"instances": [rows]}, f)
        sizes = {p: os.path.getsize(p) for p in (small_g, large_g, small_j, large_j)}
        sim = harness.Sim("--threads", "1")
        gw = harness.Gateway("--backend", sim.addr, "--workers", "1", "--channels", "2")
        try:
            n_large = max(500, a.n // 60)
            cases = [
                ("small", "gRPC (h2c)", PREDICT, small_g, a.n, 4, 32, GRPC_HEADERS, ()),
                ("small", "REST HTTP/2 (h2c)", REST, small_j, a.n, 4, 32, (), ()),
                ("small", "REST HTTP/1.1", REST, small_j, a.n, 32, 1, (), ("--h1",)),
                ("large", "gRPC (h2c)", PREDICT, large_g, n_large, 4, 4, GRPC_HEADERS, ()),
                ("large", "REST HTTP/2 (h2c)", REST, large_j, n_large, 4, 4, (), ()),
                ("large", "REST HTTP/1.1", REST, large_j, n_large, 16, 1, (), ("--h1",)),
            ]
            for size, proto, path, body, n, c, m, headers, extra in cases:
                url = "http://127.0.0.1:%d%s" % (gw.port, path)
                pids = [sim.pid, gw.pid]
                benchlib.measure(pids, url, body, min(n, 2000), c, m, headers, extra)  # warm-up
                runs = [benchlib.measure(pids, url, body, n, c, m, headers, extra) for _ in range(a.reps)]
                med = benchlib.median_run(runs)
                results.append((size, proto, sizes[body], c, m, med, gw.pid, sim.pid))
        finally:
            gw.stop()
            sim.stop()

    print("REST and gRPC through tfgate, medians of %d runs; %s" % (a.reps, benchlib.header()))
    print()
    print("| request | protocol | body bytes | h2load -c/-m | requests done | failed | req/s | p50 ms | p99 ms"
          " | tfgate CPU µs/req | tfs-sim CPU µs/req |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    base = {}
    for size, proto, nbytes, c, m, med, gpid, spid in results:
        cpu = med["cpu_us_per_req"]
        if proto.startswith("gRPC"):
            base[size] = cpu[gpid]
        print("| %s | %s | %d | %d/%d | %d | %d | %.0f | %.2f | %.2f | %.1f | %.1f |" % (
            size, proto, nbytes, c, m, med["succeeded"], med["failed"], med["rps"], med["p50"], med["p99"],
            cpu[gpid], cpu[spid]))
    print()
    for size, proto, nbytes, c, m, med, gpid, spid in results:
        if not proto.startswith("gRPC") and size in base:
            print("- %s %s: tfgate CPU per request = %.2fx the gRPC call's" % (
                size, proto, med["cpu_us_per_req"][gpid] / base[size]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
