"""Noisy-neighbour and fairness benchmarks for fairserve (see bench/README.md).

Starts the real daemon per run, drives it with build/bin/fairserve-loadgen,
reads per-tenant compute-seconds from /metrics, and prints every figure the
fairness issue asks for with median and spread over --reps runs. Writes JSON
and a gnuplot PNG of the victim's latency distribution into --out.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def key_hash(k):
    return "sha256:" + hashlib.sha256(k.encode()).hexdigest()


def tenant_yaml(name, weight=1, rps=100000, burst=100000, max_inflight=0, max_queue=100000,
                extra=""):
    return (f"  - id: {name}\n    api_keys: [\"{key_hash(name + '-key')}\"]\n"
            f"    weight: {weight}\n" + extra +
            f"    rate_limit: {{requests_per_second: {rps}, burst: {burst}}}\n"
            f"    max_inflight: {max_inflight}\n    max_queue: {max_queue}\n")


class Server:
    """A binary that writes --ready-file {"grpc_port": N, ...} once serving:
    the floor server (bench/floor_server.cc), or the daemon as overhead.py
    starts it."""

    def __init__(self, argv, workdir):
        ready = os.path.join(workdir, "ready.json")
        self.log = open(os.path.join(workdir, "server.log"), "a")
        self.proc = subprocess.Popen(argv + ["--ready-file", ready], stdout=self.log,
                                     stderr=self.log)
        deadline = time.time() + 60
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.time() > deadline:
                sys.exit(f"{argv[0]} did not start; see {self.log.name}")
            time.sleep(0.02)
        self.ports = json.load(open(ready))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()


class Daemon:
    def __init__(self, args, policy, tenants, workdir, models=None, extra=""):
        cfg = os.path.join(workdir, "config.yaml")
        with open(cfg, "w") as f:
            f.write("server: {listen_address: 127.0.0.1, grpc_port: 0, http_port: 0, "
                    f"data_dir: data, log_format: {getattr(args, 'log_format', 'off')}, "
                    f"rejection_hold_per_tenant: {getattr(args, 'hold', 0)}}}\n"
                    f"model_repository: {models or args.models}\n"
                    f"scheduler: {{policy: {policy}, "
                    f"workers: {getattr(args, 'workers', 1)}{args.scheduler_extra}}}\n" +
                    (f"devices: [{{name: {args.device}}}]\n" if args.device != "cpu" else "") +
                    extra +
                    "tenants:\n" + "".join(tenants))
        ready = os.path.join(workdir, "ready.json")
        if os.path.exists(ready):
            os.remove(ready)
        self.log = open(os.path.join(workdir, "daemon.log"), "a")
        self.proc = subprocess.Popen([args.fairserve, "--config", cfg, "--ready-file", ready,
                                      "--log-level", "warn"], stdout=self.log, stderr=self.log)
        deadline = time.time() + 60
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.time() > deadline:
                sys.exit("daemon did not start; see " + self.log.name)
            time.sleep(0.02)
        self.ports = json.load(open(ready))

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['http_port']}/metrics") as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            m = re.match(r'^([a-z_]+)\{(.*)\} (\S+)$', line)
            if m:
                labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
                out[(m.group(1), tuple(sorted(labels.items())))] = float(m.group(3))
        return out

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()


def loadgen(args, daemon, tenants, workdir, duration=None, warmup=None, separate=False,
            elsewhere=None):
    """Runs fairserve-loadgen with the tenant specs and returns its results by
    tenant name. With separate=True each tenant gets a loadgen process of its
    own, all started together: as separate clients would be, each with its
    own connection, completion threads and CPU time, so that one tenant's
    flood of answers does not queue another's inside a shared client.
    `elsewhere` ({spec: server}, with separate=True) sends a spec's load to
    another server than `daemon`, in the same minutes."""
    elsewhere = elsewhere or {}
    assert separate or not elsewhere, "elsewhere needs a client process per tenant"
    groups = [[t] for t in tenants] if separate else [tenants]
    lat_dir = os.path.join(workdir, "lat")
    os.makedirs(lat_dir, exist_ok=True)
    procs = []
    for i, group in enumerate(groups):
        out = os.path.join(workdir, f"loadgen{i}.json")
        target = elsewhere.get(group[0], daemon)
        cmd = [args.loadgen, "--address", f"127.0.0.1:{target.ports['grpc_port']}",
               "--duration", str(duration or args.duration), "--warmup",
               str(warmup or args.warmup), "--json", out, "--latencies-dir", lat_dir]
        for t in group:
            cmd += ["--tenant", t]
        procs.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL), cmd, out))
    result = {}
    try:
        for proc, cmd, out in procs:
            if proc.wait() != 0:
                raise subprocess.CalledProcessError(proc.returncode, cmd)
            result.update({t["name"]: t for t in json.load(open(out))["tenants"]})
    finally:
        for proc, _, _ in procs:  # the others, when one failed
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for name in result:
        with open(os.path.join(lat_dir, name + ".txt")) as f:
            result[name]["latencies"] = [float(x) for x in f]
    return result


def add_keep_flag(parser):
    parser.add_argument("--keep", action="store_true",
                        help="keep each run's working directory (daemon config and log, access "
                             "log, ledger, loadgen output) under the results folder; by default "
                             "a run's directory is removed once its figures are read")


def discard(args, path):
    """Removes a finished run's working directory unless --keep. A run that
    failed never gets here, so its directory stays for a look."""
    if not getattr(args, "keep", False):
        shutil.rmtree(path, ignore_errors=True)


def compute_seconds(metrics, tenant):
    return sum(v for (n, l), v in metrics.items()
               if n == "tenant_gpu_compute_seconds_total" and ("tenant_id", tenant) in l)


def mean_batch_seconds(metrics, model):
    total = metrics.get(("fairserve_batch_compute_seconds_total", (("model_name", model),)), 0)
    count = metrics.get(("fairserve_batch_size_count", (("model_name", model),)), 0)
    return total / count if count else float("nan")


def spread(values):
    return f"median {statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"


def run(args, policy, tenant_yamls, specs, tag, rep, models=None, extra="", **kw):
    workdir = tempfile.mkdtemp(prefix=f"fs-bench-{tag}-", dir=args.out)
    d = Daemon(args, policy, tenant_yamls, workdir, models, extra)
    try:
        before = d.metrics()
        res = loadgen(args, d, specs, workdir, **kw)
        after = d.metrics()
    finally:
        d.stop()
    discard(args, workdir)
    return res, before, after


VICTIM = "name=victim,key=victim-key,model=mlp,batch=1,mode=open,rate={rate}"
ATTACKER = "name=attacker,key=attacker-key,model=mlp_large,batch=32,mode=closed,concurrency=64"


def noisy_neighbour(args, summary):
    tenants = [tenant_yaml("victim"), tenant_yaml("attacker")]
    victim = VICTIM.format(rate=args.victim_rate)
    cases = [("alone", "fair", [victim]), ("fair", "fair", [victim, ATTACKER]),
             ("fifo", "fifo", [victim, ATTACKER])]
    results = {c[0]: [] for c in cases}
    batch_ms = []
    for rep in range(args.reps):
        for name, policy, specs in cases:
            res, _, after = run(args, policy, tenants, specs, name, rep)
            results[name].append(res)
            if name == "fair":
                batch_ms.append(1e3 * mean_batch_seconds(after, "mlp_large"))
    p99 = {n: [r["victim"]["p99_ms"] for r in results[n]] for n in results}
    p50 = {n: [r["victim"]["p50_ms"] for r in results[n]] for n in results}
    print("\n== Noisy neighbour: victim mlp batch 1 open-loop "
          f"{args.victim_rate}/s; attacker mlp_large batch 32, 64 outstanding ==")
    for n in ("alone", "fair", "fifo"):
        line = f"  victim {n:5s}: p50 {spread(p50[n])} ms, p99 {spread(p99[n])} ms"
        if n != "alone":
            att = [r["attacker"]["samples_per_s"] for r in results[n]]
            line += f"; attacker {spread(att)} samples/s"
        print(line)
    delay_ms = 0.5  # mlp's max_queue_delay_us
    bound = statistics.median(p99["alone"]) + statistics.median(batch_ms) + delay_ms
    print(f"  attacker batch execution: {spread(batch_ms)} ms")
    print(f"  target 1: fair p99 {statistics.median(p99['fair']):.3f} ms <= alone p99 + batch + "
          f"delay = {bound:.3f} ms -> {'MET' if statistics.median(p99['fair']) <= bound else 'MISSED'}")
    ratio = statistics.median(p99["fair"]) / statistics.median(p99["fifo"])
    print(f"  target 1b: fair p99 / fifo p99 = {ratio:.3f} (<= 0.2) -> "
          f"{'MET' if ratio <= 0.2 else 'MISSED'}")
    summary["noisy_neighbour"] = {"victim_p99_ms": p99, "victim_p50_ms": p50,
                                  "attacker_batch_ms": batch_ms, "bound_ms": bound,
                                  "fair_over_fifo_p99": ratio}
    # Latency distributions of the median-p99 run of each case.
    plot_dir = args.out
    files = []
    for n in ("alone", "fair", "fifo"):
        runs = sorted(results[n], key=lambda r: r["victim"]["p99_ms"])
        lat = sorted(runs[len(runs) // 2]["victim"]["latencies"])
        path = os.path.join(plot_dir, f"victim_{n}.dat")
        with open(path, "w") as f:
            for i, v in enumerate(lat):
                f.write(f"{v} {(i + 1) / len(lat)}\n")
        files.append((n, path))
    if not shutil.which("gnuplot"):
        print("  (no gnuplot here: latency CDFs left in victim_*.dat)")
        return
    png = os.path.join(plot_dir, "noisy_neighbor.png")
    plot = ", ".join(f"'{p}' using 1:2 with lines lw 2 title 'victim, {n}'" for n, p in files)
    subprocess.run(["gnuplot", "-e",
                    f"set terminal png size 900,560; set output '{png}'; set logscale x; "
                    "set xlabel 'victim latency (ms, log)'; set ylabel 'fraction of requests'; "
                    "set key bottom right; set grid; "
                    "set title 'fairserve: victim latency CDF, alone vs attacker (fair, fifo)'; "
                    f"plot {plot}"], check=True)
    print(f"  plot: {png}")


def weighted_shares(args, summary):
    weights = {"w1a": 1, "w1b": 1, "w2": 2, "w4": 4}
    sizes = {"w1a": 32, "w1b": 8, "w2": 16, "w4": 4}
    tenants = [tenant_yaml(n, weight=w) for n, w in weights.items()]
    specs = [f"name={n},key={n}-key,model=mlp_large,batch={sizes[n]},mode=closed,concurrency=16"
             for n in weights]
    shares_runs, jain_runs = [], []
    for rep in range(args.reps):
        _, before, after = run(args, "fair", tenants, specs, "weighted", rep)
        used = {n: compute_seconds(after, n) - compute_seconds(before, n) for n in weights}
        total = sum(used.values())
        shares = {n: used[n] / total for n in weights}
        wsum = sum(weights.values())
        norm = [shares[n] / (weights[n] / wsum) for n in weights]
        jain = sum(norm) ** 2 / (len(norm) * sum(x * x for x in norm))
        shares_runs.append(shares)
        jain_runs.append(jain)
    print("\n== Weighted shares: 4 backlogged tenants, weights 1:1:2:4, "
          "request sizes 32/8/16/4 rows of mlp_large ==")
    wsum = sum(weights.values())
    worst = 0
    for n in weights:
        vals = [s[n] for s in shares_runs]
        want = weights[n] / wsum
        err = statistics.median(vals) / want - 1
        worst = max(worst, abs(err))
        print(f"  {n}: weight share {want:.3f}, compute share {spread(vals)} ({err:+.1%})")
    print(f"  Jain's index over weight-normalised shares: {spread(jain_runs)}")
    print(f"  target 2: shares within 5% -> {'MET' if worst <= 0.05 else 'MISSED'} "
          f"(worst {worst:.1%}); Jain >= 0.99 -> "
          f"{'MET' if statistics.median(jain_runs) >= 0.99 else 'MISSED'}")
    summary["weighted"] = {"shares": shares_runs, "jain": jain_runs, "worst_error": worst}


def work_conservation_and_batching(args, summary):
    tenants = [tenant_yaml("solo")]
    alone = "name=solo,key=solo-key,model=mlp_large,batch=32,mode=closed,concurrency=8"
    fair, fifo = [], []
    for rep in range(args.reps):
        fair.append(run(args, "fair", tenants, [alone], "solo-fair", rep)[0]["solo"]["samples_per_s"])
        fifo.append(run(args, "fifo", tenants, [alone], "solo-fifo", rep)[0]["solo"]["samples_per_s"])
    ratio = statistics.median(fair) / statistics.median(fifo)
    print("\n== Work conservation: one tenant alone, mlp_large batch 32, 8 outstanding ==")
    print(f"  fair {spread(fair)} samples/s; fifo {spread(fifo)} samples/s; "
          f"ratio {ratio:.3f} (>= 0.95) -> {'MET' if ratio >= 0.95 else 'MISSED'}")
    summary["work_conservation"] = {"fair": fair, "fifo": fifo, "ratio": ratio}

    inproc = []
    for rep in range(args.reps):
        out = subprocess.run([args.inprocess, "--model-dir", os.path.join(args.models, "mlp_large"),
                              "--batch", "32", "--seconds", "5"], capture_output=True, text=True,
                             check=True).stdout
        inproc.append(json.loads(out.strip().splitlines()[-1])["samples_per_s"])
    print("\n== Dynamic batching: mlp_large at saturation vs in-process libtorch at batch 32 ==")
    print(f"  in-process batch 32: {spread(inproc)} samples/s")
    summary["batching"] = {"inprocess": inproc}
    for rows, conc in ((1, 128), (4, 64), (8, 32)):
        served = []
        for rep in range(args.reps):
            spec = f"name=solo,key=solo-key,model=mlp_large,batch={rows},mode=closed,concurrency={conc}"
            served.append(run(args, "fair", tenants, [spec], f"batching{rows}", rep)[0]["solo"]["samples_per_s"])
        ratio = statistics.median(served) / statistics.median(inproc)
        print(f"  served, {rows}-row requests, {conc} outstanding: {spread(served)} samples/s = "
              f"{ratio:.1%} of in-process (>= 80%) -> {'MET' if ratio >= 0.8 else 'MISSED'}")
        summary["batching"][f"rows{rows}"] = {"served": served, "ratio": ratio}


def rejections(args, summary):
    tenants = [tenant_yaml("victim"), tenant_yaml("flood", rps=10, burst=10)]
    victim = VICTIM.format(rate=args.victim_rate)
    # Closed loop: the flood sends as fast as the server answers, so the run
    # measures how many rejections per second the server sustains. (An
    # open-loop flood above what the two shared cores can handle, client
    # included, backs up in the client and measures the client instead.)
    def flood_of(model):
        return (f"name=flood,key=flood-key,model={model},batch=1,mode=closed,"
                f"concurrency={args.flood_outstanding}")

    flood = flood_of("mlp")
    # The victim and the flooder are separate clients (a loadgen process
    # each) unless --shared-client: in one process the victim's answers
    # wait in the client behind the flood's 20k+ refusals a second, which
    # is the client's queue, not harm the server does.
    # The control: the same closed-loop flood (tiny calls, as many
    # outstanding) sent to the floor server, which answers each at once,
    # while the victim uses the daemon alone: a load generator and a gRPC
    # server at full speed on the two shared cores, with none of it in the
    # daemon. (The floor answers sooner than the daemon refuses, so its
    # flood runs faster: compare the rates.)
    floor_flood = flood_of("add_one")  # the floor server serves add_one, not mlp
    rates, p99, control_p99, control_rates = [], [], [], []
    for rep in range(args.reps):
        res, _, _ = run(args, "fair", tenants, [victim, flood], "reject", rep,
                        separate=not args.shared_client)
        rates.append(res["flood"]["status"].get("RESOURCE_EXHAUSTED", 0) / args.duration)
        p99.append(res["victim"]["p99_ms"])
        floor_dir = tempfile.mkdtemp(prefix="fs-bench-floor-", dir=args.out)
        floor = Server([os.path.join(args.build, "bin", "floor_server")], floor_dir)
        try:
            res, _, _ = run(args, "fair", tenants, [victim, floor_flood], "reject-control", rep,
                            separate=True, elsewhere={floor_flood: floor})
        finally:
            floor.stop()
        discard(args, floor_dir)
        control_p99.append(res["victim"]["p99_ms"])
        control_rates.append(res["flood"]["ok_per_s"])
    bound = summary.get("noisy_neighbour", {}).get("bound_ms")
    previous = os.path.join(args.out, "summary.json")
    if bound is None and os.path.exists(previous):
        bound = json.load(open(previous)).get("noisy_neighbour", {}).get("bound_ms")
    bound = float("nan") if bound is None else bound
    print(f"\n== Rate-limited flood: {args.flood_outstanding} outstanding requests against a 10/s "
          f"limit; refusals held: {args.hold or 'no'} per tenant; victim and flooder in "
          f"{'one client process' if args.shared_client else 'separate client processes'} ==")
    print(f"  rejections answered: {spread(rates)} /s (>= 20000) -> "
          f"{'MET' if statistics.median(rates) >= 20000 else 'MISSED'}")
    print(f"  victim p99 meanwhile: {spread(p99)} ms (bound {bound:.3f} ms) -> "
          f"{'MET' if statistics.median(p99) <= bound else 'MISSED'}")
    print(f"  control, the same flood answered by the floor server instead: "
          f"{spread(control_rates)} calls/s; victim p99 {spread(control_p99)} ms")
    summary["rejections"] = {"per_s": rates, "victim_p99_ms": p99,
                             "control_per_s": control_rates, "control_victim_p99_ms": control_p99,
                             "shared_client": args.shared_client}


def cache_churn(args, summary):
    """One tenant cycles through more private models than its quota holds
    (every request is a cold load); another tenant's p99 is measured."""
    import shutil
    repo = os.path.join(args.out, "cache-repo")
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(os.path.join(args.models, "mlp"), os.path.join(repo, "mlp"))
    names = [f"c{i}" for i in range(6)]
    for n in names:
        shutil.copytree(os.path.join(args.models, "mlp_large"), os.path.join(repo, n))
        with open(os.path.join(repo, n, "config.yaml")) as f:
            text = f.read().replace("name: mlp_large", f"name: {n}")
        with open(os.path.join(repo, n, "config.yaml"), "w") as f:
            f.write(text + "owner: cycler\n")
    tenants = [tenant_yaml("victim"), tenant_yaml("cycler", extra="    memory_limit: 40MiB\n")]
    extra = "devices: [{name: cpu, memory_budget: 200MiB}]\n"
    victim = VICTIM.format(rate=args.victim_rate)
    # 20 requests/s spread over 6 models of which 2 fit: most are cold loads.
    # The same rate over the 2 that fit is the baseline with the cycler's
    # inference but no churn: it separates the cache's cost from the compute.
    cycler = f"name=cycler,key=cycler-key,model={'+'.join(names)},batch=1,mode=open,rate=20"
    hits = f"name=cycler,key=cycler-key,model={'+'.join(names[:2])},batch=1,mode=open,rate=20"
    alone, warm, churn, loads = [], [], [], []
    for rep in range(args.reps):
        alone.append(run(args, "fair", tenants, [victim], "cache-alone", rep, repo, extra)[0]
                     ["victim"]["p99_ms"])
        warm.append(run(args, "fair", tenants, [victim, hits], "cache-hits", rep, repo, extra)[0]
                    ["victim"]["p99_ms"])
        res, before, after = run(args, "fair", tenants, [victim, cycler], "cache-churn", rep,
                                 repo, extra)
        churn.append(res["victim"]["p99_ms"])
        loads.append(res["cycler"]["ok"])
    change = statistics.median(churn) / statistics.median(alone) - 1
    vs_hits = statistics.median(churn) / statistics.median(warm) - 1
    print("\n== Model cache churn: a tenant cycles 6 private mlp_large copies through a quota "
          "of 2 at 20 requests/s ==")
    print(f"  victim p99 alone {spread(alone)} ms; cycler on 2 resident models {spread(warm)} ms; "
          f"cycler churning 6 {spread(churn)} ms")
    print(f"  churn vs alone {change:+.1%} (< 20%) -> {'MET' if change < 0.2 else 'MISSED'}; "
          f"churn vs the same traffic without misses {vs_hits:+.1%}")
    print(f"  cycler requests served in {args.duration:g} s: {spread(loads)} (the rest were "
          "held to its model_loads_per_second)")
    summary["cache_churn"] = {"alone_p99_ms": alone, "hits_p99_ms": warm, "churn_p99_ms": churn,
                              "change": change, "change_vs_hits": vs_hits}
    discard(args, repo)  # six copies of mlp_large, about 100 MB


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", default=os.path.join(ROOT, "build"), type=os.path.abspath)
    p.add_argument("--out", default=None)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--victim-rate", type=float, default=50)
    p.add_argument("--flood-outstanding", type=int, default=64)
    p.add_argument("--intra-op-threads", type=int, default=0,
                   help="scheduler.intra_op_threads for every run (0 = the daemon's default)")
    p.add_argument("--only", default="noisy,weighted,conservation,rejections,cache")
    p.add_argument("--hold", type=int, default=0,
                   help="server.rejection_hold_per_tenant for every run (0 = refusals answered "
                        "at once)")
    add_keep_flag(p)
    p.add_argument("--shared-client", action="store_true",
                   help="rejection flood: run the victim and the flooder in one loadgen process "
                        "(default: one each)")
    p.add_argument("--device", default="cpu",
                   help="the daemon's one device (cuda:0 on a GPU machine; scripts/gpu-check.sh)")
    p.add_argument("--models", default=None, type=os.path.abspath,
                   help="model repository (default BUILD/demo-models)")
    args = p.parse_args()
    args.scheduler_extra = (f", intra_op_threads: {args.intra_op_threads}"
                            if args.intra_op_threads else "")
    args.fairserve = os.path.join(args.build, "bin", "fairserve")
    args.loadgen = os.path.join(args.build, "bin", "fairserve-loadgen")
    args.inprocess = os.path.join(args.build, "bin", "inprocess_throughput")
    args.models = args.models or os.path.join(args.build, "demo-models")
    args.out = args.out or os.path.join(args.build, "bench-results")
    os.makedirs(args.out, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores; {args.reps} runs of {args.duration:g} s "
          f"(+{args.warmup:g} s warm-up) each")
    summary = {}
    only = args.only.split(",")
    if "noisy" in only:
        noisy_neighbour(args, summary)
    if "weighted" in only:
        weighted_shares(args, summary)
    if "conservation" in only:
        work_conservation_and_batching(args, summary)
    if "rejections" in only:
        rejections(args, summary)
    if "cache" in only:
        cache_churn(args, summary)
    path = os.path.join(args.out, "summary.json")
    merged = json.load(open(path)) if os.path.exists(path) else {}
    merged.update(summary)
    with open(path, "w") as f:
        json.dump(merged, f, indent=1)
    print(f"\nJSON: {os.path.join(args.out, 'summary.json')}")


if __name__ == "__main__":
    main()
