"""A tiny Open Inference Protocol client for the demo (Debian's python3-grpcio).

    /usr/bin/python3 scripts/demo_client.py --key acme-demo-key --model mlp
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import grpc
import numpy as np

WIDTH = {"add_one": 16, "mlp": 64, "mlp_large": 1024}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--address", default="127.0.0.1:8001")
    p.add_argument("--key", default="acme-demo-key")
    p.add_argument("--model", default="mlp", choices=sorted(WIDTH))
    p.add_argument("--batch", type=int, default=2)
    args = p.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    stubs = tempfile.mkdtemp(prefix="fairserve-stubs-")
    subprocess.check_call([
        "protoc", f"--proto_path={root}/proto", f"--python_out={stubs}",
        f"--grpc_python_out={stubs}",
        "--plugin=protoc-gen-grpc_python=" + shutil.which("grpc_python_plugin"),
        f"{root}/proto/inference/grpc_service.proto"])
    sys.path.insert(0, stubs)
    from inference import grpc_service_pb2 as pb, grpc_service_pb2_grpc as pbg

    stub = pbg.GRPCInferenceServiceStub(grpc.insecure_channel(args.address))
    x = np.random.default_rng(0).standard_normal((args.batch, WIDTH[args.model])).astype("<f4")
    req = pb.ModelInferRequest(
        model_name=args.model,
        inputs=[pb.ModelInferRequest.InferInputTensor(name="INPUT0", datatype="FP32",
                                                      shape=list(x.shape))],
        raw_input_contents=[x.tobytes()])
    start = time.perf_counter()
    resp = stub.ModelInfer(req, metadata=[("authorization", f"Bearer {args.key}")], timeout=10)
    ms = (time.perf_counter() - start) * 1e3
    out = np.frombuffer(resp.raw_output_contents[0], dtype="<f4").reshape(list(resp.outputs[0].shape))
    print(f"{resp.model_name} v{resp.model_version}: {resp.outputs[0].name} "
          f"{list(resp.outputs[0].shape)} in {ms:.2f} ms")
    print(np.array2string(out[:, :6], precision=4))
    shutil.rmtree(stubs, ignore_errors=True)


if __name__ == "__main__":
    main()
