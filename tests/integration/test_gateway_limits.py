"""Limits, timeouts, cancels, deadlines and drain. Every limit answers in the protocol's own
terms (431/413/408 with a reason phrase, RST_STREAM, GOAWAY, RESOURCE_EXHAUSTED), and nothing
hangs or crashes. Timing checks are generous bounds against hangs, not benchmarks.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness  # noqa: E402

import grpc  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

PREDICT = "/tensorflow.serving.PredictionService/Predict"


def predict(n=1):
    r = predict_pb2.PredictRequest()
    r.model_spec.name = "half_plus_two"
    t = r.inputs["x"]
    t.dtype = 1
    t.tensor_shape.dim.add().size = n
    t.float_val.extend([1.0] * n)
    return r


def http(port, data, timeout=5.0, read_until_close=False):
    """Sends raw bytes, returns what the server sent back (until close or a quiet gap)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        if data:
            s.sendall(data)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()) if read_until_close else 0.5)
            try:
                chunk = s.recv(65536)
            except (socket.timeout, TimeoutError):
                if read_until_close:
                    continue
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


class GatewayCase(unittest.TestCase):
    limits = {}
    routes = None
    sim_args = ()

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.sim = harness.Sim(*cls.sim_args)
        cfg = {"workers": 2, "listen": [{"address": "127.0.0.1:0"}],
               "pools": {"cpu": {"targets": [cls.sim.addr]}}, "limits": cls.limits}
        if cls.routes:
            cfg["routes"] = cls.routes
        cls.gw = harness.Gateway("--config", harness.write_json(cls.tmp.name, "gw.json", cfg))

    @classmethod
    def tearDownClass(cls):
        code = cls.gw.stop()
        cls.sim.stop()
        cls.tmp.cleanup()
        assert code == 0, "tfgate exited with %s: %s" % (code, cls.gw.stderr())


class TestHttp1Limits(GatewayCase):
    limits = {"max_header_bytes": 4096, "max_headers": 20, "max_body_bytes": 100000,
              "header_timeout_ms": 500, "request_timeout_ms": 1500, "idle_timeout_ms": 1000}

    def test_header_list_too_large(self):
        out = http(self.gw.port, b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), out[:100])

    def test_too_many_headers(self):
        hdrs = b"".join(b"X-H%d: v\r\n" % i for i in range(30))
        out = http(self.gw.port, b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\n" + hdrs + b"\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 431 "), out[:100])

    def test_body_too_large_is_refused_before_it_is_sent(self):
        # only the headers are sent: the answer must come without the body
        out = http(self.gw.port, b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 413 Payload Too Large\r\n"), out[:100])
        self.assertIn(b"Connection: close", out)

    def test_chunked_body_too_large(self):
        chunk = b"%x\r\n" % 60000 + b"x" * 60000 + b"\r\n"
        out = http(self.gw.port, b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + chunk * 3 + b"0\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 413 "), out[:100])

    def test_header_timeout(self):
        t0 = time.monotonic()
        out = http(self.gw.port, b"GET /v1/models/m HTTP/1.1\r\nHost:", timeout=6, read_until_close=True)
        self.assertTrue(out.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), out[:100])
        self.assertLess(time.monotonic() - t0, 4.0)

    def test_silent_connection_is_closed(self):
        t0 = time.monotonic()
        out = http(self.gw.port, b"", timeout=6, read_until_close=True)
        self.assertEqual(out, b"")
        self.assertLess(time.monotonic() - t0, 4.0)

    def test_request_timeout(self):
        out = http(self.gw.port, b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
                   timeout=6, read_until_close=True)
        self.assertTrue(out.startswith(b"HTTP/1.1 408 "), out[:100])

    def test_idle_keepalive_connection_is_closed(self):
        s = socket.create_connection(("127.0.0.1", self.gw.port), timeout=6)
        s.sendall(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        first = s.recv(65536)
        self.assertTrue(first.startswith(b"HTTP/1.1 404 Not Found\r\n"))
        t0 = time.monotonic()
        rest = s.recv(65536)  # blocks until the idle timeout closes it
        self.assertEqual(rest, b"")
        self.assertLess(time.monotonic() - t0, 4.0)
        s.close()

    def test_pipelining_and_keepalive(self):
        reqs = (b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/models/half_plus_two HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = http(self.gw.port, reqs, read_until_close=True)
        statuses = re.findall(rb"HTTP/1\.1 \d{3} [A-Za-z ]+(?=\r\n)", out)
        self.assertEqual(statuses, [b"HTTP/1.1 404 Not Found", b"HTTP/1.1 200 OK",
                                    b"HTTP/1.1 404 Not Found"])

    def test_malformed_request(self):
        out = http(self.gw.port, b"GARBAGE\x00\x01 nonsense\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 400 Bad Request\r\n"), out[:100])

    def test_expect_continue(self):
        s = socket.create_connection(("127.0.0.1", self.gw.port), timeout=5)
        body = b'{"instances": [1.0]}'
        s.sendall(b"POST /v1/models/half_plus_two:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                  b"Expect: 100-continue\r\n\r\n" % len(body))
        self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n"))
        s.sendall(body)
        reply = s.recv(1000)
        self.assertTrue(reply.startswith(b"HTTP/1.1 200 OK"), reply)
        self.assertIn(b'"predictions": [2.5', reply)
        s.close()


class TestHttp2Limits(GatewayCase):
    limits = {"max_header_bytes": 4096, "max_concurrent_streams": 8, "max_message_bytes": 100000,
              "reset_burst": 20, "reset_rate": 5}

    def test_settings_advertised(self):
        c = harness.RawH2(self.gw.port)
        c.pump(lambda evs: any(type(e).__name__ == "RemoteSettingsChanged" for e in evs))
        self.assertEqual(c.conn.remote_settings.max_concurrent_streams, 8)
        self.assertEqual(c.conn.remote_settings.max_header_list_size, 4096)
        c.close()

    def test_header_list_too_large(self):
        c = harness.RawH2(self.gw.port)
        sid = c.request(PREDICT, headers=[("x-big", "a" * 5000)],
                        body=harness.grpc_frame(predict().SerializeToString()))
        c.pump(c.stream_done(sid))
        h = c.headers_of(sid)
        self.assertEqual(h.get("grpc-status"), "8")  # RESOURCE_EXHAUSTED
        c.close()

    def test_message_over_the_limit(self):
        with self.gw.channel() as ch:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
            with self.assertRaises(grpc.RpcError) as cm:
                stub.Predict(predict(40000), timeout=10)  # 160 KB > 100 KB
            self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertEqual(list(stub.Predict(predict(1000), timeout=10).outputs["y"].float_val)[:1], [2.5])

    def test_more_streams_than_allowed_are_refused(self):
        # open 12 streams before reading the server's SETTINGS (limit 8), as a racing or
        # hostile client would: the ones over the limit are refused, the rest still work
        c = harness.RawH2(self.gw.port)
        try:
            sids = [c.request(PREDICT, end=False) for _ in range(12)]
            c.pump(lambda evs: sum(1 for e in evs if type(e).__name__ == "StreamReset") >= 4)
            refused = [sid for sid in sids if c.reset_of(sid) is not None]
            self.assertEqual(len(refused), 4, c.events)
            body = harness.grpc_frame(predict().SerializeToString())
            sid = sids[0]
            c.conn.send_data(sid, body, end_stream=True)
            c.flush()
            c.pump(c.stream_done(sid))
            self.assertEqual(c.headers_of(sid).get("grpc-status"), "0")
        finally:
            c.close()

    def test_rapid_reset_flood_gets_goaway(self):
        c = harness.RawH2(self.gw.port)
        c.pump(lambda evs: any(type(e).__name__ == "RemoteSettingsChanged" for e in evs))
        for _ in range(300):
            try:  # the gateway may close the connection under either send
                sid = c.request(PREDICT, end=False)
                c.conn.reset_stream(sid)
                c.flush()
            except OSError:
                break
        c.pump(lambda evs: c.closed, timeout=5)
        kinds = [type(e).__name__ for e in c.events]
        self.assertIn("ConnectionTerminated", kinds)
        c.close()
        self.assertTrue(self.gw.alive())

    def test_garbage_preface_closes_the_connection(self):
        out = http(self.gw.port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(200), read_until_close=True)
        self.assertLess(len(out), 500)  # SETTINGS then GOAWAY, then close
        self.assertTrue(self.gw.alive())


def wait_idle(sim, timeout=5.0):
    """Waits until tfs-sim has nothing in flight (calls of earlier tests finishing)."""
    deadline = time.monotonic() + timeout
    while sim.stats()["inflight"] > 0 and time.monotonic() < deadline:
        time.sleep(0.05)


class TestResponseLimit(unittest.TestCase):
    def test_response_over_the_message_limit(self):
        with tempfile.TemporaryDirectory() as tmp:
            big = {"dtype": "DT_FLOAT", "shape": [50000], "tensor_content_hex": "0000803f" * 50000}
            models = harness.write_json(tmp, "m.json", {"models": [{
                "name": "big", "signatures": {"serving_default": {
                    "inputs": {"x": {"dtype": "DT_FLOAT"}}, "outputs": {"y": {"dtype": "DT_FLOAT"}}}},
                "responses": {"predict": {"outputs": {"y": big}}}}]})
            sim = harness.Sim("--models", models)
            gw = harness.Gateway("--backend", sim.addr, "--max-message-bytes", "100000")
            try:
                req = predict()
                req.model_spec.name = "big"
                with gw.channel() as ch:
                    stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
                    with self.assertRaises(grpc.RpcError) as cm:
                        stub.Predict(req, timeout=10)  # 200 KB answer > 100 KB limit
                    self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
                    self.assertIn("larger than max", cm.exception.details())
                    # the connection to the backend survives
                    req.model_spec.name = "half_plus_two"
                    self.assertEqual(list(stub.Predict(req, timeout=10).outputs["y"].float_val), [2.5])
            finally:
                self.assertEqual(gw.stop(), 0, gw.stderr())
                sim.stop()


class TestDeadlinesAndCancels(GatewayCase):
    sim_args = ("--compute-us", "1000000")  # every Predict takes 1 s
    limits = {"default_deadline_ms": 400}
    routes = [{"model": "half_plus_two", "pool": "cpu", "max_timeout_ms": 300},
              {"model": "*", "pool": "cpu"}]

    def test_client_deadline_is_honoured(self):
        req = predict()
        req.model_spec.name = "half_plus_three"  # route "*": no clamp
        with self.gw.channel() as ch:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
            t0 = time.monotonic()
            with self.assertRaises(grpc.RpcError) as cm:
                stub.Predict(req, timeout=0.2)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
            self.assertLess(time.monotonic() - t0, 0.9)
            self.assertEqual(list(stub.Predict(req, timeout=5).outputs["y"].float_val), [3.5])

    def test_route_clamps_the_client_deadline(self):
        with self.gw.channel() as ch:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
            t0 = time.monotonic()
            with self.assertRaises(grpc.RpcError) as cm:
                stub.Predict(predict(), timeout=10)  # clamped to the route's 300 ms
            self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
            self.assertLess(time.monotonic() - t0, 0.9)

    def test_default_deadline_without_grpc_timeout(self):
        req = predict()
        req.model_spec.name = "half_plus_three"
        c = harness.RawH2(self.gw.port)
        t0 = time.monotonic()
        sid = c.request(PREDICT, body=harness.grpc_frame(req.SerializeToString()))
        c.pump(c.stream_done(sid), timeout=5)
        self.assertEqual(c.headers_of(sid).get("grpc-status"), "4")  # DEADLINE_EXCEEDED at 400 ms
        self.assertLess(time.monotonic() - t0, 0.9)
        c.close()

    def test_malformed_grpc_timeout(self):
        c = harness.RawH2(self.gw.port)
        sid = c.request(PREDICT, headers=[("grpc-timeout", "soon")],
                        body=harness.grpc_frame(predict().SerializeToString()))
        c.pump(c.stream_done(sid))
        self.assertEqual(c.headers_of(sid).get("grpc-status"), "13")
        c.close()

    def test_cancel_reaches_the_backend(self):
        req = predict()
        req.model_spec.name = "half_plus_three"
        wait_idle(self.sim)
        self.sim.control(op="reset_stats")
        with self.gw.channel() as ch:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
            f = stub.Predict.future(req, timeout=10)
            time.sleep(0.2)
            f.cancel()
            time.sleep(1.3)  # the sim notices when its compute ends
        self.assertEqual(self.sim.stats()["cancelled"], 1)

    def test_disconnect_cancels_upstream(self):
        req = predict()
        req.model_spec.name = "half_plus_three"
        wait_idle(self.sim)
        self.sim.control(op="reset_stats")
        c = harness.RawH2(self.gw.port)
        c.request(PREDICT, headers=[("grpc-timeout", "10S")], body=harness.grpc_frame(req.SerializeToString()))
        time.sleep(0.2)
        c.close()
        time.sleep(1.3)
        self.assertEqual(self.sim.stats()["cancelled"], 1)


class TestDrain(unittest.TestCase):
    def test_sigterm_finishes_calls_in_flight(self):
        sim = harness.Sim("--compute-us", "800000")
        gw = harness.Gateway("--backend", sim.addr, "--drain-timeout-ms", "5000")
        try:
            with gw.channel() as ch:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
                futures = [stub.Predict.future(predict(), timeout=10) for _ in range(4)]
                time.sleep(0.2)
                gw.signal(signal.SIGTERM)
                time.sleep(0.2)
                with self.assertRaises(OSError):  # no longer accepting
                    socket.create_connection(("127.0.0.1", gw.port), timeout=1).close()
                for f in futures:
                    self.assertEqual(list(f.result().outputs["y"].float_val), [2.5])
            gw.p.wait(timeout=10)
            self.assertEqual(gw.p.returncode, 0, gw.stderr())
        finally:
            gw.stop()
            sim.stop()

    def test_drain_tells_clients_to_go_away(self):
        """HTTP/2 clients get GOAWAY (nghttp's own frame log) and HTTP/1.1 clients
        Connection: close, while the requests they have in flight are answered."""
        tmp = tempfile.TemporaryDirectory()
        sim = harness.Sim("--compute-us", "800000")
        gw = harness.Gateway("--backend", sim.addr, "--drain-timeout-ms", "5000")
        try:
            body = os.path.join(tmp.name, "predict.grpc")
            with open(body, "wb") as f:
                f.write(harness.grpc_frame(predict().SerializeToString()))
            h2 = subprocess.Popen(["nghttp", "-v", "-n", "-d", body, "-H", "content-type: application/grpc",
                                   "-H", "te: trailers", "http://127.0.0.1:%d%s" % (gw.port, PREDICT)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            rest = b'{"instances": [1.0]}'
            h1 = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            self.addCleanup(h1.close)
            h1.sendall(b"POST /v1/models/half_plus_two:predict HTTP/1.1\r\nHost: x\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (len(rest), rest))
            time.sleep(0.3)  # both requests are at the slow backend
            gw.signal(signal.SIGTERM)
            out, _ = h2.communicate(timeout=15)
            sid = re.search(r"send HEADERS frame <[^>]*stream_id=(\d+)>", out).group(1)
            # GOAWAY first, naming the request's stream as still processed; then its answer
            goaway = re.search(r"recv GOAWAY frame [^\n]*\n\s*\(last_stream_id=(\d+), error_code=NO_ERROR", out)
            self.assertIsNotNone(goaway, out)
            self.assertEqual(goaway.group(1), sid)
            answer = out.find("recv (stream_id=%s) grpc-status: 0" % sid)
            self.assertGreater(answer, goaway.start(), out)
            self.assertEqual(h2.returncode, 0, out)
            got = b""
            while True:  # until the gateway closes the connection
                chunk = h1.recv(65536)
                if not chunk:
                    break
                got += chunk
            head, _, payload = got.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 200"), got)
            self.assertIn(b"connection: close", head.lower())
            self.assertEqual(json.loads(payload), {"predictions": [2.5]})
            gw.p.wait(timeout=10)
            self.assertEqual(gw.p.returncode, 0, gw.stderr())
        finally:
            gw.stop()
            sim.stop()
            tmp.cleanup()

    def test_drain_timeout_cancels_what_is_left(self):
        sim = harness.Sim("--compute-us", "5000000")
        gw = harness.Gateway("--backend", sim.addr, "--drain-timeout-ms", "300")
        try:
            with gw.channel() as ch:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
                f = stub.Predict.future(predict(), timeout=20)
                time.sleep(0.2)
                t0 = time.monotonic()
                gw.signal(signal.SIGTERM)
                gw.p.wait(timeout=10)
                self.assertLess(time.monotonic() - t0, 3.0)
                self.assertEqual(gw.p.returncode, 0, gw.stderr())
                with self.assertRaises(grpc.RpcError):
                    f.result(timeout=5)
        finally:
            gw.stop()
            sim.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
