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


def main():
    if len(sys.argv) != 2:
        print("usage: make_demo_models.py DIR", file=sys.stderr)
        return 2
    root = sys.argv[1]
    torch.manual_seed(20261127)
    write(root, "add_one", AddOne(), 16, 16, max_batch=64, delay=0)
    write(root, "mlp", Mlp([64, 128, 10], softmax=True), 64, 10, max_batch=32, delay=500)
    write(root, "mlp_large", Mlp([1024, 1024, 1024, 1024, 1024], softmax=False), 1024, 1024,
          max_batch=32, delay=1000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
