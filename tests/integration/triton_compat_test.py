"""What Triton and KServe users' tools call besides ModelInfer, against the
real daemon from Python grpcio and requests: ModelConfig (gRPC and REST) for
every model, readiness of a model that loads on first use, the extensions
ServerMetadata lists, the standard retry hint (google.rpc.RetryInfo) on a
rate-limit refusal, REST statistics and repository calls, and
ModelStreamInfer: 1000 requests on one stream, some refused mid-stream, the
stream surviving, and the ledger billing exactly the OK answers.

Run by ctest with Debian's /usr/bin/python3.
"""
import json
import os
import shutil
import sqlite3
import tempfile
import unittest

import grpc
import numpy as np
import requests

import fairserve_testlib as lib
from fairserve_testlib import ACME_KEY, GLOBEX_KEY

ADMIN_KEY = "admin-demo-key"
LIMITED_KEY = "limited-demo-key"
STREAM_KEY = "streamer-demo-key"
DEMO_MODELS = ("add_one", "mlp", "mlp_large", "two_in_out")
INVALID = {10, 20, 30}


def add_one_request(rid, cols=16):
    x = np.full((1, cols), float(rid % 7), dtype=np.float32)
    return pb.ModelInferRequest(
        model_name="add_one", id=str(rid),
        inputs=[pb.ModelInferRequest.InferInputTensor(name="INPUT0", datatype="FP32",
                                                      shape=[1, cols])],
        raw_input_contents=[x.tobytes()])


def start_daemon(tmp, extra_tenants):
    config = lib.default_config(lib.ARGS.models, extra_tenants).replace(
        "data_dir: data}",
        f"data_dir: data, admin_api_keys: [\"{lib.sha256_key(ADMIN_KEY)}\"]}}")
    return lib.Daemon(lib.ARGS.fairserve, tmp, config)


class TritonCompatTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="fairserve-triton-")
        global pb, pb_grpc, mc, rpc_status, rpc_details
        pb, pb_grpc = lib.generate_stubs(lib.ARGS.proto_dir, os.path.join(cls.tmp, "stubs"))
        from google.rpc import error_details_pb2, status_pb2
        from inference import model_config_pb2
        mc, rpc_status, rpc_details = model_config_pb2, status_pb2, error_details_pb2
        limited = (f"  - id: limited\n    api_keys: [\"{lib.sha256_key(LIMITED_KEY)}\"]\n"
                   "    models: [add_one]\n"
                   "    rate_limit: {requests_per_minute: 1, burst: 1}\n")
        cls.daemon = start_daemon(cls.tmp, limited)
        cls.channel = lib.channel(cls.daemon.grpc_address)
        cls.stub = pb_grpc.GRPCInferenceServiceStub(cls.channel)
        cls.url = cls.daemon.http_url
        cls.http = requests.Session()

    @classmethod
    def tearDownClass(cls):
        cls.http.close()
        cls.channel.close()
        code = cls.daemon.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert code == 0, f"daemon exited {code}"

    def get(self, path, key=ACME_KEY):
        return self.http.get(self.url + path, headers={"x-api-key": key}, timeout=30)

    def test_model_config_for_every_demo_model_over_grpc_and_rest(self):
        for name in DEMO_MODELS:
            with self.subTest(name):
                meta = self.stub.ModelMetadata(pb.ModelMetadataRequest(name=name),
                                               metadata=[("x-api-key", ACME_KEY)])
                config = self.stub.ModelConfig(pb.ModelConfigRequest(name=name),
                                               metadata=[("x-api-key", ACME_KEY)]).config
                self.assertEqual(config.name, name)
                self.assertEqual(config.platform, "pytorch_libtorch")
                batched = config.max_batch_size > 0
                self.assertEqual(batched, config.HasField("dynamic_batching"))
                # dims leave out the batch dimension when the model batches.
                for tensors, specs in ((meta.inputs, config.input),
                                       (meta.outputs, config.output)):
                    self.assertEqual([t.name for t in tensors], [s.name for s in specs])
                    for t, s in zip(tensors, specs):
                        self.assertEqual(mc.DataType.Name(s.data_type), "TYPE_" + t.datatype)
                        self.assertEqual(list(s.dims), list(t.shape)[1 if batched else 0:])
                rest = self.get(f"/v2/models/{name}/config")
                self.assertEqual(rest.status_code, 200, rest.text)
                body = rest.json()
                self.assertEqual(body["name"], name)
                self.assertEqual(body["max_batch_size"], config.max_batch_size)
                self.assertEqual(body["input"][0]["dims"], list(config.input[0].dims))
                self.assertEqual(body["input"][0]["data_type"],
                                 mc.DataType.Name(config.input[0].data_type))
        add_one = self.stub.ModelConfig(pb.ModelConfigRequest(name="add_one"),
                                        metadata=[("x-api-key", ACME_KEY)]).config
        self.assertEqual(add_one.max_batch_size, 64)
        self.assertEqual(list(add_one.input[0].dims), [16])
        self.assertEqual(add_one.input[0].data_type, mc.TYPE_FP32)
        self.assertEqual(add_one.version_policy.WhichOneof("policy_choice"), "all")

    def test_model_config_errors(self):
        cases = [(ACME_KEY, "no_such_model", grpc.StatusCode.NOT_FOUND),
                 (GLOBEX_KEY, "mlp", grpc.StatusCode.PERMISSION_DENIED),
                 ("wrong", "mlp", grpc.StatusCode.UNAUTHENTICATED)]
        for key, name, code in cases:
            with self.subTest(name=name, code=code):
                with self.assertRaises(grpc.RpcError) as e:
                    self.stub.ModelConfig(pb.ModelConfigRequest(name=name),
                                          metadata=[("x-api-key", key)])
                self.assertEqual(e.exception.code(), code)
        self.assertEqual(self.get("/v2/models/mlp/config", key=GLOBEX_KEY).status_code, 403)
        self.assertEqual(self.get("/v2/models/mlp/versions/9/config").status_code, 404)

    def test_a_model_that_loads_on_first_use_is_ready(self):
        # Nothing has used mlp_large in this daemon: it is not resident, yet
        # a client that checks readiness before sending must see true.
        index = self.stub.RepositoryIndex(pb.RepositoryIndexRequest(),
                                          metadata=[("x-api-key", ADMIN_KEY)])
        states = {m.name: m.state for m in index.models}
        self.assertEqual(states["mlp_large"], "UNLOADED")
        ready = self.stub.ModelReady(pb.ModelReadyRequest(name="mlp_large"),
                                     metadata=[("x-api-key", ACME_KEY)])
        self.assertTrue(ready.ready)
        self.assertTrue(self.get("/v2/models/mlp_large/ready").json()["ready"])
        # A model whose file does not load is not ready once its load failed.
        md = [("x-api-key", ACME_KEY)]
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.ModelInfer(pb.ModelInferRequest(model_name="corrupt"), metadata=md)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertFalse(self.stub.ModelReady(pb.ModelReadyRequest(name="corrupt"),
                                              metadata=md).ready)

    def test_server_metadata_lists_the_served_extensions(self):
        grpc_meta = self.stub.ServerMetadata(pb.ServerMetadataRequest())
        rest_meta = self.http.get(self.url + "/v2", timeout=30).json()
        self.assertEqual(list(grpc_meta.extensions), rest_meta["extensions"])
        for ext in ("model_configuration", "model_repository", "statistics",
                    "binary_tensor_data"):
            self.assertIn(ext, rest_meta["extensions"])

    def test_rate_limit_refusal_carries_retry_info(self):
        md = [("x-api-key", LIMITED_KEY)]
        self.stub.ModelInfer(add_one_request(1), metadata=md)  # the burst of 1
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.ModelInfer(add_one_request(2), metadata=md)
        err = e.exception
        self.assertEqual(err.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        trailers = dict(err.trailing_metadata())
        self.assertGreaterEqual(int(trailers["retry-after-ms"]), 1)
        status = rpc_status.Status.FromString(trailers["grpc-status-details-bin"])
        self.assertEqual(status.code, grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
        self.assertEqual(status.message, err.details())
        retry = rpc_details.RetryInfo()
        self.assertTrue(status.details[0].Unpack(retry))
        delay_ms = retry.retry_delay.seconds * 1000 + retry.retry_delay.nanos / 1e6
        # One request per minute: the next one is tens of seconds away.
        self.assertGreater(delay_ms, 1000)
        self.assertLessEqual(delay_ms, int(trailers["retry-after-ms"]))

    def test_rest_statistics(self):
        self.stub.ModelInfer(add_one_request(3), metadata=[("x-api-key", ACME_KEY)])
        # mlp has statistics too: neither a request for add_one's nor globex's
        # request for all models may show them.
        mlp = pb.ModelInferRequest(
            model_name="mlp",
            inputs=[pb.ModelInferRequest.InferInputTensor(name="INPUT0", datatype="FP32",
                                                          shape=[1, 64])],
            raw_input_contents=[np.zeros((1, 64), dtype=np.float32).tobytes()])
        self.stub.ModelInfer(mlp, metadata=[("x-api-key", ACME_KEY)])
        one = self.get("/v2/models/add_one/stats")
        self.assertEqual(one.status_code, 200, one.text)
        stats = one.json()["model_stats"]
        self.assertEqual([(s["name"], s["version"]) for s in stats], [("add_one", "1")])
        self.assertGreaterEqual(stats[0]["inference_count"], 1)
        self.assertIsInstance(stats[0]["inference_stats"]["success"]["count"], int)
        every = self.get("/v2/models/stats", key=GLOBEX_KEY).json()["model_stats"]
        self.assertEqual({s["name"] for s in every}, {"add_one"})  # what globex may use
        self.assertEqual(self.get("/v2/models/mlp/stats", key=GLOBEX_KEY).status_code, 403)

    def test_rest_repository_index_load_and_unload(self):
        post = lambda path, key, body="{}": self.http.post(  # noqa: E731
            self.url + path, data=body, headers={"x-api-key": key}, timeout=60)
        index = post("/v2/repository/index", GLOBEX_KEY)
        self.assertEqual(index.status_code, 200, index.text)
        self.assertEqual([m["name"] for m in index.json()], ["add_one"])
        self.assertEqual(post("/v2/repository/index", ACME_KEY, "{bad").status_code, 400)
        refused = post("/v2/repository/models/mlp/load", ACME_KEY)
        self.assertEqual(refused.status_code, 403)
        self.assertIn("admin key", refused.json()["error"])
        self.assertEqual(post("/v2/repository/models/mlp/load", ADMIN_KEY).status_code, 200)
        ready = post("/v2/repository/index", ADMIN_KEY, json.dumps({"ready": True})).json()
        self.assertIn({"name": "mlp", "version": "1", "state": "READY", "reason": ""}, ready)
        self.assertEqual(post("/v2/repository/models/mlp/unload", ADMIN_KEY).status_code, 200)
        after = post("/v2/repository/index", ADMIN_KEY, json.dumps({"ready": True})).json()
        self.assertNotIn("mlp", [m["name"] for m in after])
        self.assertEqual(post("/v2/repository/models/nope/load", ADMIN_KEY).status_code, 404)


class StreamTest(unittest.TestCase):
    """ModelStreamInfer: each request on the stream is a full InferCall."""

    def test_thousand_requests_on_one_stream_some_refused(self):
        tmp = tempfile.mkdtemp(prefix="fairserve-stream-")
        global pb, pb_grpc
        pb, pb_grpc = lib.generate_stubs(lib.ARGS.proto_dir, os.path.join(tmp, "stubs"))
        # 100 requests/s after a burst of 50: a stream of 1000 sent at once
        # is refused part of the way, whatever this machine's speed.
        streamer = (f"  - id: streamer\n    api_keys: [\"{lib.sha256_key(STREAM_KEY)}\"]\n"
                    "    models: [add_one]\n"
                    "    rate_limit: {requests_per_minute: 6000, burst: 50}\n")
        daemon = start_daemon(tmp, streamer)
        channel = lib.channel(daemon.grpc_address)
        try:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)

            def requests_():
                for i in range(1000):
                    # Three requests within the burst do not fit the model.
                    yield add_one_request(i, cols=15 if i in INVALID else 16)

            responses = list(stub.ModelStreamInfer(
                requests_(), metadata=[("authorization", f"Bearer {STREAM_KEY}")], timeout=120))
            self.assertEqual(len(responses), 1000)
            ids = sorted(int(r.infer_response.id) for r in responses)
            self.assertEqual(ids, list(range(1000)))
            ok = [r for r in responses if not r.error_message]
            refused = [r for r in responses if "rate limit" in r.error_message]
            invalid = [r for r in responses if "dimension 1 is 15" in r.error_message]
            self.assertEqual(len(ok) + len(refused) + len(invalid), 1000,
                             {r.error_message for r in responses})
            self.assertGreaterEqual(len(ok), 50)
            self.assertGreater(len(refused), 0)
            self.assertEqual(sorted(int(r.infer_response.id) for r in invalid), sorted(INVALID))
            for r in refused:
                params = r.infer_response.parameters
                self.assertEqual(params["error_code"].string_param, "RESOURCE_EXHAUSTED")
                self.assertGreaterEqual(params["retry_after_ms"].int64_param, 1)
            for r in ok:
                x = float(int(r.infer_response.id) % 7)
                out = np.frombuffer(r.infer_response.raw_output_contents[0], dtype="<f4")
                np.testing.assert_array_equal(out, np.full(16, x + 1, dtype=np.float32))
            # The stream is still usable after its refusals: a unary call of
            # the same tenant on the same channel is served or refused by
            # its rate, not broken.
        finally:
            channel.close()
            code = daemon.stop()
        self.assertEqual(code, 0)
        db = sqlite3.connect(os.path.join(tmp, "data", "usage.sqlite"))
        try:
            billed = db.execute("SELECT COALESCE(SUM(requests), 0) FROM usage "
                                "WHERE tenant_id = 'streamer' AND status = 'ok'").fetchone()[0]
            others = db.execute("SELECT COALESCE(SUM(requests), 0) FROM usage "
                                "WHERE tenant_id = 'streamer' AND status != 'ok'").fetchone()[0]
        finally:
            db.close()
        self.assertEqual(billed, len(ok))
        self.assertEqual(others, 0)  # refusals and invalid requests cost nothing
        shutil.rmtree(tmp, ignore_errors=True)


TRITON_CONFIG = """
platform: "pytorch_libtorch"
max_batch_size: 8
input [ {{ name: "INPUT__0" data_type: TYPE_FP32 dims: [ 16 ] }} ]
output [ {{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 16 ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: 100 }}
{extra}
"""


class TritonRepositoryTest(unittest.TestCase):
    """A Triton-layout repository (config.pbtxt, INPUT__0 names, version
    policies, default_model_filename) served as it is, and changed while
    the daemon runs."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="fairserve-tritonrepo-")
        global pb, pb_grpc
        pb, pb_grpc = lib.generate_stubs(lib.ARGS.proto_dir, os.path.join(self.tmp, "stubs"))
        self.repo = os.path.join(self.tmp, "repo")
        self.add_model("latest_one", [1, 2, 3])  # Triton's default: version 3 only
        self.add_model("pinned", [1, 2], "version_policy: { specific: { versions: [ 1 ] } }")
        self.add_model("two_latest", [1, 2, 5], "version_policy: { latest: { num_versions: 2 } }")
        self.add_model("renamed_file", [1], 'default_model_filename: "add.pt"', file="add.pt")
        self.add_model("broken", [1], "optimization { priority: PRIORITY_MAX }")
        self.add_model("add_one", [1])  # the default tenants name it
        config = lib.default_config(self.repo).replace(
            "data_dir: data}",
            f"data_dir: data, admin_api_keys: [\"{lib.sha256_key(ADMIN_KEY)}\"]}}")
        self.daemon = lib.Daemon(lib.ARGS.fairserve, self.tmp, config)
        self.channel = lib.channel(self.daemon.grpc_address)
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)

    def tearDown(self):
        self.channel.close()
        code = self.daemon.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.assertEqual(code, 0)

    def add_model(self, name, versions, extra="", file="model.pt"):
        source = os.path.join(lib.ARGS.models, "add_one", "1", "model.pt")
        os.makedirs(os.path.join(self.repo, name), exist_ok=True)
        with open(os.path.join(self.repo, name, "config.pbtxt"), "w") as f:
            f.write(TRITON_CONFIG.format(extra=extra))
        for v in versions:
            os.makedirs(os.path.join(self.repo, name, str(v)), exist_ok=True)
            shutil.copy(source, os.path.join(self.repo, name, str(v), file))

    def infer(self, model, version=""):
        x = np.arange(16, dtype=np.float32).reshape(1, 16)
        req = pb.ModelInferRequest(
            model_name=model, model_version=version,
            inputs=[pb.ModelInferRequest.InferInputTensor(name="INPUT__0", datatype="FP32",
                                                          shape=[1, 16])],
            raw_input_contents=[x.tobytes()])
        resp = self.stub.ModelInfer(req, metadata=[("x-api-key", ACME_KEY)])
        self.assertEqual(resp.outputs[0].name, "OUTPUT__0")
        np.testing.assert_array_equal(np.frombuffer(resp.raw_output_contents[0], dtype="<f4"),
                                      x.reshape(-1) + 1)
        return resp

    def versions(self, model):
        return list(self.stub.ModelMetadata(pb.ModelMetadataRequest(name=model),
                                            metadata=[("x-api-key", ACME_KEY)]).versions)

    def wait_for(self, model, deadline_s=20):
        import time
        end = time.time() + deadline_s
        while True:
            try:
                return self.versions(model)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND or time.time() > end:
                    raise
                time.sleep(0.1)

    def test_version_policies_and_names(self):
        self.assertEqual(self.versions("latest_one"), ["3"])
        self.assertEqual(self.versions("pinned"), ["1"])
        self.assertEqual(self.versions("two_latest"), ["2", "5"])
        self.assertEqual(self.infer("latest_one").model_version, "3")
        self.assertEqual(self.infer("two_latest", "2").model_version, "2")
        self.assertEqual(self.infer("two_latest").model_version, "5")
        # Statistics per version: both versions ran; a version filter keeps one.
        stats = lambda version: [(s.name, s.version) for s in self.stub.ModelStatistics(  # noqa: E731
            pb.ModelStatisticsRequest(name="two_latest", version=version),
            metadata=[("x-api-key", ACME_KEY)]).model_stats]
        self.assertEqual(stats(""), [("two_latest", "2"), ("two_latest", "5")])
        self.assertEqual(stats("2"), [("two_latest", "2")])
        self.infer("renamed_file")
        with self.assertRaises(grpc.RpcError) as e:
            self.infer("latest_one", "1")
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
        config = self.stub.ModelConfig(pb.ModelConfigRequest(name="two_latest"),
                                       metadata=[("x-api-key", ACME_KEY)]).config
        self.assertEqual(config.version_policy.latest.num_versions, 2)
        self.assertEqual(list(config.input[0].dims), [16])
        self.assertEqual(config.input[0].name, "INPUT__0")
        self.assertEqual(config.dynamic_batching.max_queue_delay_microseconds, 100)
        index = self.stub.RepositoryIndex(pb.RepositoryIndexRequest(),
                                          metadata=[("x-api-key", ADMIN_KEY)])
        broken = [m for m in index.models if m.name == "broken"][0]
        self.assertEqual(broken.state, "UNAVAILABLE")
        self.assertIn("broken/config.pbtxt:7:14:", broken.reason)
        self.assertIn('no field named "optimization"', broken.reason)

    def test_models_added_while_running_are_served_after_a_reload(self):
        import signal
        with self.assertRaises(grpc.RpcError) as e:
            self.versions("added_later")
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
        self.add_model("added_later", [1])
        self.add_model("latest_one", [4])  # a new version of a served model
        self.daemon.proc.send_signal(signal.SIGHUP)
        self.assertEqual(self.wait_for("added_later"), ["1"])
        self.infer("added_later")
        self.assertEqual(self.versions("latest_one"), ["4"])
        self.assertEqual(self.infer("latest_one").model_version, "4")
        # RepositoryModelLoad rescans too: a directory added since is loaded by name.
        self.add_model("loaded_by_name", [1])
        self.stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="loaded_by_name"),
                                      metadata=[("x-api-key", ADMIN_KEY)])
        index = self.stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True),
                                          metadata=[("x-api-key", ADMIN_KEY)])
        self.assertIn("loaded_by_name", [m.name for m in index.models])
        # A removed model goes at the next rescan.
        shutil.rmtree(os.path.join(self.repo, "pinned"))
        self.daemon.proc.send_signal(signal.SIGHUP)
        import time
        end = time.time() + 20
        while time.time() < end:
            try:
                self.versions("pinned")
                time.sleep(0.1)
            except grpc.RpcError as e:
                self.assertEqual(e.code(), grpc.StatusCode.NOT_FOUND)
                break
        else:
            self.fail("removed model still served")


if __name__ == "__main__":
    lib.main()
