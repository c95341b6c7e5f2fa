"""Traffic management through tfgate, against several tfs-sim processes with cpu and gpu
profiles: batch-size routing, saturation spillover to the fallback pool and back, 429 when every
pool is saturated, a full GPU batching queue retried on the CPU pool, weighted canaries that
stick per caller, outlier ejection and re-admission, the retry budget during an outage, and
deadlines that fail fast."""
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness  # noqa: E402

import grpc  # noqa: E402
from tensorflow.core.framework import types_pb2  # noqa: E402
from tensorflow_serving.apis import predict_pb2  # noqa: E402

PS = "/tensorflow.serving.PredictionService/"


def predict(model="half_plus_two", batch=1, label=None, version=None):
    r = predict_pb2.PredictRequest()
    r.model_spec.name = model
    if label is not None:
        r.model_spec.version_label = label
    if version is not None:
        r.model_spec.version.value = version
    t = r.inputs["x"]
    t.dtype = types_pb2.DT_FLOAT
    t.tensor_shape.dim.add().size = batch
    t.float_val.extend([1.0] * batch)
    return r


def call(ch, req, timeout=10, metadata=()):
    """(code, details, initial metadata)"""
    fn = ch.unary_unary(PS + "Predict", request_serializer=lambda m: m.SerializeToString())
    try:
        _, c = fn.with_call(req, timeout=timeout, metadata=list(metadata))
        return grpc.StatusCode.OK, "", dict(c.initial_metadata())
    except grpc.RpcError as e:
        return e.code(), e.details(), dict(e.initial_metadata() or ())


def predicts(sim, model=None):
    s = sim.stats()
    return s["models"].get(model, 0) if model else s["calls"].get("Predict", 0)


def burst(gw, n_threads, per_thread, req):
    """Concurrent calls; returns the list of (code, details)."""
    out, lock = [], threading.Lock()

    def run():
        with gw.channel() as ch:
            for _ in range(per_thread):
                code, details, _ = call(ch, req)
                with lock:
                    out.append((code, details))

    threads = [threading.Thread(target=run) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def gateway(tmp, name, pools, routes, limits=None):
    cfg = {"listen": [{"address": "127.0.0.1:0"}], "pools": pools, "routes": routes}
    if limits:
        cfg["limits"] = limits
    return harness.Gateway("--config", harness.write_json(tmp, name + ".json", cfg))


class TestTraffic(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        # a batching GPU: 30 ms per batch of up to 4, one batch at a time, 4 may wait
        cls.gpu = harness.Sim("--device", "gpu", "--compute-us", "30000", "--max-batch", "4",
                              "--batch-window-us", "2000", "--queue-limit", "4")
        cls.cpu = harness.Sim()
        cls.stopped = []

    @classmethod
    def tearDownClass(cls):
        for s in (cls.gpu, cls.cpu):
            assert s.stop() == 0
        cls.tmp.cleanup()

    def setUp(self):
        for s in (self.gpu, self.cpu):
            s.control(op="reset_stats")

    def stop_later(self, gw):
        self.addCleanup(lambda: self.assertEqual(gw.stop(), 0, gw.stderr()))
        return gw

    def test_batch_size_routing(self):
        gw = self.stop_later(gateway(self.tmp.name, "batch", {
            "cpu": {"targets": [self.cpu.addr]}, "gpu": {"device": "gpu", "targets": [self.gpu.addr]}},
            [{"model": "*", "pool": "cpu", "batch_pool": {"min_batch": 8, "pool": "gpu"}}]))
        with gw.channel() as ch:
            for batch in (16, 2, 8, 7):
                self.assertEqual(call(ch, predict(batch=batch))[0], grpc.StatusCode.OK)
        body = lambda n: json.dumps({"instances": [1.0] * n})
        for n in (32, 1):
            p = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", body(n),
                                "http://127.0.0.1:%d/v1/models/half_plus_two:predict" % gw.port],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(p.stdout, "200")
        # gRPC 16 and 8, REST 32 on the GPU; gRPC 2 and 7, REST 1 on the CPU
        self.assertEqual((predicts(self.gpu), predicts(self.cpu)), (3, 3))

    def test_route_rules(self):
        gw = self.stop_later(gateway(self.tmp.name, "rules", {
            "cpu": {"targets": [self.cpu.addr]}, "gpu": {"device": "gpu", "targets": [self.gpu.addr]}}, [
            {"model": "half_plus_two", "header": {"name": "X-Tier", "value": "gold"}, "pool": "gpu"},
            {"model": "half_plus_two", "version": 124, "pool": "gpu"},
            {"model": "half_plus_two", "signature": "classify_x_to_y", "pool": "gpu"},
            {"model": "half_*", "label": "canary", "pool": "gpu"},
            {"model": "half_*", "pool": "cpu"},
        ]))
        from tensorflow_serving.apis import classification_pb2

        def on_gpu(fn):  # serving calls only: GetModelStatus is the health probes'
            served = lambda: sum(n for m, n in self.gpu.stats()["calls"].items() if m != "GetModelStatus")
            before = served()
            fn()
            return served() > before

        def grpc_predict(**kw):
            with gw.channel() as ch:
                md = kw.pop("metadata", ())
                self.assertEqual(call(ch, predict(**kw), metadata=md)[0], grpc.StatusCode.OK)

        def grpc_classify(sig):
            r = classification_pb2.ClassificationRequest()
            r.model_spec.name = "half_plus_two"
            r.model_spec.signature_name = sig
            r.input.example_list.examples.add().features.feature["x"].float_list.value.append(1.0)
            with gw.channel() as ch:
                ch.unary_unary(PS + "Classify", request_serializer=lambda m: m.SerializeToString())(r, timeout=10)

        def rest(path, body, *hdrs):
            argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", body]
            for h in hdrs:
                argv += ["-H", h]
            p = subprocess.run(argv + ["http://127.0.0.1:%d%s" % (gw.port, path)], capture_output=True, text=True)
            self.assertEqual(p.stdout, "200")

        self.assertFalse(on_gpu(lambda: grpc_predict()))
        self.assertTrue(on_gpu(lambda: grpc_predict(metadata=[("x-tier", "gold")])))
        self.assertFalse(on_gpu(lambda: grpc_predict(metadata=[("x-tier", "silver")])))
        self.assertTrue(on_gpu(lambda: grpc_predict(version=124)))
        self.assertFalse(on_gpu(lambda: grpc_predict(version=123)))
        self.assertTrue(on_gpu(lambda: grpc_predict(label="canary")))
        self.assertFalse(on_gpu(lambda: grpc_predict(model="half_plus_three")))
        self.assertTrue(on_gpu(lambda: grpc_classify("classify_x_to_y")))
        body = '{"instances": [1.0]}'
        cl = '{"signature_name": "classify_x_to_y", "examples": [{"x": 1.0}]}'
        self.assertFalse(on_gpu(lambda: rest("/v1/models/half_plus_two:predict", body)))
        self.assertTrue(on_gpu(lambda: rest("/v1/models/half_plus_two:predict", body, "x-tier: gold")))
        self.assertTrue(on_gpu(lambda: rest("/v1/models/half_plus_two/versions/124:predict", body)))
        self.assertTrue(on_gpu(lambda: rest("/v1/models/half_plus_two/labels/canary:predict", body)))
        self.assertTrue(on_gpu(lambda: rest("/v1/models/half_plus_two:classify", cl)))  # signature from the body

    def test_spillover_and_recovery(self):
        gw = self.stop_later(gateway(self.tmp.name, "spill", {
            "gpu": {"device": "gpu", "targets": [self.gpu.addr], "max_inflight": 2},
            "cpu": {"targets": [self.cpu.addr]}},
            [{"model": "*", "pool": "gpu", "fallbacks": ["cpu"]}]))
        results = burst(gw, 12, 10, predict())
        self.assertEqual(collections.Counter(c for c, _ in results), {grpc.StatusCode.OK: 120})
        g, c = predicts(self.gpu), predicts(self.cpu)
        self.assertGreater(g, 0)
        self.assertGreater(c, 0)  # spilled
        self.assertEqual(g + c, 120)
        # load gone: back on the GPU
        time.sleep(0.3)
        with gw.channel() as ch:
            for _ in range(5):
                self.assertEqual(call(ch, predict())[0], grpc.StatusCode.OK)
        self.assertEqual(predicts(self.gpu), g + 5)
        self.assertEqual(predicts(self.cpu), c)
        self.assertIn("pool gpu saturated: spilling over", gw.stderr())
        self.assertIn("pool gpu recovered", gw.stderr())

    def test_everything_saturated_is_429_at_once(self):
        slow = harness.Sim("--compute-us", "200000", "--concurrency", "1")
        self.addCleanup(slow.stop)
        gw = self.stop_later(gateway(self.tmp.name, "sat", {
            "a": {"targets": [slow.addr], "max_inflight": 1}, "b": {"targets": [slow.addr], "max_inflight": 1}},
            [{"model": "*", "pool": "a", "fallbacks": ["b"]}]))
        t0 = time.monotonic()
        results = burst(gw, 6, 1, predict())
        codes = collections.Counter(c for c, _ in results)
        self.assertEqual(codes[grpc.StatusCode.OK], 2, results)  # one each, then both are full
        self.assertEqual(codes[grpc.StatusCode.RESOURCE_EXHAUSTED], 4, results)
        self.assertIn("tfgate: every pool for this model is saturated (a and its fallbacks)",
                      [d for c, d in results if c != grpc.StatusCode.OK])
        self.assertLess(time.monotonic() - t0, 2.0)  # no queue: answered at once
        # REST: 429 with Retry-After
        threads = [threading.Thread(target=lambda: call(gw.channel(), predict())) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.05)
        p = subprocess.run(["curl", "-sS", "-D", "-", "--data-binary", '{"instances": [1.0]}',
                            "http://127.0.0.1:%d/v1/models/half_plus_two:predict" % gw.port],
                           capture_output=True, text=True, timeout=30)
        for t in threads:
            t.join(10)
        self.assertIn("HTTP/1.1 429", p.stdout)
        self.assertIn("retry-after: 1", p.stdout.lower())

    def test_full_gpu_queue_retried_on_cpu(self):
        tiny = harness.Sim("--device", "gpu", "--compute-us", "50000", "--max-batch", "1", "--queue-limit", "1")
        self.addCleanup(tiny.stop)
        gw = self.stop_later(gateway(self.tmp.name, "queue", {
            "gpu": {"device": "gpu", "targets": [tiny.addr]}, "cpu": {"targets": [self.cpu.addr]}},
            [{"model": "*", "pool": "gpu", "fallbacks": ["cpu"]}], limits={"retry_min": 100}))
        results = burst(gw, 8, 2, predict())
        self.assertEqual(collections.Counter(c for c, _ in results), {grpc.StatusCode.OK: 16}, results)
        self.assertGreater(predicts(self.cpu), 0)  # what the full queue refused, the CPU did
        self.assertGreater(tiny.stats()["errors"], 0)

    def test_canary_split_and_stickiness(self):
        gw = self.stop_later(gateway(self.tmp.name, "canary", {"cpu": {"targets": [self.cpu.addr]}},
                                     [{"model": "*", "pool": "cpu",
                                       "canary": {"labels": {"stable": 95, "canary": 5}, "sticky": "header:x-user"}}]))
        versions = collections.Counter()
        by_user = {}
        with gw.channel() as ch:
            for i in range(1000):
                code, _, md = call(ch, predict(), metadata=[("x-user", "user-%d" % i)])
                self.assertEqual(code, grpc.StatusCode.OK)
                versions[md["x-tfgate-model-version"]] += 1
                by_user["user-%d" % i] = md["x-tfgate-model-version"]
            # 124 is the canary label's version, 123 stable's
            self.assertEqual(set(versions), {"123", "124"})
            self.assertTrue(20 <= versions["124"] <= 80, versions)  # 5% of 1000, within a few %
            # sticky: the same user gets the same version every time
            for user in ("user-1", "user-2", "user-3", next(u for u, v in by_user.items() if v == "124")):
                seen = {call(ch, predict(), metadata=[("x-user", user)])[2]["x-tfgate-model-version"]
                        for _ in range(10)}
                self.assertEqual(seen, {by_user[user]})
            # a version or label in the request wins over the canary
            for _ in range(20):
                self.assertEqual(call(ch, predict(label="stable"))[2]["x-tfgate-model-version"], "123")
                self.assertEqual(call(ch, predict(version=124))[2]["x-tfgate-model-version"], "124")
        # REST: the same split, the version in a response header
        p = subprocess.run(["curl", "-sS", "-D", "-", "-H", "x-user: %s" % next(u for u, v in by_user.items() if v == "124"),
                            "--data-binary", '{"instances": [1.0]}',
                            "http://127.0.0.1:%d/v1/models/half_plus_two:predict" % gw.port],
                           capture_output=True, text=True, timeout=30)
        self.assertIn("x-tfgate-model-version: 124", p.stdout)

    def test_canary_sticky_per_subject(self):
        import base64
        import jwt
        secret = b"0123456789abcdef0123456789abcdef-canary"
        cfg = {"listen": [{"address": "127.0.0.1:0"}], "pools": {"cpu": {"targets": [self.cpu.addr]}},
               "routes": [{"model": "*", "pool": "cpu",
                           "canary": {"labels": {"stable": 50, "canary": 50}, "sticky": "subject"}}],
               "auth": {"providers": [{"issuer": "https://idp.test", "keys": [
                   {"kty": "oct", "kid": "k", "k": base64.urlsafe_b64encode(secret).rstrip(b"=").decode()}]}]}}
        gw = self.stop_later(harness.Gateway("--config", harness.write_json(self.tmp.name, "sub.json", cfg)))
        tok = lambda sub: jwt.encode({"iss": "https://idp.test", "sub": sub, "exp": int(time.time()) + 600},
                                     secret, algorithm="HS256", headers={"kid": "k"})
        seen = collections.Counter()
        with gw.channel() as ch:
            for i in range(200):
                t = tok("subject-%d" % i)
                versions = {call(ch, predict(), metadata=[("authorization", "Bearer " + t)])[2]["x-tfgate-model-version"]
                            for _ in range(3)}
                self.assertEqual(len(versions), 1, "subject-%d saw %s" % (i, versions))  # sticky
                seen[versions.pop()] += 1
        self.assertTrue(70 <= seen["124"] <= 130, seen)  # 50/50 over 200 subjects

    def test_outlier_ejected_and_readmitted(self):
        models = harness.write_json(self.tmp.name, "broken.json", {"models": [{
            "name": "half_plus_two", "versions": [123],
            "signatures": {"serving_default": {"inputs": {"x": {"dtype": "DT_FLOAT", "shape": [-1]}},
                                               "outputs": {"y": {"dtype": "DT_FLOAT", "shape": [-1]}}}},
            "responses": {"error": {"code": "INTERNAL", "message": "broken replica"}}}]})
        bad = harness.Sim("--models", models)
        self.addCleanup(bad.stop)
        gw = self.stop_later(gateway(self.tmp.name, "outlier", {
            "p": {"targets": [self.cpu.addr, bad.addr], "outlier": {"consecutive_failures": 3, "eject_ms": 1500}}},
            [{"model": "*", "pool": "p"}]))
        with gw.channel() as ch:
            first = [call(ch, predict())[0] for _ in range(40)]
            self.assertLessEqual(first.count(grpc.StatusCode.INTERNAL), 4, first)
            self.assertTrue(all(c == grpc.StatusCode.OK for c in first[-20:]), first)  # ejected
            self.assertIn("ejected for 1500 ms after 3 failures", gw.stderr())
            time.sleep(1.7)
            later = [call(ch, predict())[0] for _ in range(20)]
            self.assertGreater(later.count(grpc.StatusCode.INTERNAL), 0)  # re-admitted, and again out
            self.assertLessEqual(later.count(grpc.StatusCode.INTERNAL), 4, later)

    def test_retry_budget_caps_retries_in_an_outage(self):
        dead = harness.free_port()
        gw = self.stop_later(gateway(self.tmp.name, "budget", {
            "dead": {"targets": ["127.0.0.1:%d" % dead]}, "cpu": {"targets": [self.cpu.addr]}},
            [{"model": "*", "pool": "dead", "fallbacks": ["cpu"]}],
            limits={"retry_budget_percent": 20, "retry_min": 10}))
        with gw.channel() as ch:
            codes = [call(ch, predict())[0] for _ in range(100)]
        retried = predicts(self.cpu)
        # every call failed on "dead" first; the budget let through 10 plus 20% of 100
        self.assertTrue(25 <= retried <= 31, (retried, collections.Counter(codes)))
        self.assertEqual(codes.count(grpc.StatusCode.OK), retried)
        self.assertEqual(codes.count(grpc.StatusCode.UNAVAILABLE), 100 - retried)

    def health_gateway(self, a, b):
        return self.stop_later(gateway(self.tmp.name, "health-%d" % a.port, {
            "p": {"targets": [a.addr, b.addr],
                  "health": {"models": ["half_plus_two", "half_plus_three"], "interval_ms": 100}}},
            [{"model": "*", "pool": "p"}]))

    def wait_log(self, gw, text, seconds=5):
        deadline = time.monotonic() + seconds
        while text not in gw.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn(text, gw.stderr())

    def test_loading_model_gets_no_traffic(self):
        a, b = harness.Sim(), harness.Sim()
        self.addCleanup(a.stop)
        self.addCleanup(b.stop)
        gw = self.health_gateway(a, b)
        self.wait_log(gw, "replica %s: model half_plus_two serving" % b.addr)
        for v in (123, 124):
            b.control(op="set_state", model="half_plus_two", version=v, state="LOADING")
        self.wait_log(gw, "replica %s: model half_plus_two not serving" % b.addr)
        for s in (a, b):
            s.control(op="reset_stats")
        with gw.channel() as ch:
            for _ in range(20):
                self.assertEqual(call(ch, predict())[0], grpc.StatusCode.OK)
                self.assertEqual(call(ch, predict("half_plus_three"))[0], grpc.StatusCode.OK)
        self.assertEqual(predicts(b, "half_plus_two"), 0)  # the loading model: none
        self.assertEqual(predicts(a, "half_plus_two"), 20)
        self.assertGreater(predicts(b, "half_plus_three"), 0)  # its other model: still served
        # loaded again: back in rotation
        for v in (123, 124):
            b.control(op="set_state", model="half_plus_two", version=v, state="AVAILABLE")
        time.sleep(0.5)
        with gw.channel() as ch:
            for _ in range(20):
                call(ch, predict())
        self.assertGreater(predicts(b, "half_plus_two"), 0)

    def test_grpc_health_service(self):
        a, b = harness.Sim(), harness.Sim()
        self.addCleanup(a.stop)
        self.addCleanup(b.stop)
        gw = self.health_gateway(a, b)
        self.wait_log(gw, "replica %s: model half_plus_two serving" % b.addr)
        self.wait_log(gw, "replica %s: model half_plus_two serving" % a.addr)

        def check(service, method="Check"):
            # grpc.health.v1 HealthCheckRequest/Response, encoded by hand (field 1 each)
            with gw.channel() as ch:
                fn = ch.unary_unary("/grpc.health.v1.Health/" + method) if method == "Check" else \
                    ch.unary_stream("/grpc.health.v1.Health/Watch")
                req = b"\x0a" + bytes([len(service)]) + service.encode() if service else b""
                try:
                    resp = fn(req, timeout=5) if method == "Check" else next(iter(fn(req, timeout=5)))
                except grpc.RpcError as e:
                    return e.code().name
                return {b"\x08\x01": "SERVING", b"\x08\x02": "NOT_SERVING"}[resp]

        self.assertEqual(check(""), "SERVING")
        self.assertEqual(check("half_plus_two"), "SERVING")
        self.assertEqual(check("half_plus_two:123"), "SERVING")
        self.assertEqual(check("half_plus_two:stable"), "SERVING")
        self.assertEqual(check("half_plus_two:999"), "NOT_SERVING")
        self.assertEqual(check("half_plus_two", "Watch"), "SERVING")
        self.assertEqual(check("nosuch"), "NOT_FOUND")
        for s in (a, b):
            s.control(op="set_state", model="half_plus_two", version=123, state="UNLOADING")
        self.wait_log(gw, "replica %s: model half_plus_two serving" % a.addr)  # 124 still
        time.sleep(0.4)
        self.assertEqual(check("half_plus_two:123"), "NOT_SERVING")
        self.assertEqual(check("half_plus_two:124"), "SERVING")
        for s in (a, b):
            s.control(op="set_state", model="half_plus_two", version=124, state="LOADING")
        self.wait_log(gw, "replica %s: model half_plus_two not serving" % a.addr)
        self.wait_log(gw, "replica %s: model half_plus_two not serving" % b.addr)
        self.assertEqual(check("half_plus_two"), "NOT_SERVING")
        self.assertEqual(check("half_plus_three"), "SERVING")

    def test_grpc_health_watch_streams_changes(self):
        a, b = harness.Sim(), harness.Sim()
        self.addCleanup(a.stop)
        self.addCleanup(b.stop)
        gw = self.health_gateway(a, b)
        self.wait_log(gw, "replica %s: model half_plus_two serving" % a.addr)
        self.wait_log(gw, "replica %s: model half_plus_two serving" % b.addr)
        names = {b"\x08\x01": "SERVING", b"\x08\x02": "NOT_SERVING", b"\x08\x03": "SERVICE_UNKNOWN"}
        with gw.channel() as ch:
            watch = ch.unary_stream("/grpc.health.v1.Health/Watch")
            updates = watch(b"\x0a\x0dhalf_plus_two", timeout=30)
            self.assertEqual(names[next(updates)], "SERVING")
            # a model no probe covers: said, and the stream stays open (the protocol's rule)
            unknown = watch(b"\x0a\x06nosuch", timeout=30)
            self.assertEqual(names[next(unknown)], "SERVICE_UNKNOWN")
            unknown.cancel()
            for s in (a, b):
                for v in (123, 124):
                    s.control(op="set_state", model="half_plus_two", version=v, state="LOADING")
            t0 = time.monotonic()
            self.assertEqual(names[next(updates)], "NOT_SERVING")  # on the same stream
            self.assertLess(time.monotonic() - t0, 5)
            for s in (a, b):
                for v in (123, 124):
                    s.control(op="set_state", model="half_plus_two", version=v, state="AVAILABLE")
            self.assertEqual(names[next(updates)], "SERVING")
            # draining ends the watch (UNAVAILABLE) instead of waiting out the drain timeout
            t0 = time.monotonic()
            gw.signal(signal.SIGTERM)
            with self.assertRaises(grpc.RpcError) as e:
                next(updates)
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
        gw.p.wait(timeout=10)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual(gw.p.returncode, 0, gw.stderr())

    def test_deadline_shorter_than_typical_latency_fails_fast(self):
        slow = harness.Sim("--compute-us", "100000")
        self.addCleanup(slow.stop)
        gw = self.stop_later(gateway(self.tmp.name, "deadline", {"p": {"targets": [slow.addr]}},
                                     [{"model": "*", "pool": "p"}]))
        with gw.channel() as ch:
            for _ in range(3):
                self.assertEqual(call(ch, predict())[0], grpc.StatusCode.OK)  # ~100 ms each
            before = predicts(slow)
            t0 = time.monotonic()
            code, details, _ = call(ch, predict(), timeout=0.03)
            self.assertLess(time.monotonic() - t0, 0.03)
            self.assertEqual(code, grpc.StatusCode.DEADLINE_EXCEEDED)
            self.assertRegex(details, r"^tfgate: the deadline \(\d+ ms\) is shorter than pool p's typical latency")
            self.assertEqual(predicts(slow), before)  # it never occupied the backend


if __name__ == "__main__":
    unittest.main(verbosity=2)
