"""Wire compatibility: talk to the real daemon from Python grpcio (a different
gRPC implementation than the server's), with stubs generated from proto/ at
test time, exactly as a KServe or Triton user would.

Run by ctest with Debian's /usr/bin/python3 (python3-grpcio, python3-protobuf,
python3-torch).
"""
import os
import shutil
import sys
import tempfile
import unittest

import grpc
import numpy as np

import fairserve_testlib as lib
from fairserve_testlib import ACME_KEY, GLOBEX_KEY


class PythonClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="fairserve-py-")
        global pb, pb_grpc
        pb, pb_grpc = lib.generate_stubs(lib.ARGS.proto_dir, os.path.join(cls.tmp, "stubs"))
        cls.daemon = lib.Daemon(lib.ARGS.fairserve, cls.tmp, lib.default_config(lib.ARGS.models))
        cls.channel = lib.channel(cls.daemon.grpc_address)
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
        model = torch.jit.load(os.path.join(lib.ARGS.models, "mlp", "1", "model.pt"))
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
        # Triton's shared-memory RPCs are not served (no proto here: raw bytes).
        status = self.channel.unary_unary(
            "/inference.GRPCInferenceService/SystemSharedMemoryStatus",
            request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with self.assertRaises(grpc.RpcError) as e:
            status(b"", metadata=[("x-api-key", ACME_KEY)])
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNIMPLEMENTED)

    def test_model_statistics(self):
        for _ in range(3):
            self.infer("mlp", np.zeros((2, 64), dtype=np.float32))
        # Another model with statistics too: a named request returns only its own.
        self.infer("add_one", np.zeros((1, 16), dtype=np.float32), key=GLOBEX_KEY)
        stats = self.stub.ModelStatistics(pb.ModelStatisticsRequest(name="mlp"),
                                          metadata=[("x-api-key", ACME_KEY)])
        self.assertEqual(len(stats.model_stats), 1)
        s = stats.model_stats[0]
        self.assertEqual((s.name, s.version), ("mlp", "1"))
        self.assertGreaterEqual(s.inference_count, 6)
        self.assertGreaterEqual(s.inference_stats.success.count, 3)
        self.assertGreater(s.inference_stats.compute_infer.ns, 0)
        self.assertGreater(s.memory_usage[0].byte_size, 0)
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.ModelStatistics(pb.ModelStatisticsRequest(name="mlp"),
                                      metadata=[("x-api-key", GLOBEX_KEY)])
        self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        # All models: globex sees only those it may use (add_one), never mlp's.
        everything = self.stub.ModelStatistics(pb.ModelStatisticsRequest(),
                                               metadata=[("x-api-key", GLOBEX_KEY)])
        self.assertEqual(sorted({s.name for s in everything.model_stats}), ["add_one"])
        # An unknown version is NOT_FOUND.
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.ModelStatistics(pb.ModelStatisticsRequest(name="mlp", version="2"),
                                      metadata=[("x-api-key", ACME_KEY)])
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_repository_index_and_admin_only_load(self):
        index = self.stub.RepositoryIndex(pb.RepositoryIndexRequest(),
                                          metadata=[("x-api-key", GLOBEX_KEY)])
        self.assertEqual([m.name for m in index.models], ["add_one"])  # what globex may use
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="mlp"),
                                          metadata=[("x-api-key", ACME_KEY)])
        self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED)

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


class DrainTest(unittest.TestCase):
    """On SIGTERM, readiness goes false on both probes before the port closes,
    so load balancers and Kubernetes stop sending while calls finish."""

    def test_readyz_503_and_health_not_serving_during_drain(self):
        import signal
        import time
        import urllib.error
        import urllib.request
        tmp = tempfile.mkdtemp(prefix="fairserve-drain-")
        config = lib.default_config(lib.ARGS.models).replace(
            "data_dir: data}", "data_dir: data, shutdown_grace_s: 3, drain_timeout_s: 5}")
        daemon = lib.Daemon(lib.ARGS.fairserve, tmp, config)
        channel = lib.channel(daemon.grpc_address)
        check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                    request_serializer=lambda b: b,
                                    response_deserializer=lambda b: b)
        try:
            self.assertEqual(check(b"", timeout=10), b"\x08\x01")  # SERVING
            daemon.proc.send_signal(signal.SIGTERM)
            readyz, health = None, None
            deadline = time.time() + 2.5  # within shutdown_grace_s
            while time.time() < deadline and (readyz != 503 or health != b"\x08\x02"):
                try:
                    with urllib.request.urlopen(daemon.http_url + "/readyz", timeout=2) as r:
                        readyz = r.status
                except urllib.error.HTTPError as e:
                    readyz = e.code
                health = check(b"", timeout=2)
                time.sleep(0.05)
            self.assertEqual(readyz, 503)
            self.assertEqual(health, b"\x08\x02")  # NOT_SERVING
            # Liveness stays up: the process is healthy, only draining.
            with urllib.request.urlopen(daemon.http_url + "/healthz", timeout=2) as r:
                self.assertEqual(r.status, 200)
            # The drain ends by itself (a second SIGTERM would cut it short).
            daemon.proc.wait(timeout=30)
        finally:
            channel.close()
            code = daemon.stop()
            shutil.rmtree(tmp, ignore_errors=True)
        self.assertEqual(code, 0)


if __name__ == "__main__":
    lib.main()
