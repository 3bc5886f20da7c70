"""/status in a real browser: headless Chromium (Debian's) loads the page
from the running daemon, the DOM shows every tenant and model, and a
screenshot is kept as a test artifact (build/test-artifacts/status.png)."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import urllib.error
import urllib.request

import grpc
import numpy as np

import fairserve_testlib as lib
from fairserve_testlib import ACME_KEY, GLOBEX_KEY

ARGS = None
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


class StatusPageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="fairserve-status-")
        cls.pb, cls.pbg = lib.generate_stubs(lib.ARGS.proto_dir, os.path.join(cls.tmp, "stubs"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def traffic(self, daemon, extra=()):
        pb = self.pb
        channel = lib.channel(daemon.grpc_address)
        stub = self.pbg.GRPCInferenceServiceStub(channel)
        for key, n in ((ACME_KEY, 7), (GLOBEX_KEY, 3), *extra):
            for _ in range(n):
                x = np.ones((1, 16), dtype="<f4")
                try:
                    stub.ModelInfer(pb.ModelInferRequest(
                        model_name="add_one",
                        inputs=[pb.ModelInferRequest.InferInputTensor(
                            name="INPUT0", datatype="FP32", shape=[1, 16])],
                        raw_input_contents=[x.tobytes()]), metadata=[("x-api-key", key)],
                        timeout=10)
                except grpc.RpcError as e:
                    # Only the rate-limited tenant is ever refused.
                    self.assertEqual((key, e.code()),
                                     ("limited-key", grpc.StatusCode.RESOURCE_EXHAUSTED))
        channel.close()

    def chromium(self, url, *args):
        profile = tempfile.mkdtemp(dir=self.tmp)
        return subprocess.run(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args,
                               url], capture_output=True, text=True, timeout=120)

    def test_page_in_chromium(self):
        # A point of the charts every second; a tenant that gets refused.
        limited = (f'  - id: limited\n    api_keys: ["{lib.sha256_key("limited-key")}"]\n'
                   '    models: [add_one]\n'
                   '    rate_limit: {requests_per_second: 2, burst: 1}\n')
        config = lib.default_config(lib.ARGS.models, limited).replace(
            "data_dir: data}", "data_dir: data, status_sample_interval_s: 1}")
        daemon = lib.Daemon(lib.ARGS.fairserve, self.tmp, config)
        try:
            import time
            for _ in range(4):  # traffic across several samples
                self.traffic(daemon, extra=[("limited-key", 5)])
                time.sleep(0.6)
            time.sleep(1.2)
            url = daemon.http_url + "/status"
            dom = self.chromium(url, "--dump-dom")
            self.assertEqual(dom.returncode, 0, dom.stderr[-2000:])
            html = dom.stdout
            self.assertIn('<tr data-tenant="acme">', html)
            self.assertIn('<tr data-tenant="globex">', html)
            self.assertIn("mlp_large", html)
            self.assertIn('<meta http-equiv="refresh" content="5">', html)
            # The last hour as inline SVG charts, per tenant.
            for tenant in ("acme", "globex", "limited"):
                self.assertIn(f'<tr data-tenant-charts="{tenant}">', html)
            row = html.split('<tr data-tenant-charts="limited">')[1].split("</tr>")[0]
            for chart in ("requests", "rejections", "share"):
                self.assertIn(f'data-chart="{chart}"', row)
            self.assertIn('data-series="rate_limit"', row)  # its refusals, by reason
            self.assertNotIn("<script", html)
            self.assertNotIn("http://", html.split("<body>")[0].replace(url, ""))  # no external assets
            artifacts = os.path.join(lib.ARGS.artifacts)
            os.makedirs(artifacts, exist_ok=True)
            png = os.path.join(artifacts, "status.png")
            if os.path.exists(png):
                os.remove(png)
            shot = self.chromium(url, f"--screenshot={png}", "--window-size=1280,720")
            self.assertEqual(shot.returncode, 0, shot.stderr[-2000:])
            with open(png, "rb") as f:
                data = f.read()
            self.assertTrue(data.startswith(b"\x89PNG\r\n\x1a\n"))
            self.assertGreater(len(data), 10000, "the screenshot looks blank")
        finally:
            self.assertEqual(daemon.stop(), 0)

    def test_admin_mode_needs_the_admin_key(self):
        config = lib.default_config(lib.ARGS.models).replace(
            "data_dir: data}",
            f'data_dir: data, status_page: admin, admin_api_keys: ["{lib.sha256_key("adm")}"]}}')
        daemon = lib.Daemon(lib.ARGS.fairserve, self.tmp, config)
        try:
            url = daemon.http_url + "/status"
            with self.assertRaises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(url)
            self.assertEqual(e.exception.code, 401)
            # A tenant's key is a known principal, but not an admin.
            tenant = urllib.request.Request(url, headers={"Authorization": f"Bearer {lib.ACME_KEY}"})
            with self.assertRaises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(tenant)
            self.assertEqual(e.exception.code, 403)
            self.assertIn(b"needs an admin key", e.exception.read())
            req = urllib.request.Request(url, headers={"Authorization": "Bearer adm"})
            with urllib.request.urlopen(req) as r:
                self.assertEqual(r.status, 200)
                self.assertIn(b'data-tenant="acme"', r.read())
        finally:
            self.assertEqual(daemon.stop(), 0)


if __name__ == "__main__":
    lib.main(["--artifacts"])
