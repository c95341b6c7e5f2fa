"""Identity and access through tfgate, with tokens minted by an independent library (Debian's
python3-jwt with python3-cryptography): valid HS256, RS256 and ES256 tokens pass; every kind of
bad token is refused over REST (401, WWW-Authenticate) and gRPC (UNAUTHENTICATED); RBAC rules
decide REST and gRPC calls alike; anonymous models; key files reload on SIGHUP."""
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness  # noqa: E402

import grpc  # noqa: E402
import jwt  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402
from tensorflow.core.framework import types_pb2  # noqa: E402
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,  # noqa: E402
                                     get_model_status_pb2, predict_pb2)

ISS = "https://idp.test"
AUD = "tfgate"
PS = "/tensorflow.serving.PredictionService/"
MS = "/tensorflow.serving.ModelService/"
HS_SECRET = b"0123456789abcdef0123456789abcdef-hs256"


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def rsa_jwk(key, kid):
    n = key.public_key().public_numbers()
    return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": b64u(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big")),
            "e": b64u(n.e.to_bytes((n.e.bit_length() + 7) // 8, "big"))}


def ec_jwk(key, kid):
    n = key.public_key().public_numbers()
    return {"kty": "EC", "kid": kid, "crv": "P-256",
            "x": b64u(n.x.to_bytes(32, "big")), "y": b64u(n.y.to_bytes(32, "big"))}


def hs_jwk(secret, kid):
    return {"kty": "oct", "kid": kid, "k": b64u(secret)}


def predict_msg(model="half_plus_two", version=None, label=None, signature=None):
    r = predict_pb2.PredictRequest()
    r.model_spec.name = model
    if version is not None:
        r.model_spec.version.value = version
    if label is not None:
        r.model_spec.version_label = label
    if signature is not None:
        r.model_spec.signature_name = signature
    t = r.inputs["x"]
    t.dtype = types_pb2.DT_FLOAT
    t.tensor_shape.dim.add().size = 3
    t.float_val.extend([1.0, 2.0, 5.0])
    return r


class TestAuth(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cls.rsa2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cls.ec = ec.generate_private_key(ec.SECP256R1())
        cls.other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cls.jwks = os.path.join(cls.tmp.name, "jwks.json")
        cls.write_jwks([rsa_jwk(cls.rsa, "rsa1"), ec_jwk(cls.ec, "ec1")])
        cls.record = os.path.join(cls.tmp.name, "calls.jsonl")
        cls.sim = harness.Sim("--record", cls.record)
        rules = [
            {"roles": ["admin"], "models": ["*"], "methods": ["*"]},
            {"roles": ["reader"], "models": ["half_plus_two"], "methods": ["metadata", "status"]},
            {"roles": ["predictor"], "models": ["half_plus_two"], "versions": ["123", "stable"],
             "signatures": ["serving_default"], "methods": ["predict"]},
            {"roles": ["classifier"], "models": ["half_plus_two"], "signatures": ["classify_x_to_y"],
             "methods": ["classify"]},
        ]
        cfg = {
            "listen": [{"address": "127.0.0.1:0"}],
            "pools": {"cpu": {"targets": [cls.sim.addr]}},
            "auth": {
                "providers": [{"issuer": ISS, "audiences": [AUD, "other"], "jwks_file": cls.jwks,
                               "keys": [hs_jwk(HS_SECRET, "hs1")]}],
                "roles_claim": "realm_access.roles",
                "anonymous_models": ["half_plus_three"],
                "rules": rules,
                "audit_log": os.path.join(cls.tmp.name, "audit.jsonl"),
                "forward_claims": {"sub": "x-tfgate-subject", "realm_access.roles": "x-tfgate-roles"},
            },
        }
        cls.gw = harness.Gateway("--config", harness.write_json(cls.tmp.name, "tfgate.json", cfg))
        cls.url = "http://127.0.0.1:%d" % cls.gw.port

    @classmethod
    def tearDownClass(cls):
        assert cls.gw.stop() == 0, cls.gw.stderr()
        assert cls.sim.stop() == 0
        cls.tmp.cleanup()

    @classmethod
    def write_jwks(cls, keys):
        tmp = cls.jwks + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"keys": keys}, f)
        os.replace(tmp, cls.jwks)

    # ---- tokens ----

    def claims(self, **over):
        now = int(time.time())
        c = {"iss": ISS, "aud": AUD, "sub": "alice", "iat": now, "exp": now + 600,
             "realm_access": {"roles": ["admin"]}}
        c.update(over)
        return {k: v for k, v in c.items() if v is not None}

    def token(self, alg="RS256", kid=None, key=None, headers=None, **claims):
        key = key or {"RS256": self.rsa, "ES256": self.ec, "HS256": HS_SECRET}[alg]
        kid = kid or {"RS256": "rsa1", "ES256": "ec1", "HS256": "hs1"}[alg]
        h = {"kid": kid}
        h.update(headers or {})
        return jwt.encode(self.claims(**claims), key, algorithm=alg, headers=h)

    def roles_token(self, *roles):
        return self.token(realm_access={"roles": list(roles)})

    # ---- clients ----

    def rest(self, path, token=None, body=None, headers=()):
        argv = ["curl", "-sS", "-D", "-", "-w", "\n%{http_code}"]
        if token is not None:
            argv += ["-H", "Authorization: Bearer " + token]
        for h in headers:
            argv += ["-H", h]
        if body is not None:
            argv += ["--data-binary", body]
        p = subprocess.run(argv + [self.url + path], capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        out, _, code = p.stdout.rpartition(b"\n")
        head, _, text = out.partition(b"\r\n\r\n")
        hdrs = {}
        for line in head.decode().split("\r\n")[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        return int(code), hdrs, json.loads(text) if text else None

    def grpc_call(self, path, msg, token=None, metadata=()):
        md = list(metadata)
        if token is not None:
            md.append(("authorization", "Bearer " + token))
        with self.gw.channel() as ch:
            fn = ch.unary_unary(path, request_serializer=lambda m: m.SerializeToString())
            try:
                fn(msg, timeout=10, metadata=md)
                return grpc.StatusCode.OK, ""
            except grpc.RpcError as e:
                return e.code(), e.details()

    PREDICT = "/v1/models/half_plus_two:predict"
    BODY = '{"instances": [1.0, 2.0, 5.0]}'

    # ---- authentication ----

    def test_valid_tokens_pass_rest_and_grpc(self):
        for alg in ("HS256", "RS256", "ES256"):
            with self.subTest(alg=alg):
                tok = self.token(alg)
                code, _, body = self.rest(self.PREDICT, tok, self.BODY)
                self.assertEqual((code, body), (200, {"predictions": [2.5, 3.0, 4.5]}))
                self.assertEqual(self.grpc_call(PS + "Predict", predict_msg(), tok),
                                 (grpc.StatusCode.OK, ""))
        # aud as a list holding one of ours; the same token twice (the second from the cache)
        tok = self.token(aud=["someone-else", "other"])
        for _ in range(2):
            self.assertEqual(self.rest(self.PREDICT, tok, self.BODY)[0], 200)

    def refusals(self):
        now = int(time.time())
        rsa_pub_pem = self.rsa.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo)
        good = self.token()
        h, p, s = good.split(".")
        tampered_payload = ".".join([h, b64u(json.dumps(self.claims(sub="mallory")).encode()), s])
        sig = bytearray(base64.urlsafe_b64decode(s + "=="))
        sig[10] ^= 1
        tampered_sig = ".".join([h, p, b64u(bytes(sig))])
        none = b64u(b'{"alg":"none","typ":"JWT"}') + "." + b64u(json.dumps(self.claims()).encode()) + "."
        none_kid = b64u(b'{"alg":"none","kid":"rsa1"}') + "." + b64u(json.dumps(self.claims()).encode()) + "."
        # algorithm confusion: HS256 MACed with the RSA public key (what libjwt 1.10 accepts);
        # PyJWT refuses to do it, so it is made by hand
        import hashlib
        import hmac
        def hs_with(secret, kid=None):
            hdr = {"alg": "HS256", "typ": "JWT"}
            if kid:
                hdr["kid"] = kid
            si = b64u(json.dumps(hdr).encode()) + "." + b64u(json.dumps(self.claims(sub="mallory")).encode())
            return si + "." + b64u(hmac.new(secret, si.encode(), hashlib.sha256).digest())
        es = self.token("ES256").split(".")
        rs_on_ec = ".".join([b64u(b'{"alg":"RS256","kid":"ec1"}'), es[1], es[2]])
        return [
            ("expired", self.token(exp=now - 3600), "token expired"),
            ("not yet valid", self.token(nbf=now + 3600), "token not yet valid"),
            ("no exp", self.token(exp=None), "token has no expiry"),
            ("wrong issuer", self.token(iss="https://evil.test"), "wrong issuer"),
            ("wrong audience", self.token(aud="someone-else"), "wrong audience"),
            ("unknown kid", self.token(kid="nope"), "unknown signing key"),
            ("other key, same kid", self.token(key=self.other_rsa), "invalid signature"),
            ("tampered payload", tampered_payload, "invalid signature"),
            ("tampered signature", tampered_sig, "invalid signature"),
            ("alg none", none, "algorithm not accepted"),
            ("alg none with kid", none_kid, "algorithm not accepted"),
            ("HS256 with the RSA public key, kid", hs_with(rsa_pub_pem, "rsa1"), "algorithm not accepted"),
            ("HS256 with the RSA public key", hs_with(rsa_pub_pem), "invalid signature"),
            ("RS256 header on an EC key", rs_on_ec, "algorithm not accepted"),
            ("HS384", self.token("HS256", headers={"alg": "HS384"}), "algorithm not accepted"),
            ("huge", "a" * 9000 + "." + "b" * 10 + ".c", "token too large"),
            ("garbage", "not-a-jwt", "malformed token"),
            ("five parts (JWE)", "a.b.c.d.e", "malformed token"),
            ("json array payload", h + "." + b64u(b"[1]") + "." + s, "malformed token"),
        ]

    def test_bad_tokens_refused_rest(self):
        for name, tok, reason in self.refusals():
            with self.subTest(name=name):
                code, hdrs, body = self.rest(self.PREDICT, tok, self.BODY)
                self.assertEqual(code, 401, body)
                self.assertEqual(body, {"error": "tfgate: unauthenticated: " + reason})
                self.assertEqual(hdrs["www-authenticate"],
                                 'Bearer realm="tfgate", error="invalid_token", error_description="%s"' % reason)
        self.assertEqual(self.sim_calls_with("mallory"), 0)

    def test_bad_tokens_refused_grpc(self):
        for name, tok, reason in self.refusals():
            with self.subTest(name=name):
                self.assertEqual(self.grpc_call(PS + "Predict", predict_msg(), tok),
                                 (grpc.StatusCode.UNAUTHENTICATED, "tfgate: unauthenticated: " + reason))

    def test_missing_or_foreign_credentials(self):
        code, hdrs, body = self.rest(self.PREDICT, None, self.BODY)
        self.assertEqual((code, body), (401, {"error": "tfgate: unauthenticated: missing bearer token"}))
        self.assertEqual(hdrs["www-authenticate"], 'Bearer realm="tfgate"')  # RFC 6750 §3.1
        code, _, body = self.rest(self.PREDICT, None, self.BODY, headers=["Authorization: Basic YTpi"])
        self.assertEqual((code, body["error"]),
                         (401, "tfgate: unauthenticated: the Authorization scheme is not Bearer"))
        self.assertEqual(self.grpc_call(PS + "Predict", predict_msg()),
                         (grpc.StatusCode.UNAUTHENTICATED, "tfgate: unauthenticated: missing bearer token"))
        # a token in the query string is not a credential (and breaks TF Serving's URL grammar),
        # and it reaches no log
        qtok = self.token(sub="in-query")
        code, _, _ = self.rest(self.PREDICT + "?access_token=" + qtok, "not-a-token", self.BODY)
        self.assertEqual(code, 401)
        self.assertNotIn("access_token=" + qtok[:40], self.gw.stderr())

    def test_tokens_never_reach_logs_or_backends(self):
        tok = self.token(sub="log-check")
        self.rest(self.PREDICT, tok, self.BODY)
        self.rest(self.PREDICT, self.token(exp=int(time.time()) - 999), self.BODY)
        self.grpc_call(PS + "Predict", predict_msg(), tok)
        self.assertNotIn(tok.split(".")[2], self.gw.stderr())
        with open(self.record) as f:
            for line in f:
                self.assertNotIn("authorization", json.loads(line).get("metadata", {}))
                self.assertNotIn(tok.split(".")[2], line)

    def last_backend_metadata(self):
        with open(self.record) as f:
            return [json.loads(line) for line in f][-1]["metadata"]

    def test_claims_forwarded_and_spoofing_stripped(self):
        tok = self.token(sub="alice", realm_access={"roles": ["admin", "ops"]})
        self.assertEqual(self.grpc_call(PS + "Predict", predict_msg(), tok,
                                        metadata=[("x-tfgate-subject", "mallory"), ("x-tfgate-roles", "root")]),
                         (grpc.StatusCode.OK, ""))
        md = self.last_backend_metadata()
        self.assertEqual((md["x-tfgate-subject"], md["x-tfgate-roles"]), ("alice", '["admin","ops"]'))
        self.assertEqual(self.rest(self.PREDICT, tok, self.BODY,
                                   headers=["X-Tfgate-Subject: mallory", "x-request-id: fw-1"])[0], 200)
        md = self.last_backend_metadata()
        self.assertEqual((md["x-tfgate-subject"], md["x-request-id"]), ("alice", "fw-1"))
        # anonymous: nothing to forward, and the client's claim is still dropped
        self.assertEqual(self.grpc_call(PS + "Predict", predict_msg("half_plus_three"),
                                        metadata=[("x-tfgate-subject", "mallory")]), (grpc.StatusCode.OK, ""))
        self.assertNotIn("x-tfgate-subject", self.last_backend_metadata())

    def sim_calls_with(self, text):
        with open(self.record) as f:
            return sum(1 for line in f if text in line)

    # ---- anonymous models ----

    def test_anonymous_model(self):
        code, _, body = self.rest("/v1/models/half_plus_three:predict", None, self.BODY)
        self.assertEqual((code, body), (200, {"predictions": [3.5, 4.0, 5.5]}))
        self.assertEqual(self.grpc_call(PS + "Predict", predict_msg("half_plus_three")),
                         (grpc.StatusCode.OK, ""))
        # others still need a token, whatever the body says
        code, _, _ = self.rest(self.PREDICT, None, "{not json")
        self.assertEqual(code, 401)

    # ---- RBAC: one decision for both protocols ----

    def test_rbac_rest_and_grpc_agree(self):
        def md(model="half_plus_two"):
            r = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
            r.model_spec.name = model
            return r

        def st(model="half_plus_two"):
            r = get_model_status_pb2.GetModelStatusRequest()
            r.model_spec.name = model
            return r

        def cl(sig):
            r = classification_pb2.ClassificationRequest()
            r.model_spec.name = "half_plus_two"
            r.model_spec.signature_name = sig
            r.input.example_list.examples.add().features.feature["x"].float_list.value.append(20.0)
            return r

        cl_body = lambda sig: json.dumps({"signature_name": sig, "examples": [{"x": 20.0}]})
        # (roles, REST (method, path, body), gRPC (path, message), allowed)
        cases = [
            (["reader"], ("/v1/models/half_plus_two/metadata", None), (PS + "GetModelMetadata", md()), True),
            (["reader"], ("/v1/models/half_plus_two", None), (MS + "GetModelStatus", st()), True),
            (["reader"], (self.PREDICT, self.BODY), (PS + "Predict", predict_msg()), False),
            (["reader"], ("/v1/models/half_plus_three/metadata", None),
             (PS + "GetModelMetadata", md("half_plus_three")), False),
            (["predictor"], ("/v1/models/half_plus_two/versions/123:predict", self.BODY),
             (PS + "Predict", predict_msg(version=123)), True),
            (["predictor"], ("/v1/models/half_plus_two/labels/stable:predict", self.BODY),
             (PS + "Predict", predict_msg(label="stable")), True),
            (["predictor"], ("/v1/models/half_plus_two/labels/canary:predict", self.BODY),
             (PS + "Predict", predict_msg(label="canary")), False),
            (["predictor"], ("/v1/models/half_plus_two/versions/124:predict", self.BODY),
             (PS + "Predict", predict_msg(version=124)), False),
            (["predictor"], (self.PREDICT, self.BODY), (PS + "Predict", predict_msg()), False),  # latest
            (["predictor"], ("/v1/models/half_plus_two/versions/123:predict",
                             '{"signature_name": "serving_default", "instances": [1.0]}'),
             (PS + "Predict", predict_msg(version=123, signature="serving_default")), True),
            (["predictor"], ("/v1/models/half_plus_two/versions/123:predict",
                             '{"signature_name": "regress_x_to_y", "instances": [1.0]}'),
             (PS + "Predict", predict_msg(version=123, signature="regress_x_to_y")), False),
            (["predictor"], ("/v1/models/half_plus_two/metadata", None), (PS + "GetModelMetadata", md()), False),
            (["classifier"], ("/v1/models/half_plus_two:classify", cl_body("classify_x_to_y")),
             (PS + "Classify", cl("classify_x_to_y")), True),
            (["classifier"], ("/v1/models/half_plus_two:classify", cl_body("serving_default")),
             (PS + "Classify", cl("serving_default")), False),
            ([], (self.PREDICT, self.BODY), (PS + "Predict", predict_msg()), False),
            (["reader", "predictor"], ("/v1/models/half_plus_two/versions/123:predict", self.BODY),
             (PS + "Predict", predict_msg(version=123)), True),
            (["admin"], ("/v1/models/half_plus_three:predict", self.BODY),
             (PS + "Predict", predict_msg("half_plus_three")), True),
        ]
        for roles, (path, body), (gpath, msg), allowed in cases:
            with self.subTest(roles=roles, path=path, body=body):
                tok = self.roles_token(*roles)
                code, _, out = self.rest(path, tok, body)
                gcode, gdetails = self.grpc_call(gpath, msg, tok)
                if allowed:
                    self.assertNotIn(code, (401, 403), out)
                    self.assertNotIn(gcode, (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED),
                                     gdetails)
                else:
                    self.assertEqual(code, 403, out)
                    self.assertRegex(out["error"], r"^tfgate: permission denied: \w+ on model 'half_plus_\w+'$")
                    self.assertEqual(gcode, grpc.StatusCode.PERMISSION_DENIED, gdetails)
                    self.assertEqual(gdetails, out["error"])  # the same words for both

    def test_roles_from_a_scope_string(self):
        # roles_claim is realm_access.roles; a space-separated string is split like a scope
        tok = self.token(realm_access={"roles": "viewer reader"})
        self.assertEqual(self.rest("/v1/models/half_plus_two/metadata", tok)[0], 200)

    def test_sighup_drops_no_traffic(self):
        """Requests keep flowing, all answered 200, while the keys are reloaded again and again."""
        import threading
        tok = self.token(sub="steady")
        codes, stop = [], threading.Event()

        def client():
            with self.gw.channel() as ch:
                fn = ch.unary_unary(PS + "Predict", request_serializer=lambda m: m.SerializeToString())
                while not stop.is_set():
                    try:
                        fn(predict_msg(), timeout=10, metadata=[("authorization", "Bearer " + tok)])
                        codes.append(grpc.StatusCode.OK)
                    except grpc.RpcError as e:
                        codes.append(e.code())

        threads = [threading.Thread(target=client) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            for _ in range(10):
                self.gw.signal(signal.SIGHUP)
                time.sleep(0.1)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        self.assertGreater(len(codes), 20)
        self.assertEqual(set(codes), {grpc.StatusCode.OK})

    # ---- audit ----

    def audit_records(self, request_id):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with open(os.path.join(self.tmp.name, "audit.jsonl")) as f:
                recs = [json.loads(line) for line in f if request_id in line]
            if recs:
                return recs
            time.sleep(0.02)
        self.fail("no audit record for " + request_id)

    def test_audit_records(self):
        tok = self.token(sub="auditor", realm_access={"roles": ["predictor", "x"]})
        self.rest("/v1/models/half_plus_two/labels/stable:predict", tok, self.BODY,
                  headers=["x-request-id: audit-1"])
        rec, = self.audit_records("audit-1")
        self.assertEqual({k: rec[k] for k in ("request_id", "protocol", "decision", "reason", "subject", "roles",
                                              "model", "method", "label", "signature", "status")},
                         {"request_id": "audit-1", "protocol": "rest", "decision": "allow", "reason": "",
                          "subject": "auditor", "roles": ["predictor", "x"], "model": "half_plus_two",
                          "method": "predict", "label": "stable", "signature": "serving_default", "status": 200})
        self.assertRegex(rec["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertGreaterEqual(rec["latency_ms"], 0)
        # refused before any model is known: the reason, no target
        self.rest(self.PREDICT, self.token(exp=int(time.time()) - 999), self.BODY, headers=["x-request-id: audit-2"])
        rec, = self.audit_records("audit-2")
        self.assertEqual((rec["decision"], rec["reason"], rec["status"]), ("deny", "token expired", 401))
        self.assertNotIn("model", rec)
        # denied by RBAC over gRPC: the gRPC status
        self.grpc_call(PS + "Predict", predict_msg(version=124), tok, metadata=[("x-request-id", "audit-3")])
        rec, = self.audit_records("audit-3")
        self.assertEqual((rec["protocol"], rec["decision"], rec["reason"], rec["status"], rec["version"]),
                         ("grpc", "deny", "no rule grants it", grpc.StatusCode.PERMISSION_DENIED.value[0], 124))
        # anonymous
        self.rest("/v1/models/half_plus_three:predict", None, self.BODY, headers=["x-request-id: audit-4"])
        rec, = self.audit_records("audit-4")
        self.assertEqual((rec["decision"], rec["anonymous"], rec["status"]), ("allow", True, 200))
        # never the token, never the body
        with open(os.path.join(self.tmp.name, "audit.jsonl")) as f:
            text = f.read()
        self.assertNotIn(tok.split(".")[1], text)
        self.assertNotIn("instances", text)

    # ---- key rotation ----

    def test_sighup_reloads_keys_without_restart(self):
        old = self.token()
        new = self.token(kid="rsa2", key=self.rsa2)
        self.assertEqual(self.rest(self.PREDICT, new, self.BODY)[2]["error"],
                         "tfgate: unauthenticated: unknown signing key")
        try:
            self.write_jwks([rsa_jwk(self.rsa2, "rsa2"), ec_jwk(self.ec, "ec1")])
            self.gw.signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while self.rest(self.PREDICT, new, self.BODY)[0] != 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertEqual(self.rest(self.PREDICT, new, self.BODY)[0], 200)
            # the retired key's tokens stop working at once, cached or not
            self.assertEqual(self.rest(self.PREDICT, old, self.BODY)[2]["error"],
                             "tfgate: unauthenticated: unknown signing key")
            # a broken file: the last good keys stay
            with open(self.jwks, "w") as f:
                f.write("{broken")
            self.gw.signal(signal.SIGHUP)
            time.sleep(0.3)
            self.assertEqual(self.rest(self.PREDICT, new, self.BODY)[0], 200)
        finally:
            self.write_jwks([rsa_jwk(self.rsa, "rsa1"), ec_jwk(self.ec, "ec1")])
            self.gw.signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while self.rest(self.PREDICT, old, self.BODY)[0] != 200 and time.monotonic() < deadline:
                time.sleep(0.05)


class TestJwksUri(unittest.TestCase):
    """Keys from an https:// JWK set (a Python HTTPS server standing in for the IdP): fetched off
    the request path, refetched when a token names an unknown kid, kept when the IdP goes away;
    before any key set was ever loaded the gateway cannot decide and says so (503)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.cert, cls.key = harness.make_cert(cls.tmp.name)
        cls.k1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cls.k2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cls.jwks = os.path.join(cls.tmp.name, "served.json")
        cls.log = os.path.join(cls.tmp.name, "requests.log")
        cls.serve([rsa_jwk(cls.k1, "k1")])
        cls.idp = cls.start_idp()
        cls.sim = harness.Sim()

    @classmethod
    def start_idp(cls, port=0):
        script = os.path.join(os.path.dirname(__file__), "..", "lib", "jwks_server.py")
        p = harness.Proc([sys.executable, script, "--cert", cls.cert, "--key", cls.key, "--file", cls.jwks,
                          "--log", cls.log, "--port", str(port)], r"listening on 127\.0\.0\.1:(\d+)")
        p.port = int(p.match.group(1))
        return p

    @classmethod
    def tearDownClass(cls):
        cls.idp.stop()
        assert cls.sim.stop() == 0
        cls.tmp.cleanup()

    @classmethod
    def serve(cls, keys):
        tmp = cls.jwks + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"keys": keys}, f)
        os.replace(tmp, cls.jwks)

    def gateway(self, uri, **extra):
        provider = {"issuer": ISS, "jwks_uri": uri, "jwks_ca": self.cert, "jwks_min_refresh_s": 1}
        provider.update(extra)
        cfg = {"listen": [{"address": "127.0.0.1:0"}], "pools": {"cpu": {"targets": [self.sim.addr]}},
               "auth": {"providers": [provider]}}
        return harness.Gateway("--config", harness.write_json(self.tmp.name, "gw-%d.json" % len(uri), cfg))

    def tok(self, key, kid):
        now = int(time.time())
        return jwt.encode({"iss": ISS, "sub": "u", "exp": now + 600}, key, algorithm="RS256", headers={"kid": kid})

    def call(self, gw, tok):
        p = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", "-H", "Authorization: Bearer " + tok,
                            "--data-binary", '{"instances": [1.0]}',
                            "http://127.0.0.1:%d/v1/models/half_plus_two:predict" % gw.port],
                           capture_output=True, timeout=30)
        body, _, code = p.stdout.rpartition(b"\n")
        return int(code), json.loads(body)

    def wait_for(self, gw, tok, code, seconds=10):
        deadline = time.monotonic() + seconds
        while self.call(gw, tok)[0] != code and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.call(gw, tok)

    def test_rotation_and_outage(self):
        gw = self.gateway("https://127.0.0.1:%d/jwks" % self.idp.port)
        try:
            t1, t2 = self.tok(self.k1, "k1"), self.tok(self.k2, "k2")
            self.assertEqual(self.wait_for(gw, t1, 200)[0], 200)  # fetched at start
            # the IdP rotates: a token with the new kid is refused once, fetches again, then passes
            self.serve([rsa_jwk(self.k1, "k1"), rsa_jwk(self.k2, "k2")])
            self.assertEqual(self.call(gw, t2), (401, {"error": "tfgate: unauthenticated: unknown signing key"}))
            self.assertEqual(self.wait_for(gw, t2, 200)[0], 200)
            # unknown kids do not hammer the IdP: at most one fetch per jwks_min_refresh_s (1 s)
            before = sum(1 for _ in open(self.log))
            for i in range(20):
                self.call(gw, self.tok(self.k2, "nope-%d" % i))
            self.assertLessEqual(sum(1 for _ in open(self.log)) - before, 3)
            # the IdP serves an empty set: refused ("no usable key"), the last good keys stay
            self.serve([])
            self.call(gw, self.tok(self.k2, "trigger-refetch"))
            deadline = time.monotonic() + 5
            while "no usable key" not in gw.stderr() and time.monotonic() < deadline:
                time.sleep(0.1)
            self.assertIn("no usable key", gw.stderr())
            self.assertEqual(self.call(gw, t2)[0], 200)
            # the IdP goes away: the last good keys keep working
            self.idp.stop()
            time.sleep(1.5)
            self.assertEqual(self.call(gw, t1)[0], 200)
            self.assertEqual(self.call(gw, self.tok(self.k2, "k2"))[0], 200)
            self.assertIn("keeping the last good keys", gw.stderr())
        finally:
            TestJwksUri.idp = self.start_idp(self.idp.port) if not self.idp.alive() else self.idp
            self.assertEqual(gw.stop(), 0, gw.stderr())

    def test_never_loaded_is_unavailable(self):
        dead = harness.free_port()
        gw = self.gateway("https://127.0.0.1:%d/jwks" % dead)
        try:
            code, body = self.call(gw, self.tok(self.k1, "k1"))
            self.assertEqual((code, body), (503, {"error": "tfgate: the identity provider's keys are not available yet"}))
            with gw.channel() as ch:
                fn = ch.unary_unary(PS + "Predict", request_serializer=lambda m: m.SerializeToString())
                with self.assertRaises(grpc.RpcError) as e:
                    fn(predict_msg(), timeout=10, metadata=[("authorization", "Bearer " + self.tok(self.k1, "k1"))])
                self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
        finally:
            self.assertEqual(gw.stop(), 0, gw.stderr())


class TestAuthConfig(unittest.TestCase):
    """Configurations that cannot work are refused at start, with the reason."""

    def check(self, auth, want):
        with tempfile.TemporaryDirectory() as d:
            cfg = {"listen": [{"address": "127.0.0.1:0"}], "pools": {"cpu": {"targets": ["127.0.0.1:1"]}},
                   "auth": auth}
            p = subprocess.run([harness.binary("tfgate"), "--config", harness.write_json(d, "c.json", cfg)],
                               capture_output=True, text=True, timeout=30)
            self.assertIn(p.returncode, (1, 2), p.stderr)  # 2: the file; 1: its keys
            self.assertIn(want, p.stderr)

    def test_bad_auth_configs(self):
        short = {"kty": "oct", "k": b64u(b"short")}
        small_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        self.check({"providers": [{"issuer": ISS, "keys": [short]}]}, "at least 32 bytes")
        self.check({"providers": [{"issuer": ISS, "keys": [rsa_jwk(small_rsa, "k")]}]}, "at least 2048")
        self.check({"providers": [{"issuer": ISS, "keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AA"}]}]},
                   "no usable key")
        self.check({"providers": [{"issuer": ISS, "jwks_file": "/nonexistent/jwks.json"}]}, "cannot read")
        self.check({"providers": [{"issuer": ISS, "keys": []}]}, "no usable key")
        self.check({"providers": [{"issuer": ISS}]}, "needs 'jwks_uri', 'jwks_file' or 'keys'")
        self.check({"providers": [{"keys": [hs_jwk(HS_SECRET, "a")]}]}, "'issuer' is required")
        self.check({"providers": [{"issuer": ISS, "jwks_uri": "http://idp.test/jwks"}]}, "must be an https:// URL")
        self.check({"providers": [{"issuer": ISS, "keys": [hs_jwk(HS_SECRET, "a")], "algorithms": ["none"]}]},
                   "'none' is not one of HS256, RS256, ES256")
        self.check({"providers": [{"issuer": ISS, "keys": [hs_jwk(HS_SECRET, "a")]}],
                    "rules": [{"roles": ["a"], "models": ["m"], "methods": ["predikt"]}]}, "'predikt' is not")


if __name__ == "__main__":
    unittest.main(verbosity=2)
