"""/metrics against the real tools: `promtool check metrics` accepts the
exposition, and a real Prometheus server scrapes the daemon and sees the
per-tenant counters with the values the traffic implies."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

import grpc
import numpy as np

import fairserve_testlib as lib
from fairserve_testlib import ACME_KEY, GLOBEX_KEY


def parse_metrics(text):
    """{(name, frozenset(labels)): value} from the text format."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, value = line.rsplit(" ", 1)
        labels = {}
        if "{" in name_labels:
            name, rest = name_labels.split("{", 1)
            for part in rest.rstrip("}").split(","):
                k, v = part.split("=", 1)
                labels[k] = v.strip('"')
        else:
            name = name_labels
        out[(name, frozenset(labels.items()))] = float(value)
    return out


class PrometheusTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="fairserve-prom-")
        cls.pb, cls.pbg = lib.generate_stubs(lib.ARGS.proto_dir, os.path.join(cls.tmp, "stubs"))
        limited = (f'  - id: limited\n    api_keys: ["{lib.sha256_key("limited-key")}"]\n'
                   f'    rate_limit: {{requests_per_second: 0.01, burst: 1}}\n'
                   f'  - id: dash\n    api_keys: ["{lib.sha256_key("dash-key")}"]\n')
        pricing = "pricing: {currency: EUR, per_compute_second: 2.5, per_1k_requests: 150}\n"
        cls.config_text = lib.default_config(lib.ARGS.models, limited) + pricing
        cls.daemon = lib.Daemon(lib.ARGS.fairserve, cls.tmp, cls.config_text)
        cls.channel = lib.channel(cls.daemon.grpc_address)
        cls.stub = cls.pbg.GRPCInferenceServiceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        code = cls.daemon.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert code == 0, f"daemon exited {code}"

    def infer(self, model, rows, width, key):
        pb = self.pb
        x = np.ones((rows, width), dtype="<f4")
        req = pb.ModelInferRequest(
            model_name=model,
            inputs=[pb.ModelInferRequest.InferInputTensor(name="INPUT0", datatype="FP32",
                                                          shape=[rows, width])],
            raw_input_contents=[x.tobytes()])
        try:
            self.stub.ModelInfer(req, metadata=[("x-api-key", key)], timeout=30)
            return grpc.StatusCode.OK
        except grpc.RpcError as e:
            return e.code()

    def scrape(self):
        with urllib.request.urlopen(self.daemon.http_url + "/metrics") as r:
            self.assertIn("text/plain; version=0.0.4", r.headers["Content-Type"])
            return r.read().decode()

    def test_promtool_and_prometheus_scrape(self):
        for _ in range(12):
            self.assertEqual(self.infer("mlp_large", 4, 1024, ACME_KEY), grpc.StatusCode.OK)
        for _ in range(5):
            self.assertEqual(self.infer("add_one", 1, 16, GLOBEX_KEY), grpc.StatusCode.OK)
        self.assertEqual(self.infer("add_one", 1, 15, GLOBEX_KEY),
                         grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(self.infer("add_one", 1, 16, "limited-key"), grpc.StatusCode.OK)
        self.assertEqual(self.infer("add_one", 1, 16, "limited-key"),
                         grpc.StatusCode.RESOURCE_EXHAUSTED)

        text = self.scrape()
        check = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                               capture_output=True)
        self.assertEqual(check.returncode, 0, check.stdout.decode() + check.stderr.decode())

        m = parse_metrics(text)
        get = lambda name, **labels: m.get((name, frozenset(labels.items())), 0.0)  # noqa: E731
        self.assertEqual(get("tenant_requests_total", tenant_id="acme", status="ok"), 12)
        self.assertEqual(get("tenant_requests_total", tenant_id="globex", status="ok"), 5)
        self.assertEqual(get("tenant_requests_total", tenant_id="globex",
                             status="invalid_argument"), 1)
        self.assertEqual(get("fairserve_rejected_requests_total", tenant_id="limited",
                             reason="rate_limit"), 1)
        self.assertEqual(get("tenant_samples_total", tenant_id="acme", model_name="mlp_large"), 48)
        self.assertEqual(get("fairserve_request_duration_seconds_count", tenant_id="acme",
                             model_name="mlp_large"), 12)
        # The per-tenant split adds up to the measured batch time.
        acme = get("tenant_gpu_compute_seconds_total", tenant_id="acme", model_name="mlp_large")
        batches = get("fairserve_batch_compute_seconds_total", model_name="mlp_large")
        self.assertGreater(acme, 0)
        self.assertAlmostEqual(acme, batches, delta=1e-9 * max(1.0, batches))

        # A real Prometheus server scrapes the daemon.
        prom_port = lib.free_port()
        prom_dir = os.path.join(self.tmp, "prometheus")
        os.makedirs(prom_dir)
        with open(os.path.join(prom_dir, "prometheus.yml"), "w") as f:
            f.write(f"""global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: fairserve
    static_configs: [{{targets: ["127.0.0.1:{self.daemon.ports['http_port']}"]}}]
""")
        prom = subprocess.Popen(
            ["prometheus", f"--config.file={prom_dir}/prometheus.yml",
             f"--storage.tsdb.path={prom_dir}/data",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(prom_dir, "log"), "w"))
        try:
            # What the client sent, per tenant (rejected and invalid requests
            # included), as Prometheus sees it.
            query = urllib.parse.quote("sum by (tenant_id) (tenant_requests_total)")
            url = f"http://127.0.0.1:{prom_port}/api/v1/query?query={query}"
            values, deadline = {}, time.time() + 90
            while time.time() < deadline:
                try:
                    with urllib.request.urlopen(url, timeout=5) as r:
                        result = json.load(r)["data"]["result"]
                    values = {x["metric"]["tenant_id"]: float(x["value"][1]) for x in result}
                    if values:
                        break
                except OSError:
                    pass
                time.sleep(0.5)
            self.assertEqual(values, {"acme": 12.0, "globex": 6.0, "limited": 2.0},
                             "Prometheus did not scrape the expected values")
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{prom_port}/api/v1/targets", timeout=5) as r:
                targets = json.load(r)["data"]["activeTargets"]
            self.assertEqual(targets[0]["health"], "up", targets[0].get("lastError"))
            self.check_grafana_dashboard(prom_port)
        finally:
            prom.terminate()
            prom.wait(timeout=30)

        # The ledger (flushed on SIGTERM) and fairctl agree with the metrics
        # and with the pricing formula, to the cent.
        self.assertEqual(self.daemon.stop(), 0)
        fairctl = os.path.join(os.path.dirname(lib.ARGS.fairserve), "fairctl")
        data_dir = os.path.join(self.tmp, "data")
        config = os.path.join(self.tmp, "config.yaml")
        out = subprocess.run([fairctl, "invoice", "--data-dir", data_dir, "--tenant", "acme",
                              "--config", config, "--format", "json"],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        invoice = json.loads(out.stdout)
        self.assertEqual(invoice["requests"], 12)
        self.assertEqual(invoice["currency"], "EUR")
        self.assertAlmostEqual(invoice["compute_seconds"], acme, delta=1e-6)
        cents = lambda x: int(round(x * 100))  # noqa: E731
        want = cents(acme * 2.5) + cents(12 / 1000 * 150)
        self.assertEqual(cents(float(invoice["total"])), want, invoice)
        usage = subprocess.run([fairctl, "usage", "--data-dir", data_dir], capture_output=True,
                               text=True, check=True).stdout
        rows = [line.split() for line in usage.splitlines()[1:]]
        by_key = {(r[0], r[1], r[2]): int(r[3]) for r in rows}
        self.assertEqual(by_key[("acme", "mlp_large", "ok")], 12)
        self.assertEqual(by_key[("globex", "add_one", "ok")], 5)

    def check_grafana_dashboard(self, prom_port):
        """Every PromQL expression of deploy/grafana/fairserve.json, with its
        variables as Grafana fills them (all tenants), returns data without
        error from the real Prometheus, against a daemon serving traffic."""
        dashboard = os.path.join(lib.ARGS.proto_dir, "..", "deploy", "grafana", "fairserve.json")
        with open(dashboard) as f:
            panels = json.load(f)["panels"]
        # Traffic across several scrapes, so rates have points: a tenant of
        # its own (the invoice checks below count acme's requests), refusals
        # by the rate-limited tenant, and requests queued behind each other.
        import threading
        stop = threading.Event()

        def load():
            while not stop.is_set():
                self.infer("mlp_large", 8, 1024, "dash-key")
                self.infer("add_one", 1, 16, "limited-key")
        workers = [threading.Thread(target=load) for _ in range(3)]
        for w in workers:
            w.start()
        try:
            time.sleep(6)
            failures = []
            for panel in panels:
                for target in panel["targets"]:
                    expr = (target["expr"].replace("$__rate_interval", "5s")
                            .replace('"$tenant"', '".*"'))
                    url = (f"http://127.0.0.1:{prom_port}/api/v1/query?query="
                           + urllib.parse.quote(expr))
                    with urllib.request.urlopen(url, timeout=10) as r:
                        answer = json.load(r)
                    result = answer.get("data", {}).get("result", [])
                    if answer.get("status") != "success" or not result:
                        failures.append((panel["title"], target["refId"], expr, answer))
            self.assertEqual(failures, [], "dashboard queries without data")
        finally:
            stop.set()
            for w in workers:
                w.join()


if __name__ == "__main__":
    lib.main()
