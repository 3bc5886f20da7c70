"""Wire compatibility: talk to the real daemon from Python grpcio (a different
gRPC implementation than the server's), with stubs generated from proto/ at
test time, exactly as a KServe or Triton user would.

Run by ctest with Debian's /usr/bin/python3 (python3-grpcio, python3-protobuf,
python3-torch).
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import grpc
import numpy as np

ARGS = None
ACME_KEY = "acme-demo-key"
GLOBEX_KEY = "globex-demo-key"


def sha256_key(key):
    import hashlib
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class Daemon:
    def __init__(self, workdir):
        self.workdir = workdir
        config = os.path.join(workdir, "config.yaml")
        with open(config, "w") as f:
            f.write(f"""server: {{listen_address: 127.0.0.1, grpc_port: 0, http_port: 0, data_dir: data}}
model_repository: {ARGS.models}
scheduler: {{workers: 1, intra_op_threads: 1}}
tenants:
  - id: acme
    api_keys: ["{sha256_key(ACME_KEY)}"]
  - id: globex
    api_keys: ["{sha256_key(GLOBEX_KEY)}"]
    models: [add_one]
""")
        ready = os.path.join(workdir, "ready.json")
        self.log = open(os.path.join(workdir, "daemon.log"), "w")
        self.proc = subprocess.Popen(
            [ARGS.fairserve, "--config", config, "--ready-file", ready],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("daemon did not start: " + open(self.log.name).read())
            time.sleep(0.02)
        with open(ready) as f:
            self.ports = json.load(f)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self.log.close()
        return code


class PythonClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="fairserve-py-")
        stubs = os.path.join(cls.tmp, "stubs")
        os.makedirs(stubs)
        subprocess.check_call([
            "protoc", f"--proto_path={ARGS.proto_dir}", f"--python_out={stubs}",
            f"--grpc_python_out={stubs}",
            "--plugin=protoc-gen-grpc_python=" + shutil.which("grpc_python_plugin"),
            os.path.join(ARGS.proto_dir, "inference", "grpc_service.proto")])
        sys.path.insert(0, stubs)
        global pb, pb_grpc
        from inference import grpc_service_pb2 as pb  # noqa: E402
        from inference import grpc_service_pb2_grpc as pb_grpc  # noqa: E402
        cls.daemon = Daemon(cls.tmp)
        cls.channel = grpc.insecure_channel(f"127.0.0.1:{cls.daemon.ports['grpc_port']}")
        cls.stub = pb_grpc.GRPCInferenceServiceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        code = cls.daemon.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert code == 0, f"daemon exited {code}"

    def infer(self, model, x, key=ACME_KEY):
        req = pb.ModelInferRequest(
            model_name=model,
            inputs=[pb.ModelInferRequest.InferInputTensor(
                name="INPUT0", datatype="FP32", shape=list(x.shape))],
            raw_input_contents=[x.astype("<f4").tobytes()])
        return self.stub.ModelInfer(req, metadata=[("authorization", f"Bearer {key}")],
                                    timeout=30)

    def test_server_calls(self):
        self.assertTrue(self.stub.ServerLive(pb.ServerLiveRequest()).live)
        self.assertTrue(self.stub.ServerReady(pb.ServerReadyRequest()).ready)
        self.assertEqual(self.stub.ServerMetadata(pb.ServerMetadataRequest()).name, "fairserve")

    def test_model_metadata(self):
        meta = self.stub.ModelMetadata(pb.ModelMetadataRequest(name="mlp_large"),
                                       metadata=[("x-api-key", ACME_KEY)])
        self.assertEqual(meta.inputs[0].datatype, "FP32")
        self.assertEqual(list(meta.inputs[0].shape), [-1, 1024])
        self.assertEqual(list(meta.outputs[0].shape), [-1, 1024])

    def test_mlp_matches_python_torch(self):
        import torch
        model = torch.jit.load(os.path.join(ARGS.models, "mlp", "1", "model.pt"))
        x = np.random.default_rng(5).standard_normal((4, 64)).astype(np.float32)
        resp = self.infer("mlp", x)
        self.assertEqual(list(resp.outputs[0].shape), [4, 10])
        got = np.frombuffer(resp.raw_output_contents[0], dtype="<f4").reshape(4, 10)
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got.sum(axis=1), np.ones(4), rtol=1e-5)

    def test_typed_contents(self):
        x = np.arange(16, dtype=np.float32)
        inp = pb.ModelInferRequest.InferInputTensor(name="INPUT0", datatype="FP32", shape=[1, 16])
        inp.contents.fp32_contents.extend(x.tolist())
        resp = self.stub.ModelInfer(pb.ModelInferRequest(model_name="add_one", inputs=[inp]),
                                    metadata=[("authorization", f"Bearer {GLOBEX_KEY}")])
        np.testing.assert_array_equal(
            np.frombuffer(resp.raw_output_contents[0], dtype="<f4"), x + 1)

    def test_error_codes(self):
        x = np.zeros((1, 16), dtype=np.float32)
        with self.assertRaises(grpc.RpcError) as e:
            self.infer("add_one", x, key="nope")
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        with self.assertRaises(grpc.RpcError) as e:
            self.infer("mlp", np.zeros((1, 64), dtype=np.float32), key=GLOBEX_KEY)
        self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        with self.assertRaises(grpc.RpcError) as e:
            self.infer("add_one", np.zeros((1, 15), dtype=np.float32))
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("dimension 1 is 15, expected 16", e.exception.details())

    def test_unserved_rpc_is_unimplemented(self):
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="mlp"))
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNIMPLEMENTED)

    def test_grpc_health_and_reflection(self):
        # grpc.health.v1.Health/Check with an empty HealthCheckRequest; the
        # response's field 1 (status) is SERVING = 1.
        check = self.channel.unary_unary("/grpc.health.v1.Health/Check",
                                         request_serializer=lambda b: b,
                                         response_deserializer=lambda b: b)
        self.assertEqual(check(b""), b"\x08\x01")
        # Server reflection: list_services (field 7) names our service.
        reflect = self.channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=lambda b: b, response_deserializer=lambda b: b)
        replies = list(reflect(iter([b"\x3a\x00"])))
        self.assertIn(b"inference.GRPCInferenceService", replies[0])

    def test_http_probes(self):
        import urllib.request
        port = self.daemon.ports["http_port"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as r:
            self.assertEqual(r.status, 200)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz") as r:
            self.assertEqual(r.status, 200)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--fairserve", required=True)
    parser.add_argument("--models", required=True)
    parser.add_argument("--proto-dir", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
