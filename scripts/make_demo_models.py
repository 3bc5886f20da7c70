"""Writes fairserve's demo model repository: TorchScript models made here.

Run with Debian's /usr/bin/python3 (it has python3-torch); see
scripts/make-demo-models.sh. Weights come from a fixed seed, so every run
writes the same numbers.
"""
import os
import sys

import torch


class AddOne(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1.0


class Faulty(torch.nn.Module):
    """Fails for any sample holding a negative value: a model bug that only
    some requests trigger."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x < 0).any()):
            raise ValueError("faulty model: negative input")
        return x * 2.0


class MemoryHog(torch.nn.Module):
    """Asks for 16 TiB, on the input's device, when an input exceeds 1000: an
    out-of-memory that only some requests trigger."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x > 1000).any()):
            return x + torch.zeros(1 << 42, device=x.device)[0]
        return x * 2.0


class WrongDtype(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.int64)


class WrongShape(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :3]


class TwoInOut(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor):
        return a + b.to(torch.float32), (a * 2.0).to(torch.float64)


class Slow(torch.nn.Module):
    """Multiplies 256x256 matrices x[0][0] times before answering x: tests use
    it to keep a worker busy for a while they choose."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = int(x[0, 0].item())
        y = torch.ones(256, 256) / 256.0
        for _ in range(n):
            y = torch.mm(y, y)
        return x + y[0, 0] * 0.0


class Mlp(torch.nn.Module):
    def __init__(self, dims, softmax):
        super().__init__()
        self.layers = torch.nn.ModuleList(
            [torch.nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])])
        self.softmax = softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(self.layers)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i + 1 < n:
                x = torch.relu(x)
        if self.softmax:
            x = torch.softmax(x, dim=1)
        return x


CONFIG = """\
name: {name}
platform: pytorch_libtorch
max_batch_size: {max_batch}
max_queue_delay_us: {delay}
inputs:
  - {{name: INPUT0, datatype: FP32, shape: [-1, {din}]}}
outputs:
  - {{name: OUTPUT0, datatype: FP32, shape: [-1, {dout}]}}
"""


def write(root, name, module, din, dout, max_batch, delay):
    model_dir = os.path.join(root, name)
    os.makedirs(os.path.join(model_dir, "1"), exist_ok=True)
    scripted = torch.jit.script(module.eval())
    path = os.path.join(model_dir, "1", "model.pt")
    tmp = path + ".tmp"
    scripted.save(tmp)
    os.replace(tmp, path)
    with open(os.path.join(model_dir, "config.yaml"), "w") as f:
        f.write(CONFIG.format(name=name, max_batch=max_batch, delay=delay, din=din, dout=dout))
    print(f"  {name}: {path}")


TWO_IN_OUT_CONFIG = """\
name: two_in_out
max_batch_size: 8
inputs:
  - {name: A, datatype: FP32, shape: [-1, 4]}
  - {name: B, datatype: INT32, shape: [-1, 4]}
outputs:
  - {name: SUM, datatype: FP32, shape: [-1, 4]}
  - {name: DOUBLE, datatype: FP64, shape: [-1, 4]}
"""


def write_test_models(root):
    """Models that only tests use: faulty ones and a multi-tensor one."""
    write(root, "faulty", Faulty(), 4, 4, max_batch=8, delay=0)
    write(root, "memory_hog", MemoryHog(), 4, 4, max_batch=8, delay=0)
    write(root, "wrong_dtype", WrongDtype(), 4, 4, max_batch=8, delay=0)
    write(root, "wrong_shape", WrongShape(), 4, 4, max_batch=8, delay=0)
    write(root, "two_in_out", TwoInOut(), 4, 4, max_batch=8, delay=0)
    write(root, "slow", Slow(), 4, 4, max_batch=8, delay=0)
    with open(os.path.join(root, "two_in_out", "config.yaml"), "w") as f:
        f.write(TWO_IN_OUT_CONFIG)
    # A model whose file is not TorchScript at all.
    os.makedirs(os.path.join(root, "corrupt", "1"), exist_ok=True)
    with open(os.path.join(root, "corrupt", "1", "model.pt"), "wb") as f:
        f.write(b"this is not a zip archive")
    with open(os.path.join(root, "corrupt", "config.yaml"), "w") as f:
        f.write(CONFIG.format(name="corrupt", max_batch=8, delay=0, din=4, dout=4))
    # A model whose config is broken.
    os.makedirs(os.path.join(root, "bad_config", "1"), exist_ok=True)
    with open(os.path.join(root, "bad_config", "config.yaml"), "w") as f:
        f.write("max_batch_size: many\ninputs: []\n")
    print("  test models: faulty, memory_hog, wrong_dtype, wrong_shape, two_in_out, slow, corrupt, "
          "bad_config")


def main():
    args = [a for a in sys.argv[1:] if a != "--with-test-models"]
    if len(args) != 1:
        print("usage: make_demo_models.py [--with-test-models] DIR", file=sys.stderr)
        return 2
    root = args[0]
    torch.manual_seed(20261127)
    write(root, "add_one", AddOne(), 16, 16, max_batch=64, delay=0)
    write(root, "mlp", Mlp([64, 128, 10], softmax=True), 64, 10, max_batch=32, delay=500)
    write(root, "mlp_large", Mlp([1024, 1024, 1024, 1024, 1024], softmax=False), 1024, 1024,
          max_batch=32, delay=1000)
    if "--with-test-models" in sys.argv:
        write_test_models(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
