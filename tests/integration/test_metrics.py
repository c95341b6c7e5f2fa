"""The admin listener: /metrics parsed by Prometheus' own Python parser (Debian's
python3-prometheus-client) after driving traffic, with the counts that traffic caused; /healthz
and /readyz; nothing of the data plane on the admin port and no admin path on the data port."""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness  # noqa: E402

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

PS = "/tensorflow.serving.PredictionService/"


predict = harness.predict


class TestMetrics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.record = os.path.join(cls.tmp.name, "calls.jsonl")
        cls.access = os.path.join(cls.tmp.name, "access.jsonl")
        cls.sim = harness.Sim("--record", cls.record)
        cfg = {"listen": [{"address": "127.0.0.1:0"}], "admin": {"address": "127.0.0.1:0"},
               "access_log": cls.access,
               "pools": {"cpu": {"targets": [cls.sim.addr], "health": {"interval_ms": 100}}},
               "routes": [{"model": "half_plus_two", "pool": "cpu"}, {"model": "*", "pool": "cpu"}],
               "rate_limits": {"models": {"half_plus_three": {"rate": 0.01, "burst": 1}}}}
        cls.gw = harness.Gateway("--config", harness.write_json(cls.tmp.name, "gw.json", cfg))
        admin = [l for l in cls.gw.lines if "admin listening on" in l]
        cls.admin = int(re.search(r":(\d+) \(", admin[0]).group(1))

    @classmethod
    def tearDownClass(cls):
        assert cls.gw.stop() == 0, cls.gw.stderr()
        assert cls.sim.stop() == 0
        cls.tmp.cleanup()

    def get(self, port, path):
        p = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", "http://127.0.0.1:%d%s" % (port, path)],
                           capture_output=True, text=True, timeout=30)
        body, _, code = p.stdout.rpartition("\n")
        return int(code), body.strip()

    def scrape(self):
        code, text = self.get(self.admin, "/metrics")
        self.assertEqual(code, 200)
        samples = {}
        for fam in text_string_to_metric_families(text):  # raises on anything malformed
            for s in fam.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                self.assertNotIn(key, samples, "duplicate series %s" % (key,))
                samples[key] = s.value
        return samples

    def value(self, samples, name, **labels):
        return samples.get((name, tuple(sorted(labels.items()))), 0)

    def test_counts_what_it_served(self):
        before = self.scrape()
        rest = lambda model: subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", '{"instances": [1.0]}',
             "http://127.0.0.1:%d/v1/models/%s:predict" % (self.gw.port, model)],
            capture_output=True, text=True, timeout=30).stdout
        self.assertEqual([rest("half_plus_two") for _ in range(3)], ["200"] * 3)
        self.assertEqual(rest("nosuch"), "404")
        self.assertEqual(rest("half_plus_three"), "200")
        self.assertEqual(rest("half_plus_three"), "429")  # burst 1
        with self.gw.channel() as ch:
            fn = ch.unary_unary(PS + "Predict", request_serializer=lambda m: m.SerializeToString())
            for _ in range(2):
                fn(predict(), timeout=10)
        after = self.scrape()
        d = lambda name, **l: self.value(after, name, **l) - self.value(before, name, **l)
        req = "tfgate_requests_total"
        cpu = dict(pool="cpu", device="cpu")
        none = dict(pool="_none", device="_none")  # answered before any pool was called
        self.assertEqual(d(req, protocol="rest", model="half_plus_two", method="predict", code="200", **cpu), 3)
        self.assertEqual(d(req, protocol="rest", model="nosuch", method="predict", code="404", **cpu), 1)
        self.assertEqual(d(req, protocol="rest", model="half_plus_three", method="predict", code="429", **none), 1)
        self.assertEqual(d(req, protocol="grpc", model="half_plus_two", method="predict", code="0", **cpu), 2)
        self.assertEqual(d("tfgate_ratelimited_total", limit="model"), 1)
        # the latency histograms counted the same requests, and their buckets add up
        for fam in ("tfgate_request_duration_seconds", "tfgate_upstream_duration_seconds"):
            lab = dict(protocol="rest", model="half_plus_two", pool="cpu")
            self.assertEqual(d(fam + "_count", **lab), 3, fam)
            self.assertEqual(self.value(after, fam + "_bucket", le="+Inf", **lab),
                             self.value(after, fam + "_count", **lab))
            self.assertGreaterEqual(d(fam + "_sum", **lab), 0)
        # a refused request spent no time upstream
        self.assertEqual(d("tfgate_request_duration_seconds_count", protocol="rest", model="half_plus_three",
                           pool="_none"), 1)
        self.assertEqual(d("tfgate_upstream_duration_seconds_count", protocol="rest", model="half_plus_three",
                           pool="_none"), 0)
        # bytes: 6 REST bodies of 20 bytes; two gRPC messages (5-byte prefix each)
        self.assertEqual(d("tfgate_received_bytes_total", protocol="rest"), 6 * len('{"instances": [1.0]}'))
        grpc_in = 2 * (5 + len(predict().SerializeToString()))
        self.assertEqual(d("tfgate_received_bytes_total", protocol="grpc"), grpc_in)
        self.assertGreater(d("tfgate_sent_bytes_total", protocol="rest"), 0)
        self.assertGreater(d("tfgate_sent_bytes_total", protocol="grpc"), 0)
        # connections: 6 curl HTTP/1.1 connections (plus the scrape's own), 1 gRPC (h2c)
        self.assertGreaterEqual(d("tfgate_connections_total", protocol="http1.1", tls="false"), 6)
        self.assertEqual(d("tfgate_connections_total", protocol="http2", tls="false"), 1)
        self.assertGreaterEqual(self.value(after, "tfgate_connections", protocol="http1.1", tls="false"), 1)
        # the replica's calls and the model's probe
        rep = dict(pool="cpu", device="cpu", replica=self.sim.addr)
        self.assertGreaterEqual(d("tfgate_upstream_calls_total", **rep), 6)
        self.assertEqual(self.value(after, "tfgate_upstream_inflight", **rep), 0)
        self.assertEqual(self.value(after, "tfgate_model_serving", pool="cpu", replica=self.sim.addr,
                                    model="half_plus_two"), 1)

    def test_model_labels_are_bounded(self):
        for i in range(80):  # random model names cannot grow the series without bound
            subprocess.run(["curl", "-sS", "-o", "/dev/null", "--data-binary", '{"instances": [1.0]}',
                            "http://127.0.0.1:%d/v1/models/random%d:predict" % (self.gw.port, i)],
                           capture_output=True, timeout=30)
        samples = self.scrape()
        models = {dict(k[1]).get("model") for k in samples if k[0] == "tfgate_requests_total"}
        self.assertLessEqual(len(models), 64 + 1 + 2)  # the cap, the routed name, "_other", "_none"
        self.assertIn("_other", models)

    def access_lines(self, request_id):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with open(self.access) as f:
                found = [json.loads(l) for l in f if request_id in l]
            if found:
                return found
            time.sleep(0.02)
        self.fail("no access log line for " + request_id)

    def backend_md(self, request_id):
        with open(self.record) as f:
            return [json.loads(l)["metadata"] for l in f if request_id in l][-1]

    def test_access_log_and_trace_context(self):
        subprocess.run(["curl", "-sS", "-o", "/dev/null", "-H", "x-request-id: acc-1", "-H",
                        "Authorization: Bearer not-logged", "--data-binary", '{"instances": [1.0, 2.0]}',
                        "http://127.0.0.1:%d/v1/models/half_plus_two:predict?access_token=secret" % self.gw.port],
                       capture_output=True, timeout=30)
        line, = self.access_lines("acc-1")
        # (a query string breaks TF Serving's URL grammar: an error, logged without the query)
        self.assertEqual({k: line[k] for k in ("request_id", "protocol", "method", "path", "bytes_in")},
                         {"request_id": "acc-1", "protocol": "rest/http1.1", "method": "POST",
                          "path": "/v1/models/half_plus_two:predict", "bytes_in": 25})
        self.assertIn(line["status"], (400, 404))
        self.assertRegex(line["trace_id"], r"^[0-9a-f]{32}$")
        self.assertRegex(line["client"], r"^127\.0\.0\.1:\d+$")
        for k in ("latency_ms", "upstream_ms", "gateway_ms", "bytes_out"):
            self.assertGreaterEqual(line[k], 0)
        with open(self.access) as f:
            text = f.read()
        self.assertNotIn("secret", text)
        self.assertNotIn("not-logged", text)
        self.assertNotIn("instances", text)
        # a REST call that reached the backend: pool, replica, and the trace context it sent
        subprocess.run(["curl", "-sS", "-o", "/dev/null", "-H", "x-request-id: acc-2", "--data-binary",
                        '{"instances": [1.0]}', "http://127.0.0.1:%d/v1/models/half_plus_two:predict" % self.gw.port],
                       capture_output=True, timeout=30)
        line, = self.access_lines("acc-2")
        self.assertEqual((line["status"], line["pool"], line["replica"]), (200, "cpu", self.sim.addr))
        self.assertRegex(line["version"], r"^\d+$")  # the version that answered
        self.assertEqual(self.backend_md("acc-2")["traceparent"][3:35], line["trace_id"])
        # a label no version carries: the one asked for is logged
        subprocess.run(["curl", "-sS", "-o", "/dev/null", "-H", "x-request-id: acc-5", "--data-binary",
                        '{"instances": [1.0]}',
                        "http://127.0.0.1:%d/v1/models/half_plus_two/labels/nolabel:predict" % self.gw.port],
                       capture_output=True, timeout=30)
        line, = self.access_lines("acc-5")
        self.assertEqual(line["version"], "nolabel")
        self.assertEqual(line["status"] // 100, 4)
        # gRPC: the client's traceparent goes upstream unchanged and is the log's trace id
        tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        with self.gw.channel() as ch:
            fn = ch.unary_unary(PS + "Predict", request_serializer=lambda m: m.SerializeToString())
            fn(predict(), timeout=10, metadata=[("x-request-id", "acc-3"), ("traceparent", tp)])
            fn(predict(), timeout=10, metadata=[("x-request-id", "acc-4"), ("traceparent", "garbage")])
        line, = self.access_lines("acc-3")
        self.assertEqual((line["protocol"], line["grpc_method"], line["grpc_status"], line["trace_id"]),
                         ("grpc", PS + "Predict", 0, "4bf92f3577b34da6a3ce929d0e0e4736"))
        self.assertEqual(self.backend_md("acc-3")["traceparent"], tp)
        made = self.backend_md("acc-4")["traceparent"]  # a malformed one is replaced
        self.assertRegex(made, r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")
        self.assertEqual(self.access_lines("acc-4")[0]["trace_id"], made[3:35])

    def test_health_and_readiness(self):
        self.assertEqual(self.get(self.admin, "/healthz"), (200, "ok"))
        deadline = time.monotonic() + 5
        while self.get(self.admin, "/readyz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.get(self.admin, "/readyz"), (200, "ready"))
        # the admin port serves only its paths; the data port does not serve them
        self.assertEqual(self.get(self.admin, "/v1/models/half_plus_two")[0], 404)
        self.assertEqual(self.get(self.gw.port, "/metrics")[0], 404)
        # a model no replica serves: not ready
        self.sim.control(op="set_state", model="half_plus_two", version=123, state="LOADING")
        self.sim.control(op="set_state", model="half_plus_two", version=124, state="LOADING")
        try:
            deadline = time.monotonic() + 5
            while self.get(self.admin, "/readyz")[0] != 503 and time.monotonic() < deadline:
                time.sleep(0.05)
            code, body = self.get(self.admin, "/readyz")
            self.assertEqual(code, 503)
            self.assertIn("pool cpu (route half_plus_two) has no replica ready", body)
        finally:
            for v in (123, 124):
                self.sim.control(op="set_state", model="half_plus_two", version=v, state="AVAILABLE")


if __name__ == "__main__":
    unittest.main(verbosity=2)
