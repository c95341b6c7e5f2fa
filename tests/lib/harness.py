"""Process harness for tfgate's integration tests.

Every process a test starts goes through Proc: it is started in its own process group, its
PID is tracked, and it is stopped (SIGTERM, then SIGKILL after a grace period) when the test
ends, when the interpreter exits, or when the runner itself gets SIGTERM/SIGINT, so a failing
test never leaves a server behind. Servers bind port 0 and print the address they bound,
so tests never use fixed ports.

Paths come from the environment that ctest sets (tests/CMakeLists.txt):
  TG_BUILD_DIR   the build directory holding tfs-sim (and tfgate)
  TG_PY_DIR      generated Python protobuf/gRPC modules for proto/
  TG_SOURCE_DIR  the repository
"""
import atexit
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

BUILD_DIR = os.environ.get("TG_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
SOURCE_DIR = os.environ.get("TG_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
PY_DIR = os.environ.get("TG_PY_DIR", os.path.join(BUILD_DIR, "py"))
if PY_DIR not in sys.path:
    sys.path.insert(0, PY_DIR)

_live = []


def _stop_all(*_):
    for p in list(_live):
        p.stop()


atexit.register(_stop_all)


def _on_signal(signum, _frame):
    _stop_all()
    sys.exit(128 + signum)


for _s in (signal.SIGTERM, signal.SIGINT):
    signal.signal(_s, _on_signal)


class StartError(RuntimeError):
    pass


class Proc:
    """A child process whose stdout announces its address with |ready_re|."""

    def __init__(self, argv, ready_re, timeout=10.0, env=None, stdin=None):
        self.argv = argv
        self.stderr_path = "/tmp/tg-%d-%d.stderr" % (os.getpid(), len(_live) + int(time.time() * 1e6) % 100000)
        self._stderr = open(self.stderr_path, "w+b")
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._stderr, stdin=stdin,
                                  env=env, start_new_session=True)
        self.pid = self.p.pid
        _live.append(self)
        self.match = None
        self.lines = []
        self._buf = b""
        self._read_until(lambda: self.match is not None, timeout, ready_re)

    def _read_until(self, done, timeout, ready_re=None):
        argv = self.argv
        deadline = time.monotonic() + timeout
        buf = self._buf
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise StartError("%s: no ready line within %.1fs; stderr: %s" % (argv[0], timeout, self.stderr()))
            r, _, _ = select.select([self.p.stdout], [], [], left)
            if not r:
                continue
            chunk = os.read(self.p.stdout.fileno(), 4096)
            if not chunk:
                self.p.wait(timeout=5)
                raise StartError("%s exited with %s before it was ready; stderr: %s"
                                 % (argv[0], self.p.returncode, self.stderr()))
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode(errors="replace")
                self.lines.append(text)
                m = re.search(ready_re, text) if ready_re else None
                if m and self.match is None:
                    self.match = m
            self._buf = buf

    def wait_line(self, pattern, timeout=10.0, after=0):
        """The first stdout line from index |after| on that matches |pattern| (waiting up to
        |timeout| seconds for more output); raises StartError when none comes."""
        def found():
            return any(re.search(pattern, l) for l in self.lines[after:])
        self._read_until(found, timeout)
        return next(l for l in self.lines[after:] if re.search(pattern, l))

    def wait_stderr(self, pattern, timeout=10.0):
        """Waits until the process's stderr (all of it) matches |pattern|; returns the match."""
        deadline = time.monotonic() + timeout
        while True:
            with open(self.stderr_path, "rb") as f:
                m = re.search(pattern, f.read().decode(errors="replace"))
            if m or time.monotonic() > deadline:
                return m
            time.sleep(0.02)

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, grace=15.0):
        """SIGTERM, wait up to |grace| seconds (more than tfgate's default drain timeout), then
        SIGKILL. Returns the exit code."""
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.p.wait(timeout=5)
            except ProcessLookupError:
                pass
        if self in _live:
            _live.remove(self)
        if self.p.stdout:
            self.p.stdout.close()
        self._stderr.close()
        return self.p.returncode

    def kill(self):
        """SIGKILL, as a crash would."""
        if self.alive():
            os.killpg(self.pid, signal.SIGKILL)
        self.p.wait(timeout=5)
        if self in _live:
            _live.remove(self)
        if self.p.stdout:
            self.p.stdout.close()
        self._stderr.close()
        return self.p.returncode


def binary(name):
    path = os.path.join(BUILD_DIR, name)
    if not os.path.exists(path):
        raise FileNotFoundError("%s is not built (looked at %s)" % (name, path))
    return path


class Sim(Proc):
    """A tfs-sim process on a free loopback port."""

    def __init__(self, *args, port=0, host="127.0.0.1"):
        super().__init__([binary("tfs-sim"), "--host", host, "--port", str(port)] + list(args),
                         r"tfs-sim listening on (\S+):(\d+)")
        self.port = int(self.match.group(2))
        self.addr = "%s:%d" % (host if ":" not in host else "[%s]" % host, self.port)

    def channel(self):
        import grpc
        return grpc.insecure_channel(self.addr, options=[
            ("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)])

    def stats(self):
        with self.channel() as ch:
            return json.loads(ch.unary_unary("/tfsim.Sim/Stats")(b"", timeout=5))

    def control(self, **op):
        with self.channel() as ch:
            return json.loads(ch.unary_unary("/tfsim.Sim/Control")(json.dumps(op).encode(), timeout=5))


class Redis(Proc):
    """Debian's redis-server on a free loopback port, nothing persisted. Redis cannot pick its own
    port and report it, so a free one is found first (retried if another process takes it)."""

    def __init__(self, port=None):
        for attempt in range(5):
            self.port = port or free_port()
            try:
                super().__init__(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no", "--protected-mode", "no",
                                  "--logfile", ""], r"Ready to accept connections")
                break
            except StartError:
                if port or attempt == 4:
                    raise
        self.addr = "127.0.0.1:%d" % self.port


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_json(tmpdir, name, obj):
    path = os.path.join(tmpdir, name)
    with open(path, "w") as f:
        json.dump(obj, f)
    return path


def port_is_free(port, host="127.0.0.1"):
    s = socket.socket()
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def predict(model="half_plus_two", values=(1.0,)):
    """A PredictRequest for |model| with input "x": a float vector of |values| (the built-in
    half_plus_two answers 0.5 * x + 2)."""
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import predict_pb2
    r = predict_pb2.PredictRequest()
    r.model_spec.name = model
    t = r.inputs["x"]
    t.dtype = types_pb2.DT_FLOAT
    t.tensor_shape.dim.add().size = len(values)
    t.float_val.extend(values)
    return r


def grpc_frame(msg: bytes) -> bytes:
    """gRPC length-prefixed message: flag 0, 4-byte big-endian length, bytes."""
    import struct
    return b"\0" + struct.pack(">I", len(msg)) + msg


class Gateway(Proc):
    """A tfgate process; |ports| are the bound ports of its listeners, in order.

    With TG_TEST_TRANSPORT set (native or grpc-core), every pool uses that upstream transport,
    so one test file covers both (tests/CMakeLists.txt runs the gateway suites twice)."""

    def __init__(self, *args, timeout=10.0):
        args = list(args)
        transport = os.environ.get("TG_TEST_TRANSPORT")
        if transport and "--config" in args:
            i = args.index("--config") + 1
            with open(args[i]) as f:
                cfg = json.load(f)
            for pool in cfg.get("pools", {}).values():
                pool.setdefault("transport", transport)
            args[i] = args[i] + "." + transport + ".json"
            with open(args[i], "w") as f:
                json.dump(cfg, f)
        elif transport and "--check-config" not in args:
            args += ["--transport", transport]
        argv = [binary("tfgate")] + args
        if "--config" not in args and "--listen" not in args and "--tls-listen" not in args:
            argv += ["--listen", "127.0.0.1:0"]
        super().__init__(argv, r"tfgate listening on \S*?:(\d+)", timeout=timeout)
        deadline = time.monotonic() + timeout
        want = sum(1 for a in args if a in ("--listen", "--tls-listen")) or 1
        if "--config" in args:
            want = 1  # the config file decides; tests that need more read self.lines
        while len([l for l in self.lines if "listening on" in l]) < want and time.monotonic() < deadline:
            time.sleep(0.01)  # the remaining lines were printed in the same flush
        self.ports = [int(re.search(r":(\d+) \(", l).group(1)) for l in self.lines if "listening on" in l]
        self.port = self.ports[0]
        self.addr = "127.0.0.1:%d" % self.port

    def channel(self, port=None, **kw):
        import grpc
        return grpc.insecure_channel("127.0.0.1:%d" % (port or self.port), options=[
            ("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)] +
            list(kw.get("options", [])))


def make_cert(tmpdir, name="tls"):
    """A self-signed P-256 certificate for 127.0.0.1 and localhost; returns (cert, key)."""
    cert, key = os.path.join(tmpdir, name + ".crt"), os.path.join(tmpdir, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=30)
    return cert, key


class RawH2:
    """A bare HTTP/2 client on python3-h2 for tests that real clients cannot provoke (resets,
    oversized header lists, missing grpc-timeout). Every read is bounded in time."""

    def __init__(self, port, settings=None, timeout=5.0):
        import h2.config
        import h2.connection
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.conn = h2.connection.H2Connection(config=h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8", validate_outbound_headers=False,
            normalize_outbound_headers=False))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.flush()
        self.events = []
        self.closed = False

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path, headers=(), body=b"", end=True, grpc=True):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", "POST"), (":scheme", "http"), (":authority", "localhost"), (":path", path)]
        if grpc:
            hdrs += [("content-type", "application/grpc"), ("te", "trailers")]
        hdrs += list(headers)
        self.conn.send_headers(sid, hdrs, end_stream=end and not body)
        if body:
            self.conn.send_data(sid, body, end_stream=end)
        self.flush()
        return sid

    def pump(self, until, timeout=5.0):
        """Reads events until until(events) is true, the connection closes, or |timeout|."""
        import h2.events
        deadline = time.monotonic() + timeout
        while not until(self.events) and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                break
            except OSError:
                self.closed = True
                break
            if not data:
                self.closed = True
                break
            for ev in self.conn.receive_data(data):
                self.events.append(ev)
                if isinstance(ev, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if isinstance(ev, h2.events.ConnectionTerminated):
                    self.closed = True
            try:
                self.flush()
            except OSError:
                self.closed = True
        return self.events

    def stream_done(self, sid):
        import h2.events
        return lambda evs: any(isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)) and
                               e.stream_id == sid for e in evs)

    def headers_of(self, sid):
        import h2.events
        out = {}
        for e in self.events:
            if isinstance(e, (h2.events.ResponseReceived, h2.events.TrailersReceived)) and e.stream_id == sid:
                for k, v in e.headers:
                    out[k.decode() if isinstance(k, bytes) else k] = v.decode() if isinstance(v, bytes) else v
        return out

    def reset_of(self, sid):
        import h2.events
        for e in self.events:
            if isinstance(e, h2.events.StreamReset) and e.stream_id == sid:
                return e.error_code
        return None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
