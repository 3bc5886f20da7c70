"""The Open Inference Protocol's HTTP/REST binding against the real daemon,
with Python requests (Debian's python3-requests): JSON and binary tensor
data, numerics against in-process torch, every error status, and limits
shared with gRPC (one budget per tenant across both front ends).

Run by ctest with Debian's /usr/bin/python3.
"""
import json
import os
import shutil
import struct
import tempfile
import unittest

import grpc
import numpy as np
import requests

import fairserve_testlib as lib
from fairserve_testlib import ACME_KEY, GLOBEX_KEY

LIMITED_KEY = "limited-demo-key"


class RestTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="fairserve-rest-")
        global pb, pb_grpc
        pb, pb_grpc = lib.generate_stubs(lib.ARGS.proto_dir, os.path.join(cls.tmp, "stubs"))
        limited = (f"  - id: limited\n    api_keys: [\"{lib.sha256_key(LIMITED_KEY)}\"]\n"
                   "    models: [add_one]\n"
                   "    rate_limit: {requests_per_minute: 1, burst: 3}\n")
        config = lib.default_config(lib.ARGS.models, limited).replace(
            "data_dir: data}", "data_dir: data, max_message_bytes: 1MiB}")
        cls.daemon = lib.Daemon(lib.ARGS.fairserve, cls.tmp, config)
        cls.url = cls.daemon.http_url
        cls.http = requests.Session()

    @classmethod
    def tearDownClass(cls):
        cls.http.close()
        code = cls.daemon.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert code == 0, f"daemon exited {code}"

    def post(self, model, body, key=ACME_KEY, headers=None, raw=None):
        h = {"Authorization": f"Bearer {key}"} if key else {}
        h.update(headers or {})
        data = raw if raw is not None else json.dumps(body)
        return self.http.post(f"{self.url}/v2/models/{model}/infer", data=data, headers=h,
                              timeout=30)

    def test_server_and_model_metadata(self):
        r = self.http.get(f"{self.url}/v2", timeout=10)
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.json()["name"], "fairserve")
        self.assertIn("binary_tensor_data", r.json()["extensions"])
        self.assertEqual(self.http.get(f"{self.url}/v2/health/live", timeout=10).status_code, 200)
        self.assertEqual(self.http.get(f"{self.url}/v2/health/ready", timeout=10).status_code, 200)
        meta = self.http.get(f"{self.url}/v2/models/mlp", timeout=10,
                             headers={"x-api-key": ACME_KEY})
        self.assertEqual(meta.status_code, 200)
        self.assertEqual(meta.json()["inputs"][0],
                         {"name": "INPUT0", "datatype": "FP32", "shape": [-1, 64]})
        self.assertEqual(meta.json()["versions"], ["1"])
        ready = self.http.get(f"{self.url}/v2/models/add_one/versions/1/ready", timeout=10,
                              headers={"x-api-key": ACME_KEY})
        self.assertEqual(ready.status_code, 200)
        self.assertIn("ready", ready.json())

    def test_json_inference_matches_torch(self):
        import torch
        x = np.random.default_rng(3).standard_normal((2, 64)).astype(np.float32)
        r = self.post("mlp", {"id": "j1", "inputs": [
            {"name": "INPUT0", "datatype": "FP32", "shape": [2, 64], "data": x.tolist()}]})
        self.assertEqual(r.status_code, 200, r.text)
        out = r.json()
        self.assertEqual(out["id"], "j1")
        self.assertEqual(out["model_name"], "mlp")
        self.assertEqual(out["outputs"][0]["shape"], [2, 10])
        got = np.array(out["outputs"][0]["data"], dtype=np.float32).reshape(2, 10)
        m = torch.jit.load(os.path.join(lib.ARGS.models, "mlp", "1", "model.pt"))
        want = m(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        # A flat data list is the same tensor.
        flat = self.post("mlp", {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [2, 64],
                                             "data": x.reshape(-1).tolist()}]})
        self.assertEqual(flat.json()["outputs"][0]["data"], out["outputs"][0]["data"])

    def test_binary_tensor_data_both_ways(self):
        import torch
        x = np.random.default_rng(4).standard_normal((3, 1024)).astype(np.float32)
        header = json.dumps({
            "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [3, 1024],
                        "parameters": {"binary_data_size": x.nbytes}}],
            "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}]}).encode()
        r = self.post("mlp_large", None, raw=header + x.tobytes(),
                      headers={"Inference-Header-Content-Length": str(len(header)),
                               "Content-Type": "application/octet-stream"})
        self.assertEqual(r.status_code, 200, r.text)
        n = int(r.headers["Inference-Header-Content-Length"])
        meta = json.loads(r.content[:n])
        size = meta["outputs"][0]["parameters"]["binary_data_size"]
        self.assertEqual(size, 3 * 1024 * 4)
        got = np.frombuffer(r.content[n:n + size], dtype="<f4").reshape(3, 1024)
        m = torch.jit.load(os.path.join(lib.ARGS.models, "mlp_large", "1", "model.pt"))
        want = m(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

    def test_typed_json_inputs_and_outputs(self):
        a = [[1.5, 2, 3, 4]]
        b = [[1, -2, 3, 2147483647]]
        r = self.post("two_in_out", {"inputs": [
            {"name": "A", "datatype": "FP32", "shape": [1, 4], "data": a},
            {"name": "B", "datatype": "INT32", "shape": [1, 4], "data": b}]})
        self.assertEqual(r.status_code, 200, r.text)
        outs = {o["name"]: o for o in r.json()["outputs"]}
        self.assertEqual(outs["DOUBLE"]["datatype"], "FP64")
        self.assertEqual(outs["DOUBLE"]["data"], [3.0, 4.0, 6.0, 8.0])
        self.assertEqual(outs["SUM"]["data"][:3], [2.5, 0.0, 6.0])

    def test_errors_have_the_status_of_their_code(self):
        ok = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 16],
                          "data": [0.0] * 16}]}
        short = json.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 16],
                                        "parameters": {"binary_data_size": 64}}]}).encode()
        cases = [
            ("no key", self.post("add_one", ok, key=None), 401, "missing or invalid API key"),
            ("wrong key", self.post("add_one", ok, key="nope"), 401, "missing or invalid"),
            ("not allowed", self.post("mlp", ok, key=GLOBEX_KEY), 403,
             "'globex' may not use model 'mlp'"),
            ("unknown model", self.post("no_such_model", ok), 404, "no_such_model"),
            ("malformed JSON", self.post("add_one", None, raw="{\"inputs\": ["), 400,
             "malformed JSON"),
            ("element of the wrong type", self.post("add_one", {"inputs": [
                {"name": "INPUT0", "datatype": "FP32", "shape": [1, 16],
                 "data": ["x"] * 16}]}), 400, "input 'INPUT0': element 0: expected a number"),
            ("int out of range", self.post("two_in_out", {"inputs": [
                {"name": "A", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]},
                {"name": "B", "datatype": "INT32", "shape": [1, 4],
                 "data": [1, 2, 3, 2147483648]}]}), 400, "element 3: 2147483648 is out of range"),
            ("wrong shape", self.post("add_one", {"inputs": [
                {"name": "INPUT0", "datatype": "FP32", "shape": [1, 15], "data": [0.0] * 15}]}),
             400, "INPUT0"),
            ("binary size past the end", self.post("add_one", None, raw=short + b"\0" * 10,
                headers={"Inference-Header-Content-Length": str(len(short))}), 400,
             "runs past the end of the body"),
        ]
        for what, r, status, message in cases:
            with self.subTest(what):
                self.assertEqual(r.status_code, status, r.text)
                self.assertIn("error", r.json())
                self.assertIn(message, r.json()["error"])
        big = self.post("add_one", None, raw=b"x" * (2 << 20))
        self.assertEqual(big.status_code, 413)

    def test_rate_limit_is_one_budget_across_grpc_and_rest(self):
        channel = lib.channel(self.daemon.grpc_address)
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        x = np.zeros((1, 16), dtype=np.float32)
        req = pb.ModelInferRequest(
            model_name="add_one",
            inputs=[pb.ModelInferRequest.InferInputTensor(name="INPUT0", datatype="FP32",
                                                          shape=[1, 16])],
            raw_input_contents=[x.tobytes()])
        body = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 16],
                            "data": [0.0] * 16}]}
        try:
            # Burst 3 at one per minute: two over gRPC and one over REST pass.
            for _ in range(2):
                stub.ModelInfer(req, metadata=[("x-api-key", LIMITED_KEY)], timeout=30)
            self.assertEqual(self.post("add_one", body, key=LIMITED_KEY).status_code, 200)
            refused = self.post("add_one", body, key=LIMITED_KEY)
            self.assertEqual(refused.status_code, 429, refused.text)
            self.assertIn("rate limit", refused.json()["error"])
            self.assertGreaterEqual(int(refused.headers["Retry-After"]), 1)
            with self.assertRaises(grpc.RpcError) as e:
                stub.ModelInfer(req, metadata=[("x-api-key", LIMITED_KEY)], timeout=30)
            self.assertEqual(e.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        finally:
            channel.close()
        # Every REST call is counted like a gRPC one.
        metrics = self.http.get(f"{self.url}/metrics", timeout=10).text
        self.assertIn('fairserve_rejected_requests_total{reason="rate_limit",tenant_id="limited"} 2',
                      metrics)

    def test_the_curl_example_in_protocol_md_works(self):
        import subprocess
        doc = os.path.join(lib.ARGS.proto_dir, "..", "docs", "protocol.md")
        lines = open(doc).read().splitlines()
        start = next(i for i, l in enumerate(lines) if l.strip().startswith("curl -s -X POST"))
        command = []
        for line in lines[start:]:
            command.append(line.strip().rstrip("\\"))
            if not line.rstrip().endswith("\\"):
                break
        shell = " ".join(command).replace("127.0.0.1:8000", self.url.split("//")[1])
        out = subprocess.run(["bash", "-c", shell], check=True, capture_output=True, timeout=30)
        answer = json.loads(out.stdout)
        self.assertEqual(answer["outputs"][0]["data"], [float(i + 1) for i in range(16)])


if __name__ == "__main__":
    lib.main()
