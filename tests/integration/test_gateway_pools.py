"""Upstream pools through tfgate: round-robin over replicas, a killed replica fails only the
calls in flight on it and comes back after a restart, an all-down pool answers UNAVAILABLE fast
and names the pool, and routes send each model to its cpu or gpu pool (checked with each
tfs-sim's own counters).
"""
import os
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness  # noqa: E402

import grpc  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402


def predict(model="half_plus_two"):
    r = predict_pb2.PredictRequest()
    r.model_spec.name = model
    t = r.inputs["x"]
    t.dtype = 1
    t.tensor_shape.dim.add().size = 1
    t.float_val.append(1.0)
    return r


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class TestReplicas(unittest.TestCase):
    def test_spread_kill_restart(self):
        a = harness.Sim()
        b_port = free_port()
        b = harness.Sim(port=b_port)
        gw = harness.Gateway("--backend", "%s,127.0.0.1:%d" % (a.addr, b_port), "--channels", "2")
        try:
            with gw.channel() as ch:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
                for _ in range(200):
                    stub.Predict(predict(), timeout=5)
                sa, sb = a.stats()["calls"]["Predict"], b.stats()["calls"]["Predict"]
                self.assertEqual(sa + sb, 200)
                self.assertGreaterEqual(min(sa, sb), 80, (sa, sb))  # round-robin, both used

                # load from 4 threads while b is killed: only calls in flight on b may fail
                failures, oks, stop = [], [0], threading.Event()
                lock = threading.Lock()

                def load():
                    while not stop.is_set():
                        try:
                            stub.Predict(predict(), timeout=5)
                            with lock:
                                oks[0] += 1
                        except grpc.RpcError as e:
                            with lock:
                                failures.append((e.code(), e.details()))

                threads = [threading.Thread(target=load) for _ in range(4)]
                for t in threads:
                    t.start()
                self.addCleanup(lambda: [stop.set()] + [t.join(10) for t in threads])
                time.sleep(0.5)
                b.kill()
                time.sleep(1.0)
                after_kill = len(failures)
                time.sleep(1.0)
                self.assertEqual(len(failures), after_kill, "failures continued after the kill")
                self.assertLessEqual(after_kill, 8, failures)  # at most the calls in flight on b
                for code, details in failures:
                    self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
                    self.assertIn("pool 'default'", details)

                # restart b on the same port: it is back in rotation within seconds
                b = harness.Sim(port=b_port)
                deadline = time.monotonic() + 10
                while b.stats()["calls"]["Predict"] == 0 and time.monotonic() < deadline:
                    time.sleep(0.1)
                back = time.monotonic() - (deadline - 10)
                stop.set()
                for t in threads:
                    t.join(10)
                self.assertGreater(b.stats()["calls"]["Predict"], 0, "restarted replica got no traffic")
                self.assertLess(back, 6.0)
                self.assertEqual(len(failures), after_kill)
                self.assertGreater(oks[0], 100)
        finally:
            self.assertEqual(gw.stop(), 0, gw.stderr())
            a.stop()
            b.stop()

    def test_all_down_fails_fast_and_names_the_pool(self):
        dead = [free_port(), free_port()]
        gw = harness.Gateway("--backend", "gpu=127.0.0.1:%d,127.0.0.1:%d" % tuple(dead))
        try:
            with gw.channel() as ch:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
                time.sleep(0.5)  # let the channels fail their first connection
                for _ in range(5):
                    t0 = time.monotonic()
                    with self.assertRaises(grpc.RpcError) as cm:
                        stub.Predict(predict(), timeout=10)
                    self.assertLess(time.monotonic() - t0, 1.0)  # fast, not a hang to the deadline
                    self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
                    self.assertIn("pool 'gpu' (gpu)", cm.exception.details())
        finally:
            self.assertEqual(gw.stop(), 0, gw.stderr())


class TestBackendTls(unittest.TestCase):
    def test_tls_to_the_backend(self):
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = harness.make_cert(tmp, "backend")
            other, _ = harness.make_cert(tmp, "other")
            sim = harness.Sim("--tls-cert", cert, "--tls-key", key)
            pools = {"tls": {"targets": [sim.addr], "tls": {"ca": cert}},
                     "wrong": {"targets": [sim.addr], "tls": {"ca": other}},
                     "plain": {"targets": [sim.addr]}}
            cfg = harness.write_json(tmp, "gw.json", {
                "listen": [{"address": "127.0.0.1:0"}], "pools": pools,
                "routes": [{"model": "half_plus_two", "pool": "tls"},
                           {"model": "half_plus_three", "pool": "wrong"},
                           {"model": "*", "pool": "plain"}]})
            gw = harness.Gateway("--config", cfg)
            try:
                with gw.channel() as ch:
                    stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
                    self.assertEqual(list(stub.Predict(predict(), timeout=10).outputs["y"].float_val), [2.5])
                    for model in ("half_plus_three", "other"):  # untrusted CA; cleartext to TLS
                        with self.assertRaises(grpc.RpcError) as cm:
                            stub.Predict(predict(model), timeout=10)
                        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
                        self.assertIn("upstream pool", cm.exception.details())
                self.assertIn("grpc-core", gw.stderr())  # TLS pools use the grpc-core transport
            finally:
                self.assertEqual(gw.stop(), 0, gw.stderr())
                sim.stop()


class TestBackendUnavailable(unittest.TestCase):
    def test_batcher_queue_full_passes_through_unchanged(self):
        gpu = harness.Sim("--device", "gpu", "--compute-us", "200000", "--max-batch", "1",
                          "--concurrency", "1", "--queue-limit", "1", "--batch-window-us", "0")
        gw = harness.Gateway("--backend", "gpu=" + gpu.addr)
        try:
            with gw.channel() as ch:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
                futures = [stub.Predict.future(predict(), timeout=10) for _ in range(8)]
                errors = []
                for f in futures:
                    try:
                        f.result()
                    except grpc.RpcError as e:
                        errors.append((e.code(), e.details()))
            self.assertGreater(len(errors), 0)
            for e in errors:  # TF Serving's own status: not rewritten as a transport failure
                self.assertEqual(e, (grpc.StatusCode.UNAVAILABLE,
                                     "The batch scheduling queue to which this task was submitted is full"))
        finally:
            self.assertEqual(gw.stop(), 0, gw.stderr())
            gpu.stop()


class TestRoutes(unittest.TestCase):
    def test_cpu_and_gpu_pools(self):
        with tempfile.TemporaryDirectory() as tmp:
            cpu = harness.Sim()
            gpu = harness.Sim("--device", "gpu", "--compute-us", "0", "--batch-window-us", "0")
            cfg = harness.write_json(tmp, "tfgate.json", {
                "workers": 2,
                "listen": [{"address": "127.0.0.1:0"}],
                "pools": {"cpu": {"device": "cpu", "targets": [cpu.addr]},
                          "gpu": {"device": "gpu", "targets": [gpu.addr], "channels": 1}},
                "routes": [{"model": "half_plus_three", "pool": "gpu"}, {"model": "*", "pool": "cpu"}],
            })
            gw = harness.Gateway("--config", cfg)
            try:
                with gw.channel() as ch:
                    stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
                    for _ in range(30):
                        stub.Predict(predict("half_plus_two"), timeout=5)
                    for _ in range(20):
                        stub.Predict(predict("half_plus_three"), timeout=5)
                    with self.assertRaises(grpc.RpcError) as cm:  # routed by "*" to cpu
                        stub.Predict(predict("other"), timeout=5)
                    self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
                c, g = cpu.stats(), gpu.stats()
                self.assertEqual(c["models"]["half_plus_two"], 30)
                self.assertEqual(c["models"]["half_plus_three"], 0)
                self.assertEqual(c["calls"]["Predict"], 31)
                self.assertEqual(g["models"]["half_plus_three"], 20)
                self.assertEqual(g["calls"]["Predict"], 20)
                self.assertEqual(g["device"], "gpu")
            finally:
                self.assertEqual(gw.stop(), 0, gw.stderr())
                cpu.stop()
                gpu.stop()

    def test_no_route(self):
        with tempfile.TemporaryDirectory() as tmp:
            sim = harness.Sim()
            cfg = harness.write_json(tmp, "tfgate.json", {
                "listen": [{"address": "127.0.0.1:0"}],
                "pools": {"cpu": {"targets": [sim.addr]}},
                "routes": [{"model": "half_plus_two", "pool": "cpu"}],
            })
            gw = harness.Gateway("--config", cfg)
            try:
                with gw.channel() as ch:
                    stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
                    with self.assertRaises(grpc.RpcError) as cm:
                        stub.Predict(predict("half_plus_three"), timeout=5)
                    self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
                    self.assertIn("no route for model 'half_plus_three'", cm.exception.details())
                self.assertEqual(sim.stats()["calls"]["Predict"], 0)
            finally:
                self.assertEqual(gw.stop(), 0, gw.stderr())
                sim.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
