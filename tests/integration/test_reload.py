"""SIGHUP reloads the whole configuration (gateway.h): routes, pools, listeners, auth, limits and
TLS certificates change for new requests; requests in flight finish on the configuration they
started with; a configuration that does not load is rejected with its reason and the running
one keeps serving. The load test reloads over and over under h2load (h2c and HTTP/1.1) and
python3-grpcio and counts every answer: none may fail."""
import base64
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness  # noqa: E402

import grpc  # noqa: E402
import jwt  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from tensorflow_serving.apis import prediction_service_pb2_grpc  # noqa: E402

SECRET = b"reload-test-secret-0123456789abcdef"
ISS = "https://idp.example"


predict = harness.predict


def curl(url, *args):
    p = subprocess.run(["curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}"] + list(args) + [url],
                       capture_output=True, text=True, timeout=30)
    body, _, code = p.stdout.rpartition("\n")
    return int(code or 0), body


def client_ports(port, pid=None):
    """The local ports of established TCP connections to 127.0.0.1:|port|, from /proc/net/tcp
    and /proc/net/tcp6 (gRPC core connects IPv4 targets from dual-stack sockets); with |pid|,
    only that process's (its sockets' inodes), not the test's own connections to tfs-sim."""
    inodes = None
    if pid is not None:
        inodes = set()
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    out = set()
    for path, remote in (("/proc/net/tcp", "0100007F:%04X"),
                         ("/proc/net/tcp6", "0000000000000000FFFF00000100007F:%04X")):
        with open(path) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[2] == remote % port and fields[3] == "01" and \
                        (inodes is None or fields[9] in inodes):
                    out.add(int(fields[1].split(":")[1], 16))
    return out


def connections_to(port):
    """Established TCP connections to 127.0.0.1:|port|."""
    return len(client_ports(port))


class Base(unittest.TestCase):
    """Two single-replica pools, a and b, and a gateway configured by self.cfg()."""

    sim_args = {"a": [], "b": []}

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.sims = {name: harness.Sim(*args) for name, args in self.sim_args.items()}
        self.path = os.path.join(self.tmp.name, "gw.json")
        self.write(self.cfg())
        self.gw = harness.Gateway("--config", self.path)
        # the harness may have written a per-transport copy: reload that one
        self.path = self.gw.argv[self.gw.argv.index("--config") + 1]
        self.admin = int(re.search(r":(\d+) \(", self.gw.wait_line("admin listening on")).group(1))
        self.reloads = 0

    def tearDown(self):
        rc = self.gw.stop()
        for s in self.sims.values():
            s.stop()
        self.tmp.cleanup()
        self.assertEqual(rc, 0, self.gw.stderr())

    def cfg(self, route="a", **over):
        transport = os.environ.get("TG_TEST_TRANSPORT")
        pools = {n: {"targets": [s.addr]} for n, s in self.sims.items()}
        if transport:
            for p in pools.values():
                p["transport"] = transport
        c = {"listen": [{"address": "127.0.0.1:0"}], "admin": {"address": "127.0.0.1:0"},
             "workers": 2, "pools": pools,
             "routes": [{"model": "half_plus_two", "pool": route}, {"model": "*", "pool": "a"}]}
        c.update(over)
        return c

    def write(self, cfg):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(cfg, f)
        os.rename(tmp, self.path)  # as an operator's tooling would: never a half-written file

    def reload(self, cfg=None, expect="ok"):
        """Writes |cfg| (when given), sends SIGHUP and waits for the gateway's verdict."""
        if cfg is not None:
            self.write(cfg)
        want = self.counter("tfgate_config_reloads_total", result=expect) + 1
        self.gw.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while self.counter("tfgate_config_reloads_total", result=expect) < want:
            self.assertLess(time.monotonic(), deadline, "no reload verdict: " + self.gw.stderr())
            time.sleep(0.02)

    def metrics(self):
        code, body = curl("http://127.0.0.1:%d/metrics" % self.admin)
        self.assertEqual(code, 200)
        return list(text_string_to_metric_families(body))

    def counter(self, family, **labels):
        for fam in self.metrics():
            for s in fam.samples:
                if s.name in (family, family + "_total") and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
        return 0

    def rest(self, port=None, model="half_plus_two", headers=()):
        args = ["--http2-prior-knowledge", "-d", '{"instances": [1.0]}']
        for h in headers:
            args += ["-H", h]
        return curl("http://127.0.0.1:%d/v1/models/%s:predict" % (port or self.gw.port, model), *args)

    def calls(self, sim):
        return self.sims[sim].stats()["calls"].get("Predict", 0)


class TestReloadUnderLoad(Base):
    def test_reloads_under_h2load_lose_nothing(self):
        body = os.path.join(self.tmp.name, "body.json")
        with open(body, "w") as f:
            f.write('{"instances": [1.0, 2.0, 3.0, 4.0]}')
        url = "http://127.0.0.1:%d/v1/models/half_plus_two:predict" % self.gw.port
        loads = [subprocess.Popen(["h2load", "-n", str(n), "-c", "4", "-m", str(m), "-d", body] + extra + [url],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for n, m, extra in ((20000, 8, []), (4000, 1, ["--h1"]))]
        grpc_results = {"ok": 0, "failed": []}
        stop = threading.Event()

        def grpc_client():
            with self.gw.channel() as ch:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
                while not stop.is_set():
                    try:
                        r = stub.Predict(predict(), timeout=10)
                        assert list(r.outputs["y"].float_val) == [2.5]
                        grpc_results["ok"] += 1
                    except Exception as e:  # noqa: BLE001 - every failure is counted
                        grpc_results["failed"].append(repr(e))

        t = threading.Thread(target=grpc_client)
        t.start()
        reloads, route = 0, "a"
        try:
            deadline = time.monotonic() + 120
            while any(p.poll() is None for p in loads) and time.monotonic() < deadline:
                # every reload changes a limit; every other one also where the model goes, which
                # rebuilds the pools (the others keep them and their connections)
                if reloads % 2 == 0:
                    route = "b" if route == "a" else "a"
                self.reload(self.cfg(route, limits={"max_body_bytes": 1000000 + reloads}))
                reloads += 1
                time.sleep(0.05)
        finally:
            stop.set()
            t.join(timeout=30)
            outs = []
            for p in loads:
                try:
                    outs.append(p.communicate(timeout=60)[0])
                except subprocess.TimeoutExpired:
                    p.kill()
                    outs.append(p.communicate()[0])
        for out, n in zip(outs, (20000, 4000)):
            self.assertIn("%d succeeded, 0 failed, 0 errored, 0 timeout" % n, out, out)
            self.assertIn("status codes: %d 2xx, 0 3xx, 0 4xx, 0 5xx" % n, out, out)
        self.assertEqual(grpc_results["failed"], [])
        self.assertGreater(grpc_results["ok"], 0)
        self.assertGreaterEqual(reloads, 5, "the load ended before five reloads")
        # both pools served: the routes really changed under the load
        self.assertGreater(self.calls("a"), 0)
        self.assertGreater(self.calls("b"), 0)
        self.assertEqual(self.calls("a") + self.calls("b"), 24000 + grpc_results["ok"])
        self.assertEqual(self.counter("tfgate_config_reloads_total", result="failed"), 0)
        self.assertEqual(self.counter("tfgate_config_reloads_total", result="ok"), reloads)
        print("%d reloads under load; grpc calls %d" % (reloads, grpc_results["ok"]))


class TestReload(Base):
    sim_args = {"a": ["--compute-us", "0"], "b": []}

    def test_routes_and_pools_change_for_new_requests(self):
        self.assertEqual(self.rest()[0], 200)
        self.assertEqual((self.calls("a"), self.calls("b")), (1, 0))
        self.reload(self.cfg("b"))
        self.assertEqual(self.rest()[0], 200)
        self.assertEqual((self.calls("a"), self.calls("b")), (1, 1))
        # a pool removed, a route to a model that was not routed before
        cfg = self.cfg("b")
        del cfg["pools"]["a"]
        cfg["routes"] = [{"model": "half_plus_two", "pool": "b"}]
        self.reload(cfg)
        self.assertEqual(self.rest(model="half_plus_three")[0], 404)
        self.assertEqual(self.rest()[0], 200)
        self.assertEqual((self.calls("a"), self.calls("b")), (1, 2))

    def test_invalid_configurations_are_rejected_and_the_old_one_serves(self):
        cases = [
            ("{not json", r"reload rejected, still serving configuration 1: \S*gw\.json\S*:1:"),
            (json.dumps(self.cfg("nosuchpool")), r"reload rejected.*nosuchpool"),
            (json.dumps(self.cfg("a", auth={"providers": [{"issuer": ISS, "jwks_file": "/nonexistent"}]})),
             r"reload rejected.*cannot read /nonexistent"),
        ]
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        cfg = self.cfg("b")
        cfg["listen"].append({"address": "127.0.0.1:%d" % busy.getsockname()[1]})
        cases.append((json.dumps(cfg), r"reload rejected.*Address already in use"))
        cfg = self.cfg("b")
        cfg["listen"].append({"address": "127.0.0.1:0", "tls": {"cert": "/nonexistent.crt", "key": "/nonexistent.key"}})
        cases.append((json.dumps(cfg), r"reload rejected.*cannot load /nonexistent\.crt"))
        try:
            for i, (text, why) in enumerate(cases):
                with open(self.path, "w") as f:
                    f.write(text)
                self.reload(expect="failed")
                self.assertIsNotNone(self.gw.wait_stderr(why, timeout=5), self.gw.stderr())
                self.assertEqual(self.rest()[0], 200)
                self.assertEqual(self.calls("b"), 0, "the old routes serve")
                self.assertEqual(self.counter("tfgate_config_reloads_total", result="failed"), i + 1)
        finally:
            busy.close()
        self.assertEqual(self.counter("tfgate_config_last_reload_successful"), 0)
        self.assertEqual(self.counter("tfgate_config_generation"), 1)
        self.reload(self.cfg("b"))
        self.assertEqual(self.rest()[0], 200)
        self.assertEqual(self.calls("b"), 1)
        self.assertEqual(self.counter("tfgate_config_last_reload_successful"), 1)
        self.assertEqual(self.counter("tfgate_config_generation"), 2)
        self.assertIsNotNone(self.gw.wait_stderr(r"reload: configuration 2 from"))

    def test_listeners_come_and_go(self):
        port = harness.free_port()
        cfg = self.cfg()
        cfg["listen"].append({"address": "127.0.0.1:%d" % port})
        n = len(self.gw.lines)
        self.reload(cfg)
        self.gw.wait_line(r"tfgate listening on 127\.0\.0\.1:%d " % port, after=n)
        self.assertEqual(self.rest(port)[0], 200)
        self.assertEqual(self.rest()[0], 200)  # the first listener is the same socket
        self.reload(self.cfg())
        deadline = time.monotonic() + 5
        while not harness.port_is_free(port):  # closed once every worker let go of it
            self.assertLess(time.monotonic(), deadline, "the removed listener is still open")
            time.sleep(0.02)
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        self.assertEqual(self.rest()[0], 200)
        # and the port can be taken again by a later reload
        self.reload(cfg)
        self.assertEqual(self.rest(port)[0], 200)

    def test_auth_and_rbac_rules_apply_to_new_requests(self):
        k = base64.urlsafe_b64encode(SECRET).rstrip(b"=").decode()
        auth = {"providers": [{"issuer": ISS, "keys": [{"kty": "oct", "kid": "k1", "k": k}]}],
                "roles_claim": "roles",
                "rules": [{"roles": ["ml"], "models": ["half_plus_two"], "methods": ["predict"]}]}
        now = int(time.time())

        def token(roles):
            return jwt.encode({"iss": ISS, "sub": "u", "exp": now + 600, "roles": roles}, SECRET,
                              algorithm="HS256", headers={"kid": "k1"})
        self.assertEqual(self.rest()[0], 200)
        self.reload(self.cfg(auth=auth))
        self.assertEqual(self.rest()[0], 401)
        self.assertEqual(self.rest(headers=["Authorization: Bearer " + token(["ml"])])[0], 200)
        self.assertEqual(self.rest(headers=["Authorization: Bearer " + token(["other"])])[0], 403)
        with self.gw.channel() as ch:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
            with self.assertRaises(grpc.RpcError) as e:
                stub.Predict(predict(), timeout=5)
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
            r = stub.Predict(predict(), timeout=5, metadata=[("authorization", "Bearer " + token(["ml"]))])
            self.assertEqual(list(r.outputs["y"].float_val), [2.5])
        expired = jwt.encode({"iss": ISS, "sub": "u", "exp": now - 600, "roles": ["ml"]}, SECRET,
                             algorithm="HS256", headers={"kid": "k1"})
        self.assertEqual(self.rest(headers=["Authorization: Bearer " + expired])[0], 401)
        self.assertEqual(self.rest(headers=["Authorization: Basic dTpw"])[0], 401)
        # each refusal under its reason (REST and gRPC alike)
        reasons = {r: self.counter("tfgate_auth_refusals_total", reason=r)
                   for r in ("missing_token", "denied", "expired", "bad_authorization", "bad_signature")}
        self.assertEqual(reasons, {"missing_token": 2, "denied": 1, "expired": 1, "bad_authorization": 1,
                                   "bad_signature": 0})
        self.assertEqual(self.counter("tfgate_auth_total", result="invalid_token"), 2)
        self.reload(self.cfg())
        self.assertEqual(self.rest()[0], 200)

    def test_logs_rotate_on_sighup_even_when_the_reload_is_rejected(self):
        access, audit = (os.path.join(self.tmp.name, n) for n in ("access.jsonl", "audit.jsonl"))
        k = base64.urlsafe_b64encode(SECRET).rstrip(b"=").decode()
        auth = {"providers": [{"issuer": ISS, "keys": [{"kty": "oct", "kid": "k1", "k": k}]}],
                "anonymous_models": ["half_plus_two"], "audit_log": audit}
        self.reload(self.cfg(access_log=access, auth=auth))
        self.assertEqual(self.rest()[0], 200)
        for path in (access, audit):  # what logrotate does before it signals
            os.rename(path, path + ".1")
        with open(self.path, "w") as f:
            f.write("{broken")
        self.reload(expect="failed")
        self.assertEqual(self.rest()[0], 200)
        for path in (access, audit):
            deadline = time.monotonic() + 5
            while not (os.path.exists(path) and os.path.getsize(path) > 0):
                self.assertLess(time.monotonic(), deadline, path + " was not reopened")
                time.sleep(0.02)
            with open(path + ".1") as f:
                self.assertEqual(sum(1 for l in f if "half_plus_two" in l), 1)

    def test_access_log_moves_and_log_level_changes(self):
        logs = [os.path.join(self.tmp.name, n) for n in ("one.jsonl", "two.jsonl")]

        def lines(path):  # the data plane's (the admin port's scrapes are logged too)
            with open(path) as f:
                return [x for x in map(json.loads, f) if x.get("path", "").startswith("/v1/")]
        self.reload(self.cfg(access_log=logs[0]))
        self.assertEqual(self.rest()[0], 200)
        self.reload(self.cfg(access_log=logs[1], log_level="debug"))
        self.assertEqual(self.rest(model="nosuchmodel")[0], 404)
        self.assertEqual([l["status"] for l in lines(logs[0])], [200])
        self.assertEqual([(l["status"], l["model"]) for l in lines(logs[1])], [(404, "nosuchmodel")])
        # the reloaded level shows debug lines, among them the retired configuration being freed
        self.assertIsNotNone(self.gw.wait_stderr(r"lvl=debug .*configuration generation 2 freed", timeout=5),
                             self.gw.stderr())

    def test_rate_limits_move_to_another_redis(self):
        redis = [harness.Redis(), harness.Redis()]
        try:
            def limits(r):
                return {"models": {"half_plus_two": {"rate": 0.01, "burst": 2}},
                        "redis": {"address": r.addr, "timeout_ms": 500}}

            def dbsize(r):
                p = subprocess.run(["redis-cli", "-p", str(r.port), "DBSIZE"], capture_output=True,
                                   text=True, timeout=10)
                return int(p.stdout.strip())
            self.reload(self.cfg(rate_limits=limits(redis[0])))
            deadline = time.monotonic() + 10
            codes = []
            while 429 not in codes and time.monotonic() < deadline:
                codes.append(self.rest()[0])
            self.assertEqual(codes[-3:], [200, 200, 429])
            self.assertGreater(dbsize(redis[0]), 0)
            # the first server goes away; the reloaded configuration names the second
            redis[0].stop()
            fallbacks = self.counter("tfgate_ratelimit_redis_fallbacks_total")
            self.reload(self.cfg(rate_limits=limits(redis[1])))
            deadline = time.monotonic() + 10
            codes = []
            while 429 not in codes and time.monotonic() < deadline:
                codes.append(self.rest()[0])
                time.sleep(0.05)
            self.assertEqual(codes[-3:], [200, 200, 429])
            self.assertGreater(dbsize(redis[1]), 0)  # decided by the second server
            # once both workers are connected, no decision falls back any more
            before = self.counter("tfgate_ratelimit_redis_fallbacks_total")
            for _ in range(4):
                self.assertEqual(self.rest()[0], 429)
            self.assertEqual(self.counter("tfgate_ratelimit_redis_fallbacks_total"), before)
            self.assertLessEqual(before - fallbacks, 4)
        finally:
            for r in redis:
                r.stop()

    def test_a_health_watch_does_not_hold_its_configuration(self):
        self.reload(self.cfg(log_level="debug"))
        with self.gw.channel() as ch:
            updates = ch.unary_stream("/grpc.health.v1.Health/Watch")(b"", timeout=30)
            self.assertEqual(next(updates), b"\x08\x01")  # SERVING
            self.reload(self.cfg("b", log_level="debug"))
            self.reload(self.cfg("a", log_level="debug"))
            # the watch started on configuration 2; it moves on, and 2 and 3 are freed
            for g in (2, 3):
                self.assertIsNotNone(self.gw.wait_stderr(r"configuration generation %d freed" % g, timeout=5),
                                     self.gw.stderr())
            updates.cancel()

    def test_unchanged_pools_keep_their_connections(self):
        def settled(port):
            deadline = time.monotonic() + 5
            ports = client_ports(port, self.gw.pid)
            while len(ports) < 2 and time.monotonic() < deadline:  # 2 connections per replica
                time.sleep(0.05)
                ports = client_ports(port, self.gw.pid)
            return ports
        a, b = (settled(self.sims[n].port) for n in ("a", "b"))
        # limits, auth and a route for another model change; the pools do not (a route change
        # that moves a pool's probed models does change them): the same connections carry on
        k = base64.urlsafe_b64encode(SECRET).rstrip(b"=").decode()
        cfg = self.cfg("a", limits={"max_body_bytes": 123456}, auth={
            "providers": [{"issuer": ISS, "keys": [{"kty": "oct", "kid": "k1", "k": k}]}],
            "anonymous_models": ["half_plus_two", "half_plus_three"]})
        cfg["routes"].insert(1, {"model": "half_plus_t*", "pool": "b"})
        self.reload(cfg)
        self.assertIsNotNone(self.gw.wait_stderr(r"pools unchanged: their connections are kept"))
        self.assertEqual(self.rest()[0], 200)
        self.assertEqual(self.rest(model="half_plus_three")[0], 200)
        self.assertEqual((self.calls("a"), self.calls("b")), (1, 1))
        self.assertEqual((client_ports(self.sims["a"].port, self.gw.pid),
                          client_ports(self.sims["b"].port, self.gw.pid)), (a, b))
        # a pool's settings change: new connections (and the old ones close)
        cfg = self.cfg("b")
        cfg["pools"]["b"]["channels"] = 4
        self.reload(cfg)
        self.assertEqual(self.rest()[0], 200)
        deadline = time.monotonic() + 5
        while client_ports(self.sims["b"].port, self.gw.pid) & b and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(client_ports(self.sims["b"].port, self.gw.pid) & b, "the old connections stayed")
        self.assertGreaterEqual(len(settled(self.sims["b"].port)), 2)

    def test_tls_certificate_is_replaced(self):
        certs = [harness.make_cert(self.tmp.name, n) for n in ("one", "two")]

        def with_cert(i):
            cfg = self.cfg()
            cfg["listen"].append({"address": "127.0.0.1:%d" % tls_port,
                                  "tls": {"cert": certs[i][0], "key": certs[i][1]}})
            return cfg

        def served_cert():
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as s:
                with ctx.wrap_socket(s) as t:
                    return ssl.DER_cert_to_PEM_cert(t.getpeercert(binary_form=True))

        def pem(path):
            with open(path) as f:
                return ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(f.read()))
        tls_port = harness.free_port()
        self.reload(with_cert(0))
        self.assertEqual(served_cert(), pem(certs[0][0]))
        # a connection made before the reload keeps working on its certificate
        code, _ = curl("https://127.0.0.1:%d/v1/models/half_plus_two" % tls_port, "-k")
        self.assertEqual(code, 200)
        self.reload(with_cert(1))
        self.assertEqual(served_cert(), pem(certs[1][0]))
        code, _ = curl("https://127.0.0.1:%d/v1/models/half_plus_two" % tls_port, "-k")
        self.assertEqual(code, 200)


class TestInFlight(Base):
    sim_args = {"a": ["--compute-us", "1500000"], "b": []}

    def test_calls_in_flight_finish_on_their_configuration(self):
        with self.gw.channel() as ch:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
            slow = [stub.Predict.future(predict(), timeout=20) for _ in range(4)]
            time.sleep(0.4)  # at the slow pool a
            cfg = self.cfg("b")
            del cfg["pools"]["a"]
            cfg["routes"] = [{"model": "*", "pool": "b"}]
            t0 = time.monotonic()
            self.reload(cfg)
            r = stub.Predict(predict(), timeout=5)  # new: pool b, at once
            self.assertLess(time.monotonic() - t0, 1.2)
            self.assertEqual(list(r.outputs["y"].float_val), [2.5])
            for f in slow:  # old: finished by pool a, which the new configuration has not
                self.assertEqual(list(f.result().outputs["y"].float_val), [2.5])
        self.assertEqual((self.calls("a"), self.calls("b")), (4, 1))
        # the old configuration's connections to pool a close once its last call is done
        deadline = time.monotonic() + 10
        while connections_to(self.sims["a"].port) > 0:
            self.assertLess(time.monotonic(), deadline, "pool a's connections stayed open")
            time.sleep(0.05)

    def test_cancelled_calls_are_the_last_users_of_their_configuration(self):
        # the retired configuration's last calls end inside the transport's own callbacks (the
        # client resets, the gateway cancels upstream): its connections must close afterwards,
        # not under those callbacks
        with self.gw.channel() as ch:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
            slow = [stub.Predict.future(predict(), timeout=20) for _ in range(3)]
            time.sleep(0.4)
            cfg = self.cfg("b")
            del cfg["pools"]["a"]
            cfg["routes"] = [{"model": "*", "pool": "b"}]
            self.reload(cfg)
            for f in slow:
                f.cancel()
            time.sleep(0.3)
            for _ in range(5):
                self.assertEqual(list(stub.Predict(predict(), timeout=5).outputs["y"].float_val), [2.5])
        deadline = time.monotonic() + 10
        while connections_to(self.sims["a"].port) > 0:
            self.assertLess(time.monotonic(), deadline, "pool a's connections stayed open")
            time.sleep(0.05)
        self.assertTrue(self.gw.alive())


if __name__ == "__main__":
    unittest.main(verbosity=2)
