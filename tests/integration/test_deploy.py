"""deploy/: the Kubernetes manifests parse (python3-yaml) and agree with the binary (their
tfgate configuration passes --check-config, the probes hit the admin port's paths, the
container's flags are ones --help lists); the Dockerfile's stages, packages (known to apt) and
entry point agree with the package. Neither can run here; these checks keep them honest."""
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness  # noqa: E402

import yaml  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


class TestDeploy(unittest.TestCase):
    def test_kubernetes_manifests(self):
        with open(os.path.join(ROOT, "deploy", "k8s", "tfgate.yaml")) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        kinds = [(d["kind"], d["metadata"]["name"]) for d in docs]
        self.assertEqual(kinds, [("ConfigMap", "tfgate"), ("Deployment", "tfgate"), ("Service", "tfgate"),
                                 ("Service", "tf-serving-gpu")])
        cm, dep, svc, headless = docs
        cfg = json.loads(cm["data"]["tfgate.json"])
        with tempfile.TemporaryDirectory() as tmp:
            path = harness.write_json(tmp, "tfgate.json", cfg)
            p = subprocess.run([harness.binary("tfgate"), "--config", path, "--check-config"],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)
        c = dep["spec"]["template"]["spec"]["containers"][0]
        helptext = subprocess.run([harness.binary("tfgate"), "--help"], capture_output=True, text=True).stdout
        for arg in c["args"]:
            if arg.startswith("--"):
                self.assertIn(arg, helptext)
        self.assertEqual(c["args"][c["args"].index("--config") + 1],
                         c["volumeMounts"][0]["mountPath"] + "/tfgate.json")
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        self.assertEqual(ports["admin"], int(cfg["admin"]["address"].rsplit(":", 1)[1]))
        self.assertEqual(ports["http"], int(cfg["listen"][0]["address"].rsplit(":", 1)[1]))
        self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "admin"})
        self.assertEqual(c["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "admin"})
        self.assertTrue(c["securityContext"]["runAsNonRoot"])
        self.assertEqual(svc["spec"]["selector"], dep["spec"]["selector"]["matchLabels"])
        self.assertEqual(headless["spec"]["clusterIP"], "None")
        # the headless Service is the one the GPU pool's dns:/// target names
        self.assertIn("dns:///%s.%s.svc.cluster.local:%d" % (headless["metadata"]["name"],
                                                              headless["metadata"]["namespace"],
                                                              headless["spec"]["ports"][0]["port"]),
                      cfg["pools"]["gpu"]["targets"])

    def test_dockerfile(self):
        text = open(os.path.join(ROOT, "deploy", "Dockerfile")).read()
        stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?$", text, re.M)
        self.assertEqual(stages, [("debian:12", "build"), ("debian:12-slim", "")])
        self.assertIn('ENTRYPOINT ["/usr/bin/tfgate"]', text)
        self.assertIn('CMD ["--config", "/etc/tfgate/tfgate.json"]', text)
        self.assertRegex(text, r"(?m)^USER 65532")
        self.assertIn("cpack -G DEB", text)
        # every package it installs is one Debian has
        pkgs = set()
        for block in re.findall(r"apt-get install -y --no-install-recommends(.*?)(?:&&|$)", text, re.S):
            pkgs |= {w for w in block.replace("\\", " ").split() if re.match(r"^[a-z0-9][a-z0-9.+-]+$", w)}
        self.assertIn("libgrpc-dev", pkgs)
        missing = [p for p in sorted(pkgs) if subprocess.run(["apt-cache", "show", p], capture_output=True).returncode]
        self.assertEqual(missing, [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
