"""TF Serving's REST API through tfgate with real curl: the examples of TF Serving's REST
documentation work unchanged, over HTTP/1.1, HTTP/2 (prior knowledge and Upgrade) and TLS.
(The exhaustive REST behaviour is tests/conformance/.)"""
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness  # noqa: E402


class TestRest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.cert, cls.key = harness.make_cert(cls.tmp.name)
        cls.sim = harness.Sim()
        cls.gw = harness.Gateway("--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0",
                                 "--tls-cert", cls.cert, "--tls-key", cls.key, "--backend", cls.sim.addr,
                                 "--max-body-bytes", "100000")
        cls.http = "http://127.0.0.1:%d" % cls.gw.ports[0]
        cls.https = "https://127.0.0.1:%d" % cls.gw.ports[1]

    @classmethod
    def tearDownClass(cls):
        assert cls.gw.stop() == 0, cls.gw.stderr()
        assert cls.sim.stop() == 0
        cls.tmp.cleanup()

    def curl(self, url, *args, data=None):
        argv = ["curl", "-sS", "-w", "\n%{http_code} %{http_version}", "--cacert", self.cert] + list(args)
        if data is not None:
            argv += ["-X", "POST", "--data-binary", data]
        p = subprocess.run(argv + [url], capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        body, _, tail = p.stdout.rpartition(b"\n")
        code, version = tail.decode().split()
        return int(code), version, body

    def test_documented_examples_every_transport(self):
        examples = [  # TF Serving's REST API documentation, unchanged
            ("/v1/models/half_plus_two:predict", '{"instances": [1.0, 2.0, 5.0]}', {"predictions": [2.5, 3.0, 4.5]}),
            ("/v1/models/half_plus_three:predict", '{"instances": [1.0, 2.0, 5.0]}', {"predictions": [3.5, 4.0, 5.5]}),
            ("/v1/models/half_plus_two:classify", '{"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]}',
             {"results": [[["", 12.0]]]}),
            ("/v1/models/half_plus_three:regress",
             '{"signature_name": "tensorflow/serving/regress", "examples": [{"x": 1.0}, {"x": 2.0}]}',
             {"results": [3.5, 4.0]}),
        ]
        for base, opts, version in ((self.http, ["--http1.1"], "1.1"), (self.http, ["--http2-prior-knowledge"], "2"),
                                    (self.http, ["--http2"], "2"), (self.https, ["--http2"], "2"),
                                    (self.https, ["--http1.1"], "1.1")):
            for path, body, want in examples:
                with self.subTest(base=base, opts=opts, path=path):
                    code, v, out = self.curl(base + path, *opts, data=body)
                    self.assertEqual((code, v), (200, version), out)
                    self.assertEqual(json.loads(out), want)

    def test_status_and_metadata(self):
        code, _, out = self.curl(self.http + "/v1/models/half_plus_two")
        self.assertEqual(code, 200)
        self.assertEqual([(s["version"], s["state"]) for s in json.loads(out)["model_version_status"]],
                         [("124", "AVAILABLE"), ("123", "AVAILABLE")])
        code, _, out = self.curl(self.http + "/v1/models/half_plus_two/versions/123/metadata")
        self.assertEqual(code, 200)
        meta = json.loads(out)
        self.assertEqual(meta["model_spec"], {"name": "half_plus_two", "signature_name": "", "version": "123"})
        sd = meta["metadata"]["signature_def"]["signature_def"]
        self.assertEqual(sd["serving_default"]["inputs"]["x"]["dtype"], "DT_FLOAT")
        self.assertEqual(sd["classify_x_to_y"]["inputs"]["inputs"]["tensor_shape"], {"dim": [], "unknown_rank": True})

    def test_errors_are_tf_serving_json(self):
        code, _, out = self.curl(self.http + "/v1/models/nosuch:predict", data='{"instances": [1.0]}')
        self.assertEqual((code, json.loads(out)), (404, {"error": "Servable not found for request: Latest(nosuch)"}))
        code, _, out = self.curl(self.http + "/v1/models/half_plus_two/labels/nope:predict", data='{"instances": [1]}')
        self.assertEqual((code, json.loads(out)), (400, {"error": "Unrecognized servable version label: nope"}))
        code, _, out = self.curl(self.http + "/v1/models/half_plus_two:predict", data='{"instances": [1.0,]}')
        self.assertEqual(code, 400)
        self.assertEqual(json.loads(out)["error"], "JSON Parse error: Invalid value. at offset: 19")
        # TF Serving would send x twice over with the shape of once (spec §3.4); we refuse it
        code, _, out = self.curl(self.http + "/v1/models/half_plus_two:predict",
                                 data='{"instances": [{"x": [1.0]}, {"x": [2.0], "x": [3.0]}]}')
        self.assertEqual((code, json.loads(out)), (400, {
            "error": "Failed to process element: 1 key: x of 'instances' list. Error: INVALID_ARGUMENT: "
                     "tfgate: duplicate key in JSON object: x"}))

    def test_nested_float_tensor(self):
        """A [2, 16, 16, 3] image batch (the fast path's kind of body, tensor_json_fast.h), in
        Python's own float spelling: the shape comes back nested the same way and every value
        is 0.5 * x + 2 computed in float32, as the model does."""
        import random
        import struct
        f32 = lambda v: struct.unpack("<f", struct.pack("<f", v))[0]
        rnd = random.Random(5)
        xs = [[[[f32(rnd.randrange(256) / 255.0) for _ in range(3)] for _ in range(16)] for _ in range(16)]
              for _ in range(2)]
        want = [[[[f32(0.5 * v + 2.0) for v in px] for px in row] for row in img] for img in xs]
        for opts in (["--http1.1"], ["--http2-prior-knowledge"]):
            with self.subTest(opts=opts):
                code, _, out = self.curl(self.http + "/v1/models/half_plus_two:predict", *opts,
                                         data=json.dumps({"instances": xs}))
                self.assertEqual(code, 200, out[:200])
                # TF's %.9g text reads back as the float32 exactly (spec §3.8)
                got = json.loads(out, parse_float=lambda t: f32(float(t)))["predictions"]
                self.assertTrue(got == want, out[:200])

    def test_gzip_request_body(self):
        path = os.path.join(self.tmp.name, "body.gz")
        with open(path, "wb") as f:
            f.write(gzip.compress(b'{"instances": [1.0, 2.0, 5.0]}'))
        code, _, out = self.curl(self.http + "/v1/models/half_plus_two:predict", "-H", "Content-Encoding: gzip",
                                 data="@" + path)
        self.assertEqual((code, json.loads(out)), (200, {"predictions": [2.5, 3.0, 4.5]}))
        with open(path, "wb") as f:
            f.write(b"not gzip at all")  # TF Serving: the body becomes empty
        code, _, out = self.curl(self.http + "/v1/models/half_plus_two:predict", "-H", "Content-Encoding: gzip",
                                 data="@" + path)
        self.assertEqual((code, json.loads(out)), (400, {"error": "JSON Parse error: The document is empty"}))

    def test_gzip_responses(self):
        """Compressed when asked (curl --compressed sends Accept-Encoding and inflates) and big
        enough; identity otherwise, over HTTP/1.1 and HTTP/2."""
        big = '{"instances": [' + ", ".join(["1.5"] * 2000) + "]}"
        url = self.http + "/v1/models/half_plus_two:predict"
        want = {"predictions": [2.75] * 2000}
        same = lambda text: self.assertTrue(json.loads(text) == want, text[:200])  # no 2000-item diff
        for opts in (["--http1.1"], ["--http2-prior-knowledge"]):
            with self.subTest(opts=opts):
                code, _, out = self.curl(url, *opts, "--compressed", "-D", "-", data=big)
                head, _, body = out.partition(b"\r\n\r\n")
                self.assertEqual(code, 200)
                self.assertIn(b"content-encoding: gzip", head.lower())
                self.assertIn(b"vary: accept-encoding", head.lower())
                same(body)
                # the raw bytes are gzip and much smaller than the text
                code, _, raw = self.curl(url, *opts, "-H", "Accept-Encoding: gzip", data=big)
                self.assertEqual(raw[:2], b"\x1f\x8b")
                same(gzip.decompress(raw))
                self.assertLess(len(raw), len(gzip.decompress(raw)) // 5)
                for ae in ([], ["-H", "Accept-Encoding: gzip;q=0"], ["-H", "Accept-Encoding: br"]):
                    code, _, out = self.curl(url, *opts, *ae, "-D", "-", data=big)
                    head, _, body = out.partition(b"\r\n\r\n")
                    self.assertNotIn(b"content-encoding", head.lower())
                    same(body)
                # small answers stay identity even when gzip is accepted
                code, _, out = self.curl(url, *opts, "--compressed", "-D", "-", data='{"instances": [1.0]}')
                head, _, body = out.partition(b"\r\n\r\n")
                self.assertNotIn(b"content-encoding", head.lower())
                self.assertEqual(json.loads(body), {"predictions": [2.5]})

    def test_body_over_the_limit(self):
        big = '{"instances": [' + ", ".join(["1.5"] * 40000) + "]}"  # ~200 KB > 100 KB
        path = os.path.join(self.tmp.name, "big.json")
        with open(path, "w") as f:
            f.write(big)
        for opts in (["--http1.1"], ["--http2-prior-knowledge"]):
            code, _, out = self.curl(self.http + "/v1/models/half_plus_two:predict", *opts, data="@" + path)
            self.assertEqual(code, 413, out)
            self.assertIn("error", json.loads(out))

    def test_h2load_rest(self):
        path = os.path.join(self.tmp.name, "small.json")
        with open(path, "w") as f:
            f.write('{"instances": [1.0, 2.0, 3.0, 4.0]}')
        self.sim.control(op="reset_stats")
        for extra in ([], ["--h1"]):
            p = subprocess.run(["h2load", "-n", "1000", "-c", "4", "-m", "8", "-d", path] + extra +
                               [self.http + "/v1/models/half_plus_two:predict"],
                               capture_output=True, text=True, timeout=120)
            self.assertIn("1000 succeeded, 0 failed", p.stdout, p.stdout + p.stderr)
            self.assertIn("status codes: 1000 2xx", p.stdout)
        st = self.sim.stats()
        self.assertEqual(st["calls"]["Predict"], 2000)
        self.assertLessEqual(st["calls"]["GetModelMetadata"], 200)  # signatures come from the cache



class TestSignatureCache(unittest.TestCase):
    """The gateway caches signatures (dtypes) per model. When the backend starts serving a model
    whose input dtype changed, no request is converted with the old dtype silently: the backend
    rejects the stale tensor, the gateway forgets the signature, and the next request uses the
    new one (before the cache's lifetime ends)."""

    def test_dtype_change_is_never_silent(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)

        def models(version, dtype):
            return harness.write_json(tmp.name, "m%d.json" % version, {"models": [{
                "name": "m", "versions": [version], "behavior": {"type": "identity"},
                "signatures": {"serving_default": {
                    "method_name": "tensorflow/serving/predict",
                    "inputs": {"x": {"dtype": dtype, "shape": [-1]}},
                    "outputs": {"y": {"dtype": dtype, "shape": [-1]}}}}}]})

        sim = harness.Sim("--models", models(1, "DT_FLOAT"))
        port = sim.port
        # one worker: the cache is per worker, and the stale entry must be the one consulted
        gw = harness.Gateway("--listen", "127.0.0.1:0", "--backend", sim.addr, "--workers", "1")
        self.addCleanup(gw.stop)
        url = "http://127.0.0.1:%d/v1/models/m:predict" % gw.port
        body = '{"instances": [1, 2]}'

        def post():
            p = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", "--data-binary", body, url],
                               capture_output=True, timeout=30, text=True)
            out, _, code = p.stdout.rpartition("\n")
            return int(code), out

        # compared as text: 1.0 (float) and 1 (int64) are equal once parsed in Python
        self.assertEqual(post(), (200, '{\n    "predictions": [1.0, 2.0\n    ]\n}'))
        self.assertEqual(sim.stop(), 0)
        sim = harness.Sim("--models", models(2, "DT_INT64"), port=port)
        self.addCleanup(sim.stop)

        answers = []
        for _ in range(100):  # bounded: reconnect (503s during the backoff), stale, refresh
            code, out = post()
            answers.append((code, out))
            if code == 200:
                break
            time.sleep(0.05)
        self.assertEqual(answers[-1], (200, '{\n    "predictions": [1, 2\n    ]\n}'), answers)
        for code, out in answers[:-1]:  # everything before is an error, never wrong data
            self.assertIn(code, (400, 503), answers)
            self.assertIn("error", json.loads(out))
        stale = [json.loads(out)["error"] for code, out in answers if code == 400]
        # at most one stale conversion, refused by the backend, then the signature is fetched
        # again (none when the reconnect outlasted the cache's 5 s lifetime)
        self.assertLessEqual(len(stale), 1, answers)
        for e in stale:
            self.assertIn("Expects arg[0] to be int64 but float is provided", e)


if __name__ == "__main__":
    unittest.main(verbosity=2)
