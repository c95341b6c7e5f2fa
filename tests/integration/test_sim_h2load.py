"""tfs-sim under h2load and curl with gRPC framing: what benchmarks and later gateway tests use.

h2load only sees :status, so a call that fails with grpc-status != 0 still counts as 2xx;
tfs-sim's own counters (/tfsim.Sim/Stats) are what prove the calls succeeded.
"""
import os
import re
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness  # noqa: E402

from tensorflow_serving.apis import predict_pb2  # noqa: E402

PREDICT = "/tensorflow.serving.PredictionService/Predict"


def predict_frame(model="half_plus_two"):
    r = predict_pb2.PredictRequest()
    r.model_spec.name = model
    t = r.inputs["x"]
    t.dtype = 1
    t.tensor_shape.dim.add().size = 4
    t.float_val.extend([1.0, 2.0, 3.0, 4.0])
    return harness.grpc_frame(r.SerializeToString())


def h2load(url, body_path, n, c=4, m=16):
    p = subprocess.run(["h2load", "-n", str(n), "-c", str(c), "-m", str(m), "-d", body_path,
                        "-H", "content-type: application/grpc", "-H", "te: trailers", url],
                       capture_output=True, text=True, timeout=120)
    m_ = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored",
                   p.stdout)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", p.stdout)
    assert m_ and codes, p.stdout + p.stderr
    return [int(x) for x in m_.groups()], [int(x) for x in codes.groups()]


class TestSimUnderLoad(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sim = harness.Sim()
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        assert cls.sim.stop() == 0
        cls.tmp.cleanup()

    def body(self, name, frame):
        path = os.path.join(self.tmp.name, name)
        with open(path, "wb") as f:
            f.write(frame)
        return path

    def test_h2load_predict(self):
        self.sim.control(op="reset_stats")
        reqs, codes = h2load("http://%s%s" % (self.sim.addr, PREDICT), self.body("ok.grpc", predict_frame()), 3000)
        self.assertEqual(reqs, [3000, 3000, 3000, 3000, 0, 0])
        self.assertEqual(codes[0], 3000)
        st = self.sim.stats()
        self.assertEqual(st["calls"]["Predict"], 3000)
        self.assertEqual(st["errors"], 0)
        self.assertEqual(st["models"]["half_plus_two"], 3000)

    def test_h2load_counts_grpc_errors_as_2xx(self):
        self.sim.control(op="reset_stats")
        reqs, codes = h2load("http://%s%s" % (self.sim.addr, PREDICT), self.body("bad.grpc", predict_frame("nosuch")), 200)
        self.assertEqual(codes[0], 200)
        st = self.sim.stats()
        self.assertEqual(st["errors"], 200)  # every call failed at the gRPC level

    def test_curl_shows_grpc_status_trailer(self):
        body = self.body("curl.grpc", predict_frame())
        p = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-D", "-", "-o", "/dev/null",
                            "-H", "content-type: application/grpc", "-H", "te: trailers",
                            "--data-binary", "@" + body, "http://%s%s" % (self.sim.addr, PREDICT)],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r"(?m)^HTTP/2 200")
        self.assertRegex(p.stdout, r"(?m)^grpc-status: 0")


if __name__ == "__main__":
    unittest.main(verbosity=2)
