"""Admission control per model (a route's max_batch, max_elements, max_request_bytes): requests
over a limit are refused before they reach a backend, over REST (400 / 413) and native gRPC
(INVALID_ARGUMENT / RESOURCE_EXHAUSTED), and requests under it pass."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness  # noqa: E402

import grpc  # noqa: E402
from tensorflow.core.framework import types_pb2  # noqa: E402
from tensorflow_serving.apis import predict_pb2  # noqa: E402

PS = "/tensorflow.serving.PredictionService/"


def predict(model, shape):
    r = predict_pb2.PredictRequest()
    r.model_spec.name = model
    t = r.inputs["x"]
    t.dtype = types_pb2.DT_FLOAT
    n = 1
    for d in shape:
        t.tensor_shape.dim.add().size = d
        n *= d
    t.float_val.extend([1.0] * n)
    return r


class TestAdmission(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.record = os.path.join(cls.tmp.name, "calls.jsonl")
        cls.sim = harness.Sim("--record", cls.record)
        cfg = {
            "listen": [{"address": "127.0.0.1:0"}],
            "pools": {"cpu": {"targets": [cls.sim.addr]}},
            "routes": [
                {"model": "half_plus_two", "pool": "cpu", "max_batch": 4, "max_elements": 10},
                {"model": "half_plus_three", "pool": "cpu", "max_request_bytes": 300},
                {"model": "*", "pool": "cpu"},
            ],
        }
        cls.gw = harness.Gateway("--config", harness.write_json(cls.tmp.name, "tfgate.json", cfg))
        cls.url = "http://127.0.0.1:%d/v1/models/" % cls.gw.port

    @classmethod
    def tearDownClass(cls):
        assert cls.gw.stop() == 0, cls.gw.stderr()
        assert cls.sim.stop() == 0
        cls.tmp.cleanup()

    def backend_calls(self):
        with open(self.record) as f:
            return sum(1 for _ in f)

    def rest(self, model, instances):
        p = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", "--data-binary",
                            json.dumps({"instances": instances}), self.url + model + ":predict"],
                           capture_output=True, timeout=30)
        body, _, code = p.stdout.rpartition(b"\n")
        return int(code), json.loads(body)

    def grpc(self, msg):
        with self.gw.channel() as ch:
            fn = ch.unary_unary(PS + "Predict", request_serializer=lambda m: m.SerializeToString())
            try:
                fn(msg, timeout=10)
                return grpc.StatusCode.OK, ""
            except grpc.RpcError as e:
                return e.code(), e.details()

    def test_under_the_limits(self):
        self.assertEqual(self.rest("half_plus_two", [1.0, 2.0, 3.0, 4.0])[0], 200)
        self.assertEqual(self.rest("half_plus_two", [[1.0, 2.0], [3.0, 4.0]])[0], 200)
        self.assertEqual(self.grpc(predict("half_plus_two", [4, 2]))[0], grpc.StatusCode.OK)
        self.assertEqual(self.rest("half_plus_three", [1.0] * 10)[0], 200)
        self.assertEqual(self.grpc(predict("half_plus_three", [10]))[0], grpc.StatusCode.OK)
        self.assertEqual(self.rest("other", [1.0] * 100)[0], 404)  # no limit on "*": the model's answer

    def test_over_the_limits_never_reach_the_backend(self):
        before = self.backend_calls()
        batch = "tfgate: batch size 5 exceeds the limit of 4 for model 'half_plus_two'"
        elements = "tfgate: 12 input values exceed the limit of 10 for model 'half_plus_two'"
        self.assertEqual(self.rest("half_plus_two", [1.0] * 5), (400, {"error": batch}))
        self.assertEqual(self.grpc(predict("half_plus_two", [5])), (grpc.StatusCode.INVALID_ARGUMENT, batch))
        self.assertEqual(self.rest("half_plus_two", [[1.0] * 4] * 3), (400, {"error": elements}))
        self.assertEqual(self.grpc(predict("half_plus_two", [3, 4])),
                         (grpc.StatusCode.INVALID_ARGUMENT, elements))
        code, body = self.rest("half_plus_three", [1.0] * 100)
        self.assertEqual(code, 413)
        self.assertRegex(body["error"], r"^tfgate: a request of \d+ bytes exceeds the limit of 300 "
                                        r"for model 'half_plus_three'$")
        gcode, details = self.grpc(predict("half_plus_three", [100]))
        self.assertEqual(gcode, grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertRegex(details, r"^tfgate: a request of \d+ bytes exceeds the limit of 300")
        # REST fetches the signature first (a metadata call); no Predict got through
        with open(self.record) as f:
            methods = [json.loads(line)["method"] for line in f][before:]
        self.assertNotIn("Predict", [m.rsplit("/", 1)[-1] for m in methods])


if __name__ == "__main__":
    unittest.main(verbosity=2)
