"""Rate limits through tfgate: token buckets per caller (the JWT's provider and subject) and
per model, over REST (429 + Retry-After) and gRPC (RESOURCE_EXHAUSTED); one budget shared by two
tfgate processes through a real redis-server; traffic goes on with local limits when Redis
stops, or is refused (503 / UNAVAILABLE) when configured to fail closed."""
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness  # noqa: E402

import grpc  # noqa: E402
import jwt  # noqa: E402

ISS = "https://idp.test"
SECRET = b"0123456789abcdef0123456789abcdef-rl"
PS = "/tensorflow.serving.PredictionService/"
BODY = '{"instances": [1.0, 2.0, 5.0]}'


def b64u(b):
    import base64
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(sub):
    return jwt.encode({"iss": ISS, "sub": sub, "exp": int(time.time()) + 600}, SECRET, algorithm="HS256",
                      headers={"kid": "k"})


def config(sim, tmp, name, rate_limits):
    cfg = {
        "workers": 2,  # test_2 waits for each worker's Redis connection
        "listen": [{"address": "127.0.0.1:0"}],
        "pools": {"cpu": {"targets": [sim.addr]}},
        "auth": {"providers": [{"issuer": ISS, "keys": [{"kty": "oct", "kid": "k", "k": b64u(SECRET)}]}],
                 "anonymous_models": ["half_plus_three"]},
        "rate_limits": rate_limits,
    }
    return harness.write_json(tmp, name, cfg)


def rest(gw, model, sub=None):
    argv = ["curl", "-sS", "-D", "-", "-w", "\n%{http_code}", "--data-binary", BODY]
    if sub is not None:
        argv += ["-H", "Authorization: Bearer " + token(sub)]
    p = subprocess.run(argv + ["http://127.0.0.1:%d/v1/models/%s:predict" % (gw.port, model)],
                       capture_output=True, timeout=30)
    out, _, code = p.stdout.rpartition(b"\n")
    head, _, body = out.partition(b"\r\n\r\n")
    hdrs = {k.strip().lower(): v.strip() for k, _, v in
            (line.partition(":") for line in head.decode().split("\r\n")[1:])}
    return int(code), hdrs, json.loads(body) if body else None


def grpc_predict(gw, model, sub=None):
    r = harness.predict(model)
    md = [("authorization", "Bearer " + token(sub))] if sub else []
    with gw.channel() as ch:
        fn = ch.unary_unary(PS + "Predict", request_serializer=lambda m: m.SerializeToString())
        try:
            _, call = fn.with_call(r, timeout=10, metadata=md)
            return grpc.StatusCode.OK, "", dict(call.trailing_metadata())
        except grpc.RpcError as e:
            return e.code(), e.details(), dict(e.trailing_metadata() or ())


class TestLocalLimits(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.sim = harness.Sim()
        cls.gw = harness.Gateway("--config", config(cls.sim, cls.tmp.name, "caller.json", {
            "identity": {"rate": 0.2, "burst": 3}}))
        cls.gw_model = harness.Gateway("--config", config(cls.sim, cls.tmp.name, "model.json", {
            "models": {"half_plus_three": {"rate": 0.2, "burst": 4}}}))

    @classmethod
    def tearDownClass(cls):
        assert cls.gw.stop() == 0, cls.gw.stderr()
        assert cls.gw_model.stop() == 0, cls.gw_model.stderr()
        assert cls.sim.stop() == 0
        cls.tmp.cleanup()

    def test_per_caller_rest_and_grpc_share_one_bucket(self):
        self.assertEqual([rest(self.gw, "half_plus_two", "alice")[0] for _ in range(2)], [200, 200])
        self.assertEqual(grpc_predict(self.gw, "half_plus_two", "alice")[0], grpc.StatusCode.OK)
        code, hdrs, body = rest(self.gw, "half_plus_two", "alice")
        self.assertEqual((code, body), (429, {"error": "tfgate: rate limit exceeded for this caller"}))
        self.assertIn(hdrs["retry-after"], ("4", "5"))  # one token every 5 s
        gcode, details, trailers = grpc_predict(self.gw, "half_plus_two", "alice")
        self.assertEqual((gcode, details), (grpc.StatusCode.RESOURCE_EXHAUSTED,
                                            "tfgate: rate limit exceeded for this caller"))
        self.assertIn(trailers.get("retry-after"), ("4", "5"))
        # another caller has its own bucket; anonymous callers share one
        self.assertEqual(rest(self.gw, "half_plus_two", "bob")[0], 200)
        anon = [rest(self.gw, "half_plus_three")[0] for _ in range(4)]
        self.assertEqual(anon, [200, 200, 200, 429])

    def test_per_model_across_callers(self):
        codes = [rest(self.gw_model, "half_plus_three", "m%d" % i)[0] for i in range(4)]
        self.assertEqual(codes, [200] * 4)
        code, _, body = rest(self.gw_model, "half_plus_three", "m9")
        self.assertEqual((code, body), (429, {"error": "tfgate: rate limit exceeded for model 'half_plus_three'"}))
        self.assertEqual(grpc_predict(self.gw_model, "half_plus_three", "m10")[:2],
                         (grpc.StatusCode.RESOURCE_EXHAUSTED, "tfgate: rate limit exceeded for model 'half_plus_three'"))
        self.assertEqual(rest(self.gw_model, "half_plus_two", "m11")[0], 200)  # other models: no limit


class TestRedisLimits(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.sim = harness.Sim()
        cls.redis = harness.Redis()
        limits = {"identity": {"rate": 0.01, "burst": 10},
                  "redis": {"address": cls.redis.addr, "timeout_ms": 200}}
        cls.a = harness.Gateway("--config", config(cls.sim, cls.tmp.name, "a.json", limits))
        cls.b = harness.Gateway("--config", config(cls.sim, cls.tmp.name, "b.json", limits))
        for gw in (cls.a, cls.b):  # each worker connects when its loop starts; wait for it
            deadline = time.monotonic() + 10
            while rest(gw, "half_plus_two", "warmup-%d" % gw.port)[0] != 200 and time.monotonic() < deadline:
                time.sleep(0.05)

    @classmethod
    def tearDownClass(cls):
        assert cls.a.stop() == 0, cls.a.stderr()
        assert cls.b.stop() == 0, cls.b.stderr()
        cls.redis.stop()
        assert cls.sim.stop() == 0
        cls.tmp.cleanup()

    def test_1_two_gateways_one_budget(self):
        codes = []
        for i in range(8):
            codes.append(rest(self.a, "half_plus_two", "shared")[0])
            codes.append(grpc_predict(self.b, "half_plus_two", "shared")[0])
        allowed = codes.count(200) + codes.count(grpc.StatusCode.OK)
        self.assertEqual(allowed, 10, codes)  # burst 10 in all, not 10 per gateway

    def test_2_redis_down_traffic_goes_on(self):
        self.redis.stop()
        # local buckets now: a fresh caller gets its burst on each gateway
        for gw in (self.a, self.b):
            self.assertEqual([rest(gw, "half_plus_two", "after-outage")[0] for _ in range(3)], [200] * 3)
        deadline = time.monotonic() + 5
        while "local limits apply" not in self.a.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn("local limits apply", self.a.stderr())
        # and Redis again when it is back
        TestRedisLimits.redis = harness.Redis(port=self.redis.port)
        deadline = time.monotonic() + 15  # every worker has its own connection
        while self.a.stderr().count("Redis connected") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        codes = [rest(self.a, "half_plus_two", "back")[0] for _ in range(12)]
        self.assertEqual(codes.count(200), 10, codes)


class TestFailClosed(unittest.TestCase):
    def test_unreachable_redis_refuses(self):
        with tempfile.TemporaryDirectory() as tmp:
            sim = harness.Sim()
            port = harness.free_port()  # nothing listens there
            gw = harness.Gateway("--config", config(sim, tmp, "c.json", {
                "identity": {"rate": 100}, "redis": {"address": "127.0.0.1:%d" % port, "on_failure": "deny"}}))
            try:
                code, _, body = rest(gw, "half_plus_two", "x")
                self.assertEqual((code, body), (503, {"error": "tfgate: rate limiter unavailable"}))
                self.assertEqual(grpc_predict(gw, "half_plus_two", "x")[:2],
                                 (grpc.StatusCode.UNAVAILABLE, "tfgate: rate limiter unavailable"))
                deadline = time.monotonic() + 5
                while "refusing limited requests" not in gw.stderr() and time.monotonic() < deadline:
                    time.sleep(0.05)
                self.assertIn("refusing limited requests", gw.stderr())
            finally:
                self.assertEqual(gw.stop(), 0, gw.stderr())
                sim.stop()


class TestRedisByName(unittest.TestCase):
    def test_a_name_is_looked_up_off_the_loop(self):
        tmp = tempfile.TemporaryDirectory()
        sim, redis = harness.Sim(), harness.Redis()
        limits = {"models": {"half_plus_two": {"rate": 0.01, "burst": 2}},
                  "redis": {"address": "localhost:%d" % redis.port, "timeout_ms": 500}}
        gw = harness.Gateway("--config", config(sim, tmp.name, "gw.json", limits))
        try:
            deadline = time.monotonic() + 10
            codes = []
            while 429 not in codes and time.monotonic() < deadline:
                codes.append(rest(gw, "half_plus_two", "x")[0])
                time.sleep(0.05)
            self.assertEqual(codes[-3:], [200, 200, 429])
            p = subprocess.run(["redis-cli", "-p", str(redis.port), "DBSIZE"], capture_output=True,
                               text=True, timeout=10)
            self.assertGreater(int(p.stdout), 0)  # Redis decided, found by its name
        finally:
            self.assertEqual(gw.stop(), 0, gw.stderr())
            sim.stop()
            redis.stop()
            tmp.cleanup()


    def test_a_name_that_does_not_resolve_falls_back(self):
        tmp = tempfile.TemporaryDirectory()
        sim = harness.Sim()
        limits = {"models": {"half_plus_two": {"rate": 0.01, "burst": 2}},
                  "redis": {"address": "no-such-redis.invalid:6379", "on_failure": "local"}}
        gw = harness.Gateway("--config", config(sim, tmp.name, "gw.json", limits))
        try:
            codes = [rest(gw, "half_plus_two", "x")[0] for _ in range(3)]
            self.assertEqual(codes[:2], [200, 200])  # local buckets decide meanwhile
            self.assertIsNotNone(gw.wait_stderr(r"Redis no-such-redis\.invalid:6379 .*local limits apply"),
                                 gw.stderr())
        finally:
            self.assertEqual(gw.stop(), 0, gw.stderr())
            sim.stop()
            tmp.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
