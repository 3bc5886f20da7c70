#!/usr/bin/env python3
"""Where the daemon's CPU time goes on the tiny-call path (issue 16).

Starts the daemon on the demo models with its default thread layout, drives
add_one (1 row) with N calls outstanding from fairserve-loadgen, and records
the daemon alone with `perf record -e cpu-clock -g` (Debian's linux-perf;
cpu-clock works in a VM) for the middle of the run. Prints self time by
group (kernel, malloc, Abseil synchronisation, protobuf, gRPC, torch,
fairserve) and the top entries, and writes OUT/profile.{txt,json}.

  bench/profile.py [--build build] [--outstanding 32] [--seconds 8] [--out DIR]
                   [--model add_one] [--rows 1]

--model mlp_large --rows 32 --outstanding 64 profiles the big-request case
instead (issue 16's 32-row row): there the workers' time is the model, and
the by-thread table says what the rest of the daemon spends.
"""

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import noisy_neighbor as nn  # noqa: E402

GROUPS = [
    ("kernel", lambda s, d: d.startswith("[kernel")),
    ("malloc/free", lambda s, d: any(k in s for k in ("malloc", "free", "_int_", "operator new",
                                                       "operator delete", "tcache"))),
    ("abseil synchronisation", lambda s, d: "absl" in d and any(
        k in s for k in ("Mutex", "GraphCycles", "synchronization", "CondVar", "Synch", "Spin"))),
    ("protobuf", lambda s, d: "protobuf" in d),
    ("grpc", lambda s, d: "grpc" in d or "gpr" in d),
    ("torch", lambda s, d: "torch" in d or "c10" in d or "blas" in d or "gomp" in d),
    ("libc/libstdc++ other", lambda s, d: "libc.so" in d or "libstdc++" in d),
    ("fairserve", lambda s, d: "fairserve" in d),
]


def entries(data, limit):
    out = subprocess.run(["perf", "report", "-i", data, "--no-children", "--stdio", "-g", "none",
                          "--sort", "dso,sym", "--percent-limit", str(limit)],
                         check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split()
        if not parts or line.lstrip().startswith("#") or not parts[0].endswith("%"):
            continue
        rows.append((float(parts[0][:-1]), parts[1], " ".join(parts[3:])))
    return rows


def by_thread(data):
    """[(percent, thread name)] of the recording's samples, largest first;
    numbered threads of one pool (fs-cpu-0, fs-cpu-1) stay apart."""
    out = subprocess.run(["perf", "report", "-i", data, "--no-children", "--stdio", "-g", "none",
                          "--sort", "comm"], check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and not line.lstrip().startswith("#") and parts[0].endswith("%"):
            rows.append((float(parts[0][:-1]), parts[1].strip()))
    return rows


def thread_switches(pid):
    """{tid: (thread name, context switches so far)} for every thread of pid."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                n = sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
        except OSError:
            continue  # the thread ended
        out[tid] = (name, n)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", default=os.path.join(nn.ROOT, "build"), type=os.path.abspath)
    p.add_argument("--outstanding", type=int, default=32)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--out", default=None)
    p.add_argument("--model", default="add_one")
    p.add_argument("--rows", type=int, default=1, help="rows a request")
    nn.add_keep_flag(p)
    args = p.parse_args()
    args.out = args.out or os.path.join(args.build, "bench-results", "profile")
    os.makedirs(args.out, exist_ok=True)
    args.fairserve = os.path.join(args.build, "bin", "fairserve")
    args.loadgen = os.path.join(args.build, "bin", "fairserve-loadgen")
    args.models = os.path.join(args.build, "demo-models")
    if not os.path.isdir(os.path.join(args.models, args.model)):
        sys.exit(f"no model '{args.model}' in {args.models} (scripts/prepare.sh builds and "
                 "makes the demo models: add_one, mlp, mlp_large)")
    args.scheduler_extra = ""
    args.device = "cpu"
    args.workers = 0  # the daemon's default layout
    args.log_format = "plain"  # the access log on, its default
    args.duration, args.warmup = args.seconds, 1
    workdir = tempfile.mkdtemp(prefix="fs-profile-", dir=args.out)
    d = nn.Daemon(args, "fair", [nn.tenant_yaml("t")], workdir)
    data = os.path.join(workdir, "perf.data")
    spec = (f"name=t,key=t-key,model={args.model},batch={args.rows},mode=closed,"
            f"concurrency={args.outstanding}")
    result = {}
    try:
        load = threading.Thread(target=lambda: result.update(nn.loadgen(args, d, [spec], workdir)))
        load.start()
        time.sleep(1.5)
        before, started = thread_switches(d.proc.pid), time.time()
        subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-g", "-p", str(d.proc.pid),
                        "-o", data, "--", "sleep", str(max(1.0, args.seconds - 2))],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        after, window = thread_switches(d.proc.pid), time.time() - started
        load.join()
    finally:
        d.stop()
    # The recording stays (for `perf report -i`); the daemon's directory goes.
    kept = os.path.join(args.out, "perf.data")
    os.replace(data, kept)
    data = kept
    nn.discard(args, workdir)
    groups = collections.OrderedDict((g, 0.0) for g, _ in GROUPS)
    groups["other"] = 0.0
    for pct, dso, sym in entries(data, 0):
        for g, match in GROUPS:
            if match(sym, dso):
                groups[g] += pct
                break
        else:
            groups["other"] += pct
    top = entries(data, 0.5)
    calls = result.get("t", {})
    lines = [f"{args.model}, {args.rows} row(s), {args.outstanding} outstanding, "
             f"{os.cpu_count()} cores: "
             f"{calls.get('ok_per_s', 0):.0f} calls/s, p50 {calls.get('p50_ms', 0):.3f} ms "
             "(while profiled)", "", "daemon self time by group:"]
    lines += [f"  {g:24s} {v:5.1f}%" for g, v in groups.items()]
    lines += ["", "daemon self time by thread name:"]
    lines += [f"  {pct:5.1f}%  {comm}" for pct, comm in by_thread(data)]
    lines += ["", "top entries (self time, dso, symbol):"]
    lines += [f"  {pct:5.2f}%  {dso:30s} {sym[:100]}" for pct, dso, sym in top[:25]]
    # Context switches per call, by thread name: each is a hand-off or a
    # wake-up the call paid for (the calls counted are those of the window).
    calls_in_window = calls.get("ok_per_s", 0) * window
    per_call = {}
    for tid, (name, n) in after.items():
        per_call[name] = per_call.get(name, 0) + n - before.get(tid, (name, 0))[1]
    lines += ["", "context switches per call, by thread name (voluntary + involuntary):"]
    for name, n in sorted(per_call.items(), key=lambda kv: -kv[1]):
        if calls_in_window > 0 and n > 0:
            lines.append(f"  {name:24s} {n / calls_in_window:6.3f}")
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(args.out, "profile.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.out, "profile.json"), "w") as f:
        json.dump({"groups": groups, "top": top[:40], "switches": per_call,
                   "calls": {k: v for k, v in calls.items() if k != "latencies"}}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
