"""tfgate's command line and JSON configuration: --check-config, and errors that name the
flag, or the file, line, column and key."""
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness  # noqa: E402


def tfgate(*args):
    p = subprocess.run([harness.binary("tfgate")] + list(args), capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout + p.stderr


class TestConfig(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def write(self, text):
        path = os.path.join(self.tmp.name, "gw.json")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_example_file_is_valid(self):
        code, out = tfgate("--config", os.path.join(harness.SOURCE_DIR, "examples", "tfgate.json"), "--check-config")
        self.assertEqual(code, 0, out)
        self.assertIn("configuration OK (2 listener(s), 2 pool(s), 2 route(s))", out)

    def test_cli_defaults(self):
        code, out = tfgate("--backend", "127.0.0.1:8500", "--check-config")
        self.assertEqual(code, 0, out)
        self.assertIn("1 listener(s), 1 pool(s), 1 route(s)", out)

    def test_unknown_key_names_key_and_position(self):
        path = self.write('{\n  "listen": [{"address": "127.0.0.1:0"}],\n  "pools": {\n'
                          '    "cpu": {"targets": ["a:1"], "chanels": 2}\n  }\n}\n')
        code, out = tfgate("--config", path, "--check-config")
        self.assertEqual(code, 2)
        self.assertIn("gw.json:4:33: pools.cpu.chanels: unknown key 'chanels'", out)

    def test_wrong_type_names_key_and_position(self):
        path = self.write('{"listen": [{"address": "127.0.0.1:0"}],\n "pools": {"cpu": {"targets": ["a:1"]}},\n'
                          ' "limits": {"max_headers": "100"}}')
        code, out = tfgate("--config", path)
        self.assertEqual(code, 2)
        self.assertIn("gw.json:3:13: limits.max_headers: must be an integer", out)

    def test_syntax_error_position(self):
        path = self.write('{"listen": [\n  {"address": }]}')
        code, out = tfgate("--config", path)
        self.assertEqual(code, 2)
        self.assertIn("gw.json:2:", out)

    def test_semantic_errors(self):
        for doc, msg in [
            ('{"listen": [{"address": "x"}], "pools": {"p": {"targets": ["a:1"]}}}', "'x' is not host:port"),
            ('{"listen": [{"address": ":1"}], "pools": {"p": {"targets": []}}}', "pools.p.targets: must be a non-empty list"),
            ('{"listen": [{"address": ":1"}], "pools": {"p": {"targets": ["a:1"], "device": "tpu"}}}', "must be \\\"cpu\\\" or \\\"gpu\\\""),
            ('{"listen": [{"address": ":1"}], "pools": {"a": {"targets": ["a:1"]}, "b": {"targets": ["b:1"]}}}', "several pools and no routes"),
            ('{"listen": [{"address": ":1"}], "pools": {"a": {"targets": ["a:1"]}}, "routes": [{"model": "*", "pool": "zz"}]}', "names pool 'zz', which does not exist"),
            ('{"listen": [{"address": ":1"}], "pools": {"a": {"targets": ["a:1"]}}, "limits": {"max_message_bytes": 3000000000}}', "limits.max_message_bytes: must be an integer from 0 to 2147483647"),
            ('{"listen": [{"address": ":1", "tls": {"cert": "c"}}], "pools": {"a": {"targets": ["a:1"]}}}', "needs both 'cert' and 'key'"),
            ('{"listen": [{"address": ":1"}], "pools": {"a": {"targets": ["a:1"], "transport": "quic"}}}', "pools.a.transport: must be \"native\" or \"grpc-core\""),
            ('{"listen": [{"address": ":1"}], "pools": {"a": {"targets": ["a:1"], "transport": "native", "tls": {}}}}', "TLS to backends needs transport \"grpc-core\""),
        ]:
            with self.subTest(msg=msg):
                code, out = tfgate("--config", self.write(doc), "--check-config")
                self.assertEqual(code, 2)
                self.assertIn(msg.replace('\\"', '"'), out)

    def test_flag_errors(self):
        for args, msg in [
            (["--backend", "a:1", "--listen", "nope"], "--listen: 'nope' is not host:port"),
            (["--backend", "a:1", "--route", "m"], "--route 'm': expected MODEL=POOL"),
            (["--backend", "a:1", "--route", "m=zz"], "names pool 'zz'"),
            (["--listen", ":1"], "no backend pool"),
            (["--backend", "a:1", "--max-message-bytes", "-1"], "--max-message-bytes needs an integer"),
            (["--backend", "a:1", "--tls-listen", ":1"], "--tls-listen needs --tls-cert and --tls-key"),
            (["--backend", "a:1", "--config", "x.json"], "--config excludes"),
            (["--bogus"], "unknown or incomplete option '--bogus'"),
            (["--backend", "a:1", "--transport", "quic"], "--transport: native or grpc-core"),
        ]:
            with self.subTest(args=args):
                code, out = tfgate(*args)
                self.assertEqual(code, 2, out)
                self.assertIn(msg, out)

    def test_help_and_version(self):
        code, out = tfgate("--help")
        self.assertEqual(code, 0)
        for flag in ("--listen", "--tls-listen", "--backend", "--route", "--config", "--check-config",
                     "--workers", "--max-message-bytes", "--drain-timeout-ms"):
            self.assertIn(flag, out)
        code, out = tfgate("--version")
        self.assertEqual(code, 0)
        self.assertIn("nghttp2 1.52", out)

    def test_port_in_use_is_an_error(self):
        sim = harness.Sim()
        try:
            gw = harness.Gateway("--backend", sim.addr)
            try:
                code, out = tfgate("--listen", gw.addr, "--backend", sim.addr)
                self.assertEqual(code, 1)
                self.assertIn("Address already in use", out)
            finally:
                self.assertEqual(gw.stop(), 0)
        finally:
            sim.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
