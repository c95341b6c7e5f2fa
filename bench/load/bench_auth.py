#!/usr/bin/python3
"""What authentication costs per request (issue: identity and access).

  bench/load/bench_auth.py [--build DIR] [--n N] [--reps R]

Three tfgate processes (native upstream, one worker each) in front of one tfs-sim, measured in
turn with the same h2load load, small Predict over gRPC and over REST:
  - no auth;
  - RS256 bearer token (PyJWT, RSA-2048), verified once and then served from the worker's
    token cache (the normal case: a client reuses its token), with RBAC rules;
  - the same token with the cache off (token_cache_entries 0): every request pays the RS256
    verification (OpenSSL, EVP_PKEY parsed once per key set).
Reported: requests/s, p50/p99, tfgate CPU µs per request from /proc, medians of --reps runs,
and each auth row's CPU beside the no-auth row of its protocol.
"""
import base64
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from benchlib import GRPC_HEADERS, PREDICT, harness  # noqa: E402

REST = "/v1/models/half_plus_two:predict"
ISS = "https://idp.bench"


def main():
    a = benchlib.parse_args(__doc__)
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    n = key.public_key().public_numbers()
    b64u = lambda i: base64.urlsafe_b64encode(i.to_bytes((i.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()
    jwk = {"kty": "RSA", "kid": "bench", "alg": "RS256", "n": b64u(n.n), "e": b64u(n.e)}
    token = jwt.encode({"iss": ISS, "aud": "tfgate", "sub": "bench", "exp": int(time.time()) + 7200,
                        "roles": ["predictor"]}, key, algorithm="RS256", headers={"kid": "bench"})
    auth_hdr = "authorization: Bearer " + token

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        small_g, small_j = os.path.join(tmp, "small.grpc"), os.path.join(tmp, "small.json")
        benchlib.write_predict_body(small_g, [1.0, 2.0, 3.0, 4.0], False)
        with open(small_j, "w") as f:
            f.write('{"instances": [1.0, 2.0, 3.0, 4.0]}')
        sim = harness.Sim("--threads", "1")

        def gateway(name, auth):
            cfg = {"workers": 1, "listen": [{"address": "127.0.0.1:0"}],
                   "pools": {"cpu": {"targets": [sim.addr], "channels": 2}}}
            if auth is not None:
                cfg["auth"] = auth
            return harness.Gateway("--config", harness.write_json(tmp, name + ".json", cfg))

        provider = {"issuer": ISS, "audiences": ["tfgate"], "keys": [jwk]}
        rules = [{"roles": ["predictor"], "models": ["half_plus_two"], "methods": ["predict"]}]
        gws = [
            ("no auth", gateway("none", None), ()),
            ("RS256, cached", gateway("cached", {"providers": [provider], "rules": rules}), (auth_hdr,)),
            ("RS256, uncached", gateway("uncached", {"providers": [provider], "rules": rules,
                                                     "token_cache_entries": 0}), (auth_hdr,)),
        ]
        try:
            for proto, path, body, c, m, base_headers in (
                    ("gRPC (h2c)", PREDICT, small_g, 4, 32, GRPC_HEADERS),
                    ("REST HTTP/2 (h2c)", REST, small_j, 4, 32, ())):
                for label, gw, headers in gws:
                    url = "http://127.0.0.1:%d%s" % (gw.port, path)
                    hs = tuple(base_headers) + tuple(headers)
                    pids = [sim.pid, gw.pid]
                    warm = benchlib.measure(pids, url, body, 2000, c, m, hs)
                    if warm["succeeded"] != 2000:
                        raise SystemExit("%s %s: requests failed: %s" % (proto, label, warm["raw"][-400:]))
                    runs = [benchlib.measure(pids, url, body, a.n, c, m, hs) for _ in range(a.reps)]
                    results.append((proto, label, c, m, benchlib.median_run(runs), gw.pid))
        finally:
            for _, gw, _ in gws:
                gw.stop()
            sim.stop()

    print("Authentication cost through tfgate, medians of %d runs; %s" % (a.reps, benchlib.header()))
    print()
    print("| protocol | auth | h2load -c/-m | requests done | failed | req/s | p50 ms | p99 ms | tfgate CPU µs/req |")
    print("|---|---|---|---|---|---|---|---|---|")
    base = {}
    for proto, label, c, m, med, gpid in results:
        cpu = med["cpu_us_per_req"][gpid]
        if label == "no auth":
            base[proto] = cpu
        print("| %s | %s | %d/%d | %d | %d | %.0f | %.2f | %.2f | %.1f |" % (
            proto, label, c, m, med["succeeded"], med["failed"], med["rps"], med["p50"], med["p99"], cpu))
    print()
    for proto, label, c, m, med, gpid in results:
        if label != "no auth":
            print("- %s, %s: +%.1f µs of tfgate CPU per request over no auth" % (
                proto, label, med["cpu_us_per_req"][gpid] - base[proto]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
