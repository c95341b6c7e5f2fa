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
        deadline = time.monotonic() + timeout
        buf = b""
        while self.match is None:
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
                m = re.search(ready_re, text)
                if m and self.match is None:
                    self.match = m

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

    def stop(self, grace=10.0):
        """SIGTERM, wait up to |grace| seconds, then SIGKILL. Returns the exit code."""
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


def grpc_frame(msg: bytes) -> bytes:
    """gRPC length-prefixed message: flag 0, 4-byte big-endian length, bytes."""
    import struct
    return b"\0" + struct.pack(">I", len(msg)) + msg
