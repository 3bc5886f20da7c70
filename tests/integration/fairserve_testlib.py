"""Helpers for the Python integration tests: start the real daemon on port 0,
generate Open Inference Protocol stubs from proto/ at test time, free ports."""
import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest

import grpc

# The arguments ctest passes (--fairserve, --models, --proto-dir, ...), set by main().
ARGS = None

ACME_KEY = "acme-demo-key"
GLOBEX_KEY = "globex-demo-key"


def sha256_key(key):
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def generate_stubs(proto_dir, out_dir):
    """protoc + grpc_python_plugin into out_dir; returns (pb2, pb2_grpc)."""
    os.makedirs(out_dir, exist_ok=True)
    subprocess.check_call([
        "protoc", f"--proto_path={proto_dir}", f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        "--plugin=protoc-gen-grpc_python=" + shutil.which("grpc_python_plugin"),
        *(os.path.join(proto_dir, p) for p in (
            "inference/grpc_service.proto", "inference/model_config.proto",
            "google/rpc/status.proto", "google/rpc/error_details.proto"))])
    sys.path.insert(0, out_dir)
    from inference import grpc_service_pb2, grpc_service_pb2_grpc
    return grpc_service_pb2, grpc_service_pb2_grpc


# Every test call carries a deadline, so a stall fails in seconds instead of
# at ctest's timeout. A call that sets its own timeout keeps it.
CALL_TIMEOUT_S = 30


class _DefaultTimeout(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                      grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    def _details(self, details):
        if details.timeout is not None:
            return details
        return _CallDetails(details.method, CALL_TIMEOUT_S, details.metadata,
                            details.credentials, getattr(details, "wait_for_ready", None),
                            getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, requests):
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._details(details), requests)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, method, timeout, metadata, credentials, wait_for_ready, compression):
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready
        self.compression = compression


def channel(address):
    """An insecure channel whose calls time out after CALL_TIMEOUT_S unless
    they set their own timeout."""
    return grpc.intercept_channel(grpc.insecure_channel(address), _DefaultTimeout())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_config(models, extra_tenants=""):
    return f"""server: {{listen_address: 127.0.0.1, grpc_port: 0, http_port: 0, data_dir: data}}
model_repository: {models}
scheduler: {{workers: 1, intra_op_threads: 1}}
tenants:
  - id: acme
    api_keys: ["{sha256_key(ACME_KEY)}"]
  - id: globex
    api_keys: ["{sha256_key(GLOBEX_KEY)}"]
    models: [add_one]
{extra_tenants}"""


class Daemon:
    """The real fairserve binary, started with `config_text` in `workdir`."""

    def __init__(self, fairserve, workdir, config_text, args=()):
        self.workdir = workdir
        config = os.path.join(workdir, "config.yaml")
        with open(config, "w") as f:
            f.write(config_text)
        ready = os.path.join(workdir, "ready.json")
        if os.path.exists(ready):
            os.remove(ready)
        self.log_path = os.path.join(workdir, "daemon.log")
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [fairserve, "--config", config, "--ready-file", ready, *args],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("daemon did not start:\n" + self.read_log())
            time.sleep(0.02)
        with open(ready) as f:
            self.ports = json.load(f)

    def read_log(self):
        with open(self.log_path) as f:
            return f.read()

    @property
    def grpc_address(self):
        return f"127.0.0.1:{self.ports['grpc_port']}"

    @property
    def http_url(self):
        return f"http://127.0.0.1:{self.ports['http_port']}"

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self.log.close()
        return code


def main(extra_args=()):
    """Parses the arguments ctest passes, then runs the calling script's tests."""
    global ARGS
    parser = argparse.ArgumentParser()
    for name in ("--fairserve", "--models", "--proto-dir", *extra_args):
        parser.add_argument(name, required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(module="__main__", argv=[sys.argv[0]] + rest, verbosity=2)
