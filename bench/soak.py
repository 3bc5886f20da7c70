"""Soak: the real daemon at twice its capacity for several minutes, on
loopback. Checks that memory is stable (RSS growth after warm-up < 5%), that
no error other than the intended RESOURCE_EXHAUSTED appears, and that a
well-behaved tenant's latency percentiles stay stable window after window.

Run with bench/soak.sh [--minutes 4] [--window 20]; results in
build/bench-results/soak.json.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from noisy_neighbor import Daemon, ROOT, add_keep_flag, discard, loadgen, tenant_yaml  # noqa: E402


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", default=os.path.join(ROOT, "build"), type=os.path.abspath)
    p.add_argument("--minutes", type=float, default=4)
    p.add_argument("--window", type=float, default=20, help="seconds per measurement window")
    p.add_argument("--warmup-windows", type=int, default=2)
    p.add_argument("--model", default="mlp_large", help="the flooding tenant's model")
    p.add_argument("--batch", type=int, default=8, help="rows per flooding request")
    add_keep_flag(p)
    args = p.parse_args()
    args.fairserve = os.path.join(args.build, "bin", "fairserve")
    args.loadgen = os.path.join(args.build, "bin", "fairserve-loadgen")
    args.models = os.path.join(args.build, "demo-models")
    args.scheduler_extra = ""
    args.device = "cpu"  # the daemon's one device (noisy_neighbor.Daemon)
    args.duration, args.warmup = args.window, 0
    out_dir = os.path.join(args.build, "bench-results")
    os.makedirs(out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="fs-soak-", dir=out_dir)

    # The flooder is bounded by its queue and in-flight caps, so overload
    # turns into RESOURCE_EXHAUSTED instead of unbounded queues.
    tenants = [tenant_yaml("flood", max_inflight=256, max_queue=128),
               tenant_yaml("probe", max_inflight=64, max_queue=64)]
    d = Daemon(args, "fair", tenants, work)
    try:
        flood = f"name=flood,key=flood-key,model={args.model},batch={args.batch}"
        cap = loadgen(args, d, [flood + ",mode=closed,concurrency=32"], work, duration=5,
                      warmup=1)
        capacity = cap["flood"]["ok_per_s"]
        rate = 2 * capacity
        print(f"machine: {os.cpu_count()} cores; capacity ({args.model}, batch {args.batch}, "
              f"closed loop 32): {capacity:.0f} requests/s; soaking at {rate:.0f}/s for "
              f"{args.minutes:g} min in {args.window:g} s windows, plus a probe tenant (mlp, "
              "batch 1) at 20/s")
        windows = []
        end = time.monotonic() + args.minutes * 60
        while time.monotonic() < end:
            r = loadgen(args, d, [
                f"{flood},mode=open,rate={rate:.0f}",
                "name=probe,key=probe-key,model=mlp,batch=1,mode=open,rate=20"], work)
            w = {"rss_mib": rss_kib(d.proc.pid) / 1024,
                 "flood_status": r["flood"]["status"], "probe_status": r["probe"]["status"],
                 "flood_ok_per_s": r["flood"]["ok_per_s"],
                 "probe_p50_ms": r["probe"]["p50_ms"], "probe_p99_ms": r["probe"]["p99_ms"],
                 "flood_p99_ms": r["flood"]["p99_ms"]}
            windows.append(w)
            print(f"  window {len(windows):2d}: RSS {w['rss_mib']:7.1f} MiB  flood ok/s "
                  f"{w['flood_ok_per_s']:6.0f} {w['flood_status']}  probe p50 "
                  f"{w['probe_p50_ms']:.2f} p99 {w['probe_p99_ms']:.2f} ms {w['probe_status']}")
    finally:
        d.stop()
    discard(args, work)

    steady = windows[args.warmup_windows:]
    if len(steady) < 2:
        sys.exit("too few windows after warm-up; raise --minutes")
    growth = steady[-1]["rss_mib"] / steady[0]["rss_mib"] - 1
    codes = set()
    for w in windows:
        codes |= set(w["flood_status"]) | set(w["probe_status"])
    unexpected = sorted(codes - {"OK", "RESOURCE_EXHAUSTED"})
    p99s = [w["probe_p99_ms"] for w in steady]
    p50s = [w["probe_p50_ms"] for w in steady]
    summary = {
        "capacity_per_s": capacity, "offered_per_s": rate, "windows": windows,
        "rss_growth_after_warmup": growth, "unexpected_codes": unexpected,
        "probe_p50_ms": {"median": statistics.median(p50s), "min": min(p50s), "max": max(p50s)},
        "probe_p99_ms": {"median": statistics.median(p99s), "min": min(p99s), "max": max(p99s)},
    }
    json.dump(summary, open(os.path.join(out_dir, "soak.json"), "w"), indent=1)
    print(f"RSS after warm-up {steady[0]['rss_mib']:.1f} MiB -> {steady[-1]['rss_mib']:.1f} MiB: "
          f"{growth:+.1%} (< 5%) -> {'MET' if growth < 0.05 else 'MISSED'}")
    print(f"status codes seen: {sorted(codes)}; others than OK/RESOURCE_EXHAUSTED: "
          f"{unexpected or 'none'} -> {'MET' if not unexpected else 'MISSED'}")
    print(f"probe p50 median {statistics.median(p50s):.2f} ms (windows {min(p50s):.2f}.."
          f"{max(p50s):.2f}); p99 median {statistics.median(p99s):.2f} ms (windows "
          f"{min(p99s):.2f}..{max(p99s):.2f})")
    return 0 if growth < 0.05 and not unexpected else 1


if __name__ == "__main__":
    sys.exit(main())
