"""What fairserve's per-request work costs against the two limits a server
cannot beat (issue 16), measured in one run, interleaved, --reps times:

- the floor: build/bin/floor_server, a do-nothing KServe v2 server on the
  same gRPC build and callback API, answering inline;
- libtorch in-process: build/bin/inprocess_throughput at batch 32, in two
  thread layouts: every core as one worker's intra-op threads, and the
  daemon's own CPU layout (one single-threaded worker a core). The better
  of the two in each run is the ceiling the ratios are taken against.

Every load comes from the same fairserve-loadgen. The daemon runs with its
defaults (access log on). Writes build/bench-results/overhead.{json,md}.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from noisy_neighbor import ROOT, Server, add_keep_flag, discard, key_hash, loadgen  # noqa: E402


def daemon(args, workdir):
    cfg = os.path.join(workdir, "config.yaml")
    with open(cfg, "w") as f:
        f.write("server: {listen_address: 127.0.0.1, grpc_port: 0, http_port: 0, "
                "data_dir: data}\n"
                f"model_repository: {args.models}\n"
                + (f"scheduler: {{{args.scheduler}}}\n" if args.scheduler else "") +
                "tenants:\n"
                f"  - id: bench\n    api_keys: [\"{key_hash('bench-key')}\"]\n"
                "    rate_limit: {requests_per_second: 0}\n"
                "    max_inflight: 0\n    max_queue: 1000000\n")
    return Server([args.fairserve, "--config", cfg, "--log-level", "warn"], workdir)


def idle_rss_mib(args, tenants, workdir):
    """RSS of the daemon, idle after start-up, with `tenants` configured."""
    cfg = os.path.join(workdir, "config.yaml")
    with open(cfg, "w") as f:
        f.write("server: {listen_address: 127.0.0.1, grpc_port: 0, http_port: 0, "
                "data_dir: data}\n"
                f"model_repository: {args.models}\ntenants:\n")
        for i in range(tenants):
            f.write(f"  - id: t{i}\n    api_keys: [\"{key_hash(f'key-{i}')}\"]\n")
    server = Server([args.fairserve, "--config", cfg, "--log-level", "warn"], workdir)
    try:
        time.sleep(3)
        with open(f"/proc/{server.proc.pid}/status") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        return kib / 1024
    finally:
        server.stop()


def combined(inproc, floor):
    """Rows/s a server could serve if the model (inproc rows/s) and the
    transport (the floor server's rows/s for the same bytes) took turns on
    the same cores: 1 / (1/R_inproc + 1/R_floor)."""
    return 1 / (1 / inproc + 1 / floor)


def spec(model, rows, outstanding):
    return (f"name=t,key=bench-key,model={model},batch={rows},mode=closed,"
            f"concurrency={outstanding}")


def measure(args, server, model, rows, outstanding, workdir):
    return loadgen(args, server, [spec(model, rows, outstanding)], workdir)["t"]


def cpu_times():
    """(all, idle) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v), v[3] + v[4]


def idle_share(since):
    total, idle = cpu_times()
    return (idle - since[1]) / max(1, total - since[0])


def daemon_jiffies(pid):
    """CPU time (jiffies) the daemon used so far: (its scheduler workers,
    fs-cpu-N; all its threads)."""
    def used(stat_path):
        with open(stat_path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime

    workers = 0
    task_dir = f"/proc/{pid}/task"
    for tid in os.listdir(task_dir):
        try:
            with open(f"{task_dir}/{tid}/comm") as f:
                if f.read().startswith("fs-cpu-"):
                    workers += used(f"{task_dir}/{tid}/stat")
        except OSError:
            pass  # the thread ended
    return workers, used(f"/proc/{pid}/stat")


def stats(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": values}


def pct(s):
    return (f"{100 * s['median']:.1f}% ({100 * s['min']:.1f}..{100 * s['max']:.1f})")


def fmt(s, digits=3):
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}..{s['max']:.{digits}f})"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", default=os.path.join(ROOT, "build"), type=os.path.abspath)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--duration", type=float, default=5)
    p.add_argument("--warmup", type=float, default=1)
    p.add_argument("--scale", action="store_true",
                   help="only the daemon's idle RSS with 2 and with 10,000 tenants (target <= 300 MiB)")
    p.add_argument("--scheduler", default="",
                   help='daemon scheduler settings, e.g. "workers: 2, intra_op_threads: 1" '
                        "(default: the daemon's defaults)")
    p.add_argument("--tiny", action="store_true",
                   help="only the add_one rows (tiny calls), for quick comparisons")
    p.add_argument("--fairserve", default=None,
                   help="the daemon binary (default BUILD/bin/fairserve), to compare builds")
    add_keep_flag(p)
    args = p.parse_args()
    args.fairserve = args.fairserve or os.path.join(args.build, "bin", "fairserve")
    args.floor = os.path.join(args.build, "bin", "floor_server")
    args.loadgen = os.path.join(args.build, "bin", "fairserve-loadgen")
    args.inprocess = os.path.join(args.build, "bin", "inprocess_throughput")
    args.models = os.path.join(args.build, "demo-models")
    out_dir = os.path.join(args.build, "bench-results")
    os.makedirs(out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="fs-overhead-", dir=out_dir)
    run(args, work, out_dir)
    discard(args, work)


def run(args, work, out_dir):
    if args.scale:
        for n in (2, 10000):
            rss = [idle_rss_mib(args, n, tempfile.mkdtemp(prefix=f"rss{n}-", dir=work))
                   for _ in range(args.reps)]
            print(f"idle RSS with {n} tenants: {fmt(stats(rss), 1)} MiB (target <= 300 MiB)")
        return
    print(f"overhead: {os.cpu_count()} cores; {args.reps} runs of {args.duration:g} s each, "
          f"interleaved; scheduler: {args.scheduler or 'defaults'}")

    r = {k: [] for k in ("floor_p50", "fs_p50", "p50_ratio", "floor_cps", "fs_cps", "cps_ratio",
                         "inproc", "inproc_wide", "inproc_layout", "floor_4k", "floor_128k",
                         "rows32_ratio_limit", "rows32", "rows8", "rows1", "rows32_ratio",
                         "rows8_ratio", "rows1_ratio_inproc", "rows1_ratio_limit",
                         "rows32_idle", "rows8_idle", "rows1_idle",
                         "rows32_workers", "rows8_workers", "rows1_workers",
                         "rows32_rest", "rows8_rest", "rows1_rest")}
    for rep in range(args.reps):
        wd = tempfile.mkdtemp(prefix=f"rep{rep}-", dir=work)
        floor = Server([args.floor], tempfile.mkdtemp(prefix="floor-", dir=wd))
        fs = daemon(args, tempfile.mkdtemp(prefix="daemon-", dir=wd))
        try:
            for name, server in (("floor", floor), ("fs", fs)):
                one = measure(args, server, "add_one", 1, 1, wd)
                many = measure(args, server, "add_one", 1, 32, wd)
                r[f"{name}_p50"].append(one["p50_ms"])
                r[f"{name}_cps"].append(many["ok_per_s"])
            r["p50_ratio"].append(r["fs_p50"][-1] / r["floor_p50"][-1])
            r["cps_ratio"].append(r["fs_cps"][-1] / r["floor_cps"][-1])
            if args.tiny:
                print(f"  run {rep + 1}: add_one p50 {r['fs_p50'][-1]:.3f} vs "
                      f"{r['floor_p50'][-1]:.3f} ms ({r['p50_ratio'][-1]:.2f}x); calls/s "
                      f"{r['fs_cps'][-1]:.0f} vs {r['floor_cps'][-1]:.0f} "
                      f"({r['cps_ratio'][-1]:.2f})")
                continue
            # The floor for a 4 KiB-in, 4 KiB-out request (one mlp_large row).
            r["floor_4k"].append(measure(args, floor, "echo_1024", 1, 64, wd)["ok_per_s"])
            # And for 128 KiB in and out (a 32-row request), in rows/s.
            r["floor_128k"].append(
                measure(args, floor, "echo_1024", 32, 64, wd)["samples_per_s"])
            for rows in (32, 8, 1):
                # The machine's idle share over the run (warm-up included):
                # CPU time nobody could use, e.g. while every request is on
                # its way back to the client and no batch can run.
                # And the shares of the machine's time the daemon's workers
                # ran (models, metering, answers) and its other threads
                # (gRPC's, ...): in-process spends all of it on the model,
                # so a ratio to in-process near the workers' share says the
                # rest (the daemon's I/O, the load generator, the kernel's
                # network work) is what separates the two.
                before, daemon_before = cpu_times(), daemon_jiffies(fs.proc.pid)
                r[f"rows{rows}"].append(
                    measure(args, fs, "mlp_large", rows, 64, wd)["samples_per_s"])
                r[f"rows{rows}_idle"].append(idle_share(before))
                workers, all_threads = (after - start for after, start in
                                        zip(daemon_jiffies(fs.proc.pid), daemon_before))
                elapsed = max(1, cpu_times()[0] - before[0])
                r[f"rows{rows}_workers"].append(workers / elapsed)
                r[f"rows{rows}_rest"].append((all_threads - workers) / elapsed)
        finally:
            floor.stop()
            fs.stop()
        cores = str(os.cpu_count())
        for key, layout in (("inproc_wide", ["--workers", "1", "--threads", cores]),
                            ("inproc_layout", ["--workers", cores, "--threads", "1"])):
            out = subprocess.run(
                [args.inprocess, "--model-dir", os.path.join(args.models, "mlp_large"), "--batch",
                 "32", "--seconds", str(args.duration)] + layout,
                capture_output=True, text=True, check=True).stdout
            r[key].append(json.loads(out.strip().splitlines()[-1])["samples_per_s"])
        r["inproc"].append(max(r["inproc_wide"][-1], r["inproc_layout"][-1]))
        for rows in (32, 8):
            r[f"rows{rows}_ratio"].append(r[f"rows{rows}"][-1] / r["inproc"][-1])
        # The most a server could serve of 32-row requests here if the model
        # and the transport took turns on the same two cores: in-process time
        # plus the floor's time for the bytes, per sample.
        r["rows32_ratio_limit"].append(
            r["rows32"][-1] / combined(r["inproc"][-1], r["floor_128k"][-1]))
        limit = combined(r["inproc"][-1], r["floor_4k"][-1])
        r["rows1_ratio_inproc"].append(r["rows1"][-1] / r["inproc"][-1])
        r["rows1_ratio_limit"].append(r["rows1"][-1] / limit)
        print(f"  run {rep + 1}: add_one p50 {r['fs_p50'][-1]:.3f} vs {r['floor_p50'][-1]:.3f} ms; "
              f"32 outstanding {r['fs_cps'][-1]:.0f} vs {r['floor_cps'][-1]:.0f} calls/s; "
              f"mlp_large 32/8/1 rows {r['rows32'][-1]:.0f}/{r['rows8'][-1]:.0f}/"
              f"{r['rows1'][-1]:.0f} vs in-process {r['inproc_wide'][-1]:.0f} (1 worker) / "
              f"{r['inproc_layout'][-1]:.0f} (the daemon's layout) samples/s")

    if args.tiny:
        s = {k: stats(r[k]) for k in ("p50_ratio", "cps_ratio")}
        print(f"add_one p50 vs floor: {fmt(s['p50_ratio'], 2)} (target <= 1.3); calls/s at 32 "
              f"outstanding vs floor: {fmt(s['cps_ratio'], 2)} (target >= 0.9)")
        return
    s = {k: stats(v) for k, v in r.items()}
    verdict = lambda ok: "met" if ok else "missed"  # noqa: E731
    md = [
        f"# fairserve overhead ({os.cpu_count()} cores, {args.reps} runs, medians (range))",
        "",
        "| workload | floor server | fairserve | ratio | target |",
        "| --- | --- | --- | --- | --- |",
        f"| `add_one`, 1 row, one call at a time, p50 ms | {fmt(s['floor_p50'])} | "
        f"{fmt(s['fs_p50'])} | {fmt(s['p50_ratio'], 2)} | <= 1.3 "
        f"({verdict(s['p50_ratio']['median'] <= 1.3)}) |",
        f"| `add_one`, 1 row, 32 outstanding, calls/s | {fmt(s['floor_cps'], 0)} | "
        f"{fmt(s['fs_cps'], 0)} | {fmt(s['cps_ratio'], 2)} | >= 0.9 "
        f"({verdict(s['cps_ratio']['median'] >= 0.9)}) |",
        "",
        "| `mlp_large`, 64 outstanding | in-process, batch 32, the better layout (samples/s) "
        "| fairserve (samples/s) "
        "| ratio | target | CPU idle | workers' share | daemon's other threads |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| 32-row requests | {fmt(s['inproc'], 0)} | {fmt(s['rows32'], 0)} | "
        f"{fmt(s['rows32_ratio'], 2)} (of the combined limit: {fmt(s['rows32_ratio_limit'], 2)}) "
        f"| >= 0.95 ({verdict(s['rows32_ratio']['median'] >= 0.95)}) "
        f"| {pct(s['rows32_idle'])} | {pct(s['rows32_workers'])} | {pct(s['rows32_rest'])} |",
        f"| 8-row requests | | {fmt(s['rows8'], 0)} | {fmt(s['rows8_ratio'], 2)} | "
        f"| {pct(s['rows8_idle'])} | {pct(s['rows8_workers'])} | {pct(s['rows8_rest'])} |",
        f"| 1-row requests | | {fmt(s['rows1'], 0)} | {fmt(s['rows1_ratio_inproc'], 2)} "
        f"(of the combined limit: {fmt(s['rows1_ratio_limit'], 2)}) | >= 0.85 of the limit "
        f"({verdict(s['rows1_ratio_limit']['median'] >= 0.85)}) | {pct(s['rows1_idle'])} "
        f"| {pct(s['rows1_workers'])} | {pct(s['rows1_rest'])} |",
        "",
        f"Floor server, 4 KiB in and out (one `mlp_large` row), 64 outstanding: "
        f"{fmt(s['floor_4k'], 0)} calls/s; 128 KiB in and out (32 rows): "
        f"{fmt(s['floor_128k'], 0)} rows/s. Combined limit: 1 / (1/R_inproc + 1/R_floor), "
        "R_floor for the request's bytes, in rows/s: what a server could serve if the model "
        "and the transport took turns on the same cores. In-process, one worker with "
        f"{os.cpu_count()} intra-op threads: {fmt(s['inproc_wide'], 0)} samples/s; the daemon's "
        f"layout (one single-threaded worker a core): {fmt(s['inproc_layout'], 0)}. "
        "CPU idle: the machine's idle share during the "
        "run (both cores; the load generator shares them). Workers' share: the share of "
        "the machine's time the daemon's scheduler workers ran (the model, metering, "
        "answers), and its other threads (gRPC's, the access log's, ...); in-process runs "
        "the model all the time on both cores, so where the ratio is close to the workers' "
        "share, what separates the two is the time the rest (the daemon's I/O, the load "
        "generator, the kernel's network work) takes, not idle workers.",
    ]
    with open(os.path.join(out_dir, "overhead.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    with open(os.path.join(out_dir, "overhead.json"), "w") as f:
        json.dump(s, f, indent=1)
    print("\n".join(md))
    print(f"\nwritten: {out_dir}/overhead.md, overhead.json")


if __name__ == "__main__":
    main()
