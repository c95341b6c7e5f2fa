"""Shared pieces of tfgate's load benchmarks: h2load runs with per-request latencies, CPU time
of a process from /proc, and the machine/commit header every result table carries.

Benchmarks start their own processes on free loopback ports through tests/lib/harness.py and
stop them by PID. They print results; they never assert on timings.
"""
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import harness  # noqa: E402,F401

CLK_TCK = os.sysconf("SC_CLK_TCK")
GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")
PREDICT = "/tensorflow.serving.PredictionService/Predict"


def parse_args(doc, extra=()):
    """The options every benchmark takes (--build, --n, --reps) plus |extra| ((flag, kwargs)
    pairs); points the harness at the build's binaries and Python modules."""
    import argparse
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--build", default=os.path.join(ROOT, "build-release"))
    ap.add_argument("--n", type=int, default=60000)
    ap.add_argument("--reps", type=int, default=3)
    for flag, kw in extra:
        ap.add_argument(flag, **kw)
    a = ap.parse_args()
    harness.BUILD_DIR = a.build
    harness.PY_DIR = os.path.join(a.build, "py")
    return a


def cpu_seconds(pid):
    """utime + stime of a process, all threads (dead ones included), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kb(pid):
    """Resident memory of a process, in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def h2load(url, body_path, n, c, m, headers=(), extra=()):
    """Runs h2load; returns req/s, p50/p99 latency (ms, from its per-request log) and counts."""
    with tempfile.NamedTemporaryFile(prefix="h2load-", suffix=".log", delete=False) as lf:
        log = lf.name
    argv = ["h2load", "-n", str(n), "-c", str(c), "-m", str(m), "--log-file", log]
    if body_path:
        argv += ["-d", body_path]
    for h in headers:
        argv += ["-H", h]
    argv += list(extra) + [url]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    out = p.stdout
    try:
        rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
        done = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed", out)
        lat = []
        with open(log) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    lat.append(int(parts[2]) / 1000.0)  # µs -> ms
    finally:
        os.unlink(log)
    lat.sort()
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")
    return {"rps": rps, "p50": pct(0.50), "p99": pct(0.99), "succeeded": int(done.group(4)),
            "failed": int(done.group(5)), "n": n, "raw": out}


def measure(proc_pids, url, body, n, c, m, headers=(), extra=()):
    """One h2load run with the CPU seconds each of |proc_pids| spent during it."""
    before = {pid: cpu_seconds(pid) for pid in proc_pids}
    r = h2load(url, body, n, c, m, headers, extra)
    # divide by what completed: a server that closes connections early (nginx's
    # keepalive_requests) ends h2load's clients before |n| requests
    done = max(1, r["succeeded"])
    r["cpu_us_per_req"] = {pid: (cpu_seconds(pid) - before[pid]) * 1e6 / done for pid in proc_pids}
    return r


def median_run(runs):
    """Element-wise medians over repeated runs of measure()."""
    out = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99")}
    out["failed"] = sum(r["failed"] for r in runs)
    out["succeeded"] = statistics.median(r["succeeded"] for r in runs)
    pids = runs[0]["cpu_us_per_req"].keys()
    out["cpu_us_per_req"] = {pid: statistics.median(r["cpu_us_per_req"][pid] for r in runs) for pid in pids}
    return out


def header():
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    model = "unknown cpu"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return "commit %s%s, %d cores (%s), %s" % (commit, "+dirty" if dirty else "", os.cpu_count(), model,
                                             subprocess.run(["h2load", "--version"], capture_output=True,
                                                            text=True).stdout.strip())


def write_predict_body(path, values, content, model="half_plus_two"):
    """Writes a gRPC-framed PredictRequest for |model| with input x = |values| (in
    tensor_content when |content|, else float_val)."""
    import struct
    sys.path.insert(0, harness.PY_DIR)
    from tensorflow_serving.apis import predict_pb2
    r = predict_pb2.PredictRequest()
    r.model_spec.name = model
    t = r.inputs["x"]
    t.dtype = 1
    t.tensor_shape.dim.add().size = len(values)
    if content:
        t.tensor_content = struct.pack("<%df" % len(values), *values)
    else:
        t.float_val.extend(values)
    with open(path, "wb") as f:
        f.write(harness.grpc_frame(r.SerializeToString()))
