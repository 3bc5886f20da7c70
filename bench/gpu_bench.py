#!/usr/bin/env python3
"""The GPU benchmarks of scripts/gpu-check.sh (docs/gpu.md), stdlib only.

Each figure is measured in one run against its limit, on the same device:
  1. mlp_large, 32-row requests, 64 outstanding: served samples/s over
     in-process samples/s at batch 32                      (target >= 0.9)
  2. add_one, 1 row, one call at a time: served p50 minus in-process p50
                                                            (target <= 100 us)
  3. victim p99 under the noisy-neighbour flood, fair over fifo
     (bench/noisy_neighbor.py --only noisy)                 (target <= 0.2)
  4. each demo model's measured charge against its parameter bytes
                                                            (target >= 1.0)
  5. compute-seconds per 1000 batches by CUDA events and by the host clock

  bench/gpu_bench.py --build BUILD --device cuda:0 --out DIR [--quick]

--quick (the rehearsal on a CPU) runs every step briefly, to prove the
plumbing; its figures mean nothing. Writes DIR/gpu-bench.json and
DIR/gpu-bench.md.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import noisy_neighbor as nn  # noqa: E402  (Daemon, tenant_yaml, loadgen)

MODELS = ("add_one", "mlp", "mlp_large")


def inprocess(args, model, batch, seconds):
    out = subprocess.run([os.path.join(args.build, "bin", "inprocess_throughput"),
                          "--model-dir", os.path.join(args.models, model), "--batch", str(batch),
                          "--seconds", str(seconds), "--threads", "1", "--device", args.device],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def served(args, specs):
    workdir = tempfile.mkdtemp(prefix="fs-gpu-bench-", dir=args.out)
    daemon = nn.Daemon(args, "fair", [nn.tenant_yaml("t")], workdir)
    try:
        return nn.loadgen(args, daemon, specs, workdir)["t"]
    finally:
        daemon.stop()


def median_range(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": values}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True, type=os.path.abspath)
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--out", required=True)
    p.add_argument("--models", default=None, type=os.path.abspath)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    args.models = args.models or os.path.join(args.build, "demo-models")
    args.fairserve = os.path.join(args.build, "bin", "fairserve")
    args.loadgen = os.path.join(args.build, "bin", "fairserve-loadgen")
    args.scheduler_extra = ""
    reps = 1 if args.quick else args.reps
    seconds = 0.5 if args.quick else 3
    args.duration, args.warmup = (1, 0.5) if args.quick else (5, 1)
    results = {"device": args.device, "quick": args.quick}

    # 1. Throughput: served vs in-process, interleaved.
    ratios, inproc_s, served_s = [], [], []
    for _ in range(reps):
        r_in = inprocess(args, "mlp_large", 32, seconds)["samples_per_s"]
        r_srv = served(args, ["name=t,key=t-key,model=mlp_large,batch=32,mode=closed,"
                              "concurrency=64"])["samples_per_s"]
        inproc_s.append(r_in)
        served_s.append(r_srv)
        ratios.append(r_srv / r_in)
    results["mlp_large_served_over_inprocess"] = median_range(ratios)
    results["mlp_large_inprocess_samples_per_s"] = median_range(inproc_s)
    results["mlp_large_served_samples_per_s"] = median_range(served_s)

    # 2. add_one p50 overhead.
    overheads = []
    for _ in range(reps):
        in_p50 = inprocess(args, "add_one", 1, seconds)["p50_ms"]
        srv_p50 = served(args, ["name=t,key=t-key,model=add_one,batch=1,mode=closed,"
                                "concurrency=1"])["p50_ms"]
        overheads.append(1e3 * (srv_p50 - in_p50))
    results["add_one_p50_overhead_us"] = median_range(overheads)

    # 3. Noisy neighbour on the device.
    cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                        "noisy_neighbor.py"),
           "--build", args.build, "--models", args.models, "--device", args.device,
           "--out", os.path.join(args.out, "noisy"), "--only", "noisy",
           "--reps", str(reps), "--duration", str(args.duration), "--warmup", str(args.warmup)]
    subprocess.run(cmd, check=True)
    noisy = json.load(open(os.path.join(args.out, "noisy", "summary.json")))["noisy_neighbour"]
    results["victim_p99_fair_over_fifo"] = noisy["fair_over_fifo_p99"]
    results["victim_p99_ms"] = {k: statistics.median(v) for k, v in noisy["victim_p99_ms"].items()}

    # 4 and 5. Memory and clocks, per model.
    memory, clocks = {}, {}
    for model in MODELS:
        batch = 1 if model == "add_one" else 32
        r = inprocess(args, model, batch, seconds)
        memory[model] = {"charged": r["memory_bytes"], "parameters": r["parameter_bytes"],
                         "activations": r["activation_bytes"],
                         "ratio": r["memory_bytes"] / max(1, r["parameter_bytes"])}
        clocks[model] = {"batch": batch, "events_s_per_1000": r["device_seconds_per_1000"],
                         "host_s_per_1000": r["host_seconds_per_1000"]}
    results["memory"] = memory
    results["compute_seconds_per_1000_batches"] = clocks

    targets = {
        "mlp_large served / in-process >= 0.9":
            results["mlp_large_served_over_inprocess"]["median"] >= 0.9,
        "add_one p50 overhead <= 100 us": results["add_one_p50_overhead_us"]["median"] <= 100,
        "victim p99 fair / fifo <= 0.2": results["victim_p99_fair_over_fifo"] <= 0.2,
        "measured memory >= parameter bytes, every model":
            all(m["charged"] >= m["parameters"] for m in memory.values()),
    }
    results["targets"] = targets
    with open(os.path.join(args.out, "gpu-bench.json"), "w") as f:
        json.dump(results, f, indent=1)

    def mr(d, fmt):
        return f"{fmt.format(d['median'])} ({fmt.format(d['min'])} to {fmt.format(d['max'])})"
    lines = [f"| measure ({args.device}, median of {reps}, range) | figure | target |",
             "| --- | --- | --- |",
             f"| mlp_large served / in-process, batch 32 | "
             f"{mr(results['mlp_large_served_over_inprocess'], '{:.3f}')} | >= 0.9 |",
             f"| mlp_large in-process samples/s | "
             f"{mr(results['mlp_large_inprocess_samples_per_s'], '{:.0f}')} | |",
             f"| mlp_large served samples/s | "
             f"{mr(results['mlp_large_served_samples_per_s'], '{:.0f}')} | |",
             f"| add_one p50 served minus in-process (us) | "
             f"{mr(results['add_one_p50_overhead_us'], '{:.1f}')} | <= 100 |",
             f"| victim p99 fair / fifo | {results['victim_p99_fair_over_fifo']:.3f} "
             f"(alone {results['victim_p99_ms']['alone']:.2f} ms, fair "
             f"{results['victim_p99_ms']['fair']:.2f} ms, fifo "
             f"{results['victim_p99_ms']['fifo']:.2f} ms) | <= 0.2 |"]
    for model, m in memory.items():
        lines.append(f"| {model}: charged / parameter bytes | {m['charged']} / {m['parameters']}"
                     f" = {m['ratio']:.2f} (activations {m['activations']}) | >= 1 |")
    for model, c in clocks.items():
        ev = c["events_s_per_1000"]
        lines.append(f"| {model} batch {c['batch']}: compute-s per 1000 batches, events / host | "
                     f"{'-' if ev is None else f'{ev:.4f}'} / {c['host_s_per_1000']:.4f} | |")
    lines.append("")
    for name, ok in targets.items():
        lines.append(f"- {name}: {'MET' if ok else 'MISSED'}")
    with open(os.path.join(args.out, "gpu-bench.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
