"""The .deb: built by CPack from this build, installed with dpkg on this machine, and the
installed tfgate (from /usr/bin, with the installed /etc/tfgate configuration checked) serves
a request; the systemd unit carries its hardening; removed again afterwards. Needs root (as
CI runs); elsewhere it says why it skips."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness  # noqa: E402


@unittest.skipUnless(os.geteuid() == 0, "installs a package with dpkg: needs root")
class TestPackage(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def run_ok(self, argv, **kw):
        p = subprocess.run(argv, capture_output=True, text=True, timeout=300, **kw)
        self.assertEqual(p.returncode, 0, "%s: %s %s" % (" ".join(argv), p.stdout[-2000:], p.stderr[-2000:]))
        return p.stdout

    def test_deb_installs_and_serves(self):
        self.run_ok(["cpack", "--config", os.path.join(harness.BUILD_DIR, "CPackConfig.cmake"), "-G", "DEB"],
                    cwd=self.tmp.name)
        debs = [f for f in os.listdir(self.tmp.name) if f.endswith(".deb")]
        self.assertEqual(len(debs), 1, debs)
        deb = os.path.join(self.tmp.name, debs[0])
        info = self.run_ok(["dpkg-deb", "-I", deb])
        self.assertIn("Package: tfgate", info)
        self.assertIn("libgrpc29", info)  # dependencies read off the binaries

        self.addCleanup(lambda: subprocess.run(["dpkg", "-P", "tfgate"], capture_output=True, timeout=120))
        self.run_ok(["dpkg", "-i", deb])
        self.assertIn("tfgate", self.run_ok(["/usr/bin/tfgate", "--version"]))
        # the packaged configuration is valid, and a conffile
        self.assertIn("configuration OK", self.run_ok(["/usr/bin/tfgate", "--config", "/etc/tfgate/tfgate.json",
                                                       "--check-config"]))
        self.assertIn("/etc/tfgate/tfgate.json", self.run_ok(["dpkg-query", "-W", "-f=${Conffiles}", "tfgate"]))
        unit = open("/usr/lib/systemd/system/tfgate.service").read()
        for line in ("ExecStart=/usr/bin/tfgate --config /etc/tfgate/tfgate.json", "NoNewPrivileges=yes",
                     "ProtectSystem=strict", "DynamicUser=yes", "ReadOnlyPaths=/etc/tfgate",
                     "ExecReload=/bin/kill -HUP $MAINPID"):
            self.assertIn(line, unit)
        # every flag the unit uses is one the installed binary knows
        self.assertIn("--config FILE", self.run_ok(["/usr/bin/tfgate", "--help"]))

        # the installed binaries, not the build's: a backend and the gateway, one request
        sim = harness.Proc(["/usr/bin/tfs-sim", "--port", "0"], r"tfs-sim listening on (\S+):(\d+)")
        self.addCleanup(sim.stop)
        cfg = {"listen": [{"address": "127.0.0.1:0"}],
               "pools": {"default": {"targets": ["127.0.0.1:%s" % sim.match.group(2)]}}}
        path = harness.write_json(self.tmp.name, "gw.json", cfg)
        gw = harness.Proc(["/usr/bin/tfgate", "--config", path], r"tfgate listening on \S*?:(\d+)")
        try:
            out = self.run_ok(["curl", "-sS", "--data-binary", '{"instances": [1.0, 2.0, 5.0]}',
                               "http://127.0.0.1:%s/v1/models/half_plus_two:predict" % gw.match.group(1)])
            self.assertEqual(json.loads(out), {"predictions": [2.5, 3.0, 4.5]})
        finally:
            self.assertEqual(gw.stop(), 0, gw.stderr())


if __name__ == "__main__":
    unittest.main(verbosity=2)
