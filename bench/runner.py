#!/usr/bin/python3
"""runner.py: runs peak_flops, bench_engine and bench_torch.py, prints the markdown results.

Called by run.sh (which builds first); see run.sh for the options. Everything each program
prints is kept in <out>/raw.log, the tables in <out>/results.md.

The machine may be shared (other people's builds and tests on the same two cores), so before
each program the runner waits until the machine is quiet, and every timed case reports how much
CPU time other processes took while it ran ("foreign load": /proc/stat minus the program's own
rusage, as a share of all CPUs). A case measured above --max-foreign does not count; cases left
without a clean measurement are run again (--retries). Each figure is the best clean per-run
median over --rounds rounds (alternating engine/torch order); torch's figure is the best of its
configurations. Interference can only slow a run down, so the best run is the least disturbed.
"""
import argparse
import os
import re
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"
HZ = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count()


# ---------------------------------------------------------------- FLOPs of one forward pass
CONVS = {  # out, in, groups, kernel, stride, pad, input side
    "conv_1": (96, 3, 1, 11, 4, 0, 227), "conv_2": (256, 96, 2, 5, 1, 2, 27),
    "conv_3": (384, 256, 1, 3, 1, 1, 13), "conv_4": (384, 384, 2, 3, 1, 1, 13),
    "conv_5": (256, 384, 2, 3, 1, 1, 13)}


def alexnet_flops(classes=1000, useful=False):
    """FLOPs per image (2 x multiply-adds of the convolutions and dense layers): dict by step.

    useful=False: the conventional count, out_c * in_c/groups * k * k * out_h * out_w per conv.
    useful=True: leaves out the multiply-adds with the zero padding, which oneDNN's direct
    convolutions (the engine's and PyTorch's) skip; ~8% less for conv_2 to conv_5."""
    f = {}
    for name, (o, i, g, k, st, pad, side) in CONVS.items():
        out = (side + 2 * pad - k) // st + 1
        if useful:   # (output, tap) pairs per dimension that land inside the image
            taps = sum(1 for y in range(out) for t in range(k) if 0 <= y * st - pad + t < side)
        else:
            taps = out * k
        f[name] = 2 * o * (i // g) * taps * taps
    f["dense_1"] = 2 * 9216 * 4096
    f["dense_2"] = 2 * 4096 * 4096
    f["dense_3"] = 2 * 4096 * classes
    return f


# ---------------------------------------------------------------- machine load
def cpu_jiffies():
    with open("/proc/stat") as fh:
        v = [int(t) for t in fh.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    return user + nice + system + irq + softirq, steal


def busy_fraction(seconds):
    b0, s0 = cpu_jiffies()
    time.sleep(seconds)
    b1, s1 = cpu_jiffies()
    return (b1 - b0) / HZ / (seconds * NCPU), (s1 - s0) / HZ / (seconds * NCPU)


def wait_quiet(log, max_wait, threshold):
    """Waits until the CPUs are below `threshold` busy for 3 s in a row; returns seconds waited."""
    t0 = time.time()
    quiet = 0
    while True:
        busy, _ = busy_fraction(1.0)
        quiet = quiet + 1 if busy < threshold else 0
        if quiet >= 3:
            return time.time() - t0
        if time.time() - t0 > max_wait:
            log(f"# warning: machine still busy ({100 * busy:.0f}% of {NCPU} CPUs) after {max_wait:.0f} s; "
                f"measuring anyway")
            return time.time() - t0


def run_measured(cmd, env, log):
    """Runs cmd; returns (stdout lines, foreign load fraction, steal fraction, wall s)."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    b0, s0 = cpu_jiffies()
    t0 = time.time()
    p = subprocess.run(cmd, env=env, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.time() - t0
    b1, s1 = cpu_jiffies()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    foreign = max(0.0, (b1 - b0) / HZ - own) / (wall * NCPU)
    steal = (s1 - s0) / HZ / (wall * NCPU)
    log(f"$ {' '.join(cmd)}   # rc={p.returncode} wall={wall:.1f}s own_cpu={own:.1f}s "
        f"foreign_load={100 * foreign:.1f}% steal={100 * steal:.1f}%")
    for line in p.stdout.splitlines():
        log(line)
    err = [l for l in p.stderr.splitlines() if "Warning" not in l and "warn(" not in l]
    for line in err[-20:]:
        log("# stderr: " + line)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed (rc {p.returncode})")
    return p.stdout.splitlines(), foreign, steal, wall


def kv(line):
    return dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))


# ---------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="16,64")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--budget", type=float, default=4.0, help="timed seconds per case (and per torch config)")
    ap.add_argument("--torch-configs", default="eager_inference,eager_cl,jit_optimized")
    ap.add_argument("--max-foreign", type=float, default=0.05, help="repeat a run above this foreign load")
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("--quiet-wait", type=float, default=300, help="max seconds to wait for a quiet machine")
    ap.add_argument("--quiet-threshold", type=float, default=0.10)
    ap.add_argument("--layers", action="store_true", help="also per-layer timings of engine and torch")
    ap.add_argument("--torch-variant", action="append", default=[], metavar="VAR=VALUE",
                    help="also measure torch with this environment change (VAR= unsets); repeatable")
    ap.add_argument("--out", default=os.path.join(HERE, "results", time.strftime("%Y%m%d-%H%M%S")))
    a = ap.parse_args()

    os.makedirs(a.out, exist_ok=True)
    raw = open(os.path.join(a.out, "raw.log"), "w")

    def log(s):
        raw.write(s + "\n")
        raw.flush()
        print(s, file=sys.stderr, flush=True)

    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(a.threads)
    openblas = {k: v for k, v in env.items() if k.startswith("OPENBLAS")}
    log(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} OMP_NUM_THREADS={a.threads} OPENBLAS env: {openblas or 'none'}")
    try:
        log("# cpu: " + next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
            + f", {NCPU} CPUs")
    except StopIteration:
        pass

    def measured(cmd, env_=env, retry=True):
        for attempt in range(a.retries + 1 if retry else 1):
            waited = wait_quiet(log, a.quiet_wait, a.quiet_threshold)
            if waited > 5:
                log(f"# waited {waited:.0f} s for a quiet machine")
            out, foreign, steal, wall = run_measured(cmd, env_, log)
            if foreign <= a.max_foreign or attempt == a.retries or not retry:
                return out, foreign
            log(f"# foreign load {100 * foreign:.1f}% > {100 * a.max_foreign:.0f}%: repeating")
        raise AssertionError

    # -------- peak (measured first and again last; the better of the two counts)
    peak = {}

    def run_peak():
        out, _ = measured(["./peak_flops", str(a.threads), "4096"])
        for line in out:
            d = kv(line)
            if line.startswith("peak ") and int(d.get("threads", 0)) == a.threads:
                k = line.split()[1]
                v = (float(d["gflops"]), float(d["best_gflops"]))
                if k not in peak or v[1] > peak[k][1]:
                    peak[k] = v

    run_peak()

    flops = alexnet_flops(1000)
    f_feat = sum(v for k, v in flops.items() if k.startswith("conv"))
    f_full = sum(flops.values())
    uflops = alexnet_flops(1000, useful=True)
    u_feat = sum(v for k, v in uflops.items() if k.startswith("conv"))
    u_full = sum(uflops.values())

    # -------- throughput
    batches = [int(b) for b in a.batches.split(",")]
    configs = a.torch_configs.split(",")
    # (tool, case, batch, config) -> (ips, config, foreign); config "" for the engine
    clean = {}      # best measurement below --max-foreign
    any_ = {}       # best measurement, clean or not (the fallback)
    mem = {}        # (tool, batch) -> MB
    info = {}
    common = ["--budget", str(a.budget), "--threads", str(a.threads)]

    def record(tool, out, b):
        for line in out:
            parts = line.split()
            if len(parts) < 3:
                continue
            d = kv(line)
            # engine: "engine <case> ..."; torch: every configuration, "torch_config <case> ..."
            if parts[0] in ("engine", "torch_config") and parts[1] in ("features", "full"):
                key = (tool, parts[1], int(d["batch"]), d.get("config", ""))
                m = (float(d["ips"]), d.get("config", ""), float(d.get("foreign", -1)))
                if key not in any_ or m[0] > any_[key][0]:
                    any_[key] = m
                if 0 <= m[2] <= a.max_foreign and (key not in clean or m[0] > clean[key][0]):
                    clean[key] = m
            elif parts[0] == tool and parts[1] == "info":
                info[tool] = line
            elif parts[0] == tool and parts[1] == "memory" and tool == "engine":
                # the engine process (features then full) is the memory figure as it is
                mem[("engine", b)] = max(mem.get(("engine", b), 0), float(d["peak_rss_mb"]))

    def bench(tool, b, cases="features,full", cfgs=a.torch_configs):
        if tool == "engine":
            cmd = ["./bench_engine", "--batches", str(b), "--cases", cases] + common
        else:
            cmd = [PY, "bench_torch.py", "--batches", str(b), "--cases", cases, "--configs", cfgs] + common
        out, _ = measured(cmd, retry=False)
        record(tool, out, b)

    for r in range(a.rounds):
        for bi, b in enumerate(batches):
            for tool in (["engine", "torch"] if (r + bi) % 2 == 0 else ["torch", "engine"]):
                bench(tool, b)
    # a case (for torch: a case in one configuration) without a clean measurement (foreign load
    # above --max-foreign) is measured again
    wanted = [("engine", c, b, "") for c in ("features", "full") for b in batches] + \
             [("torch", c, b, cfg) for c in ("features", "full") for b in batches for cfg in configs]
    for attempt in range(a.retries):
        missing = [k for k in wanted if k not in clean]
        if not missing:
            break
        for t, c, b, cfg in missing:
            log(f"# no clean measurement of {t} {c} batch={b} {cfg} yet: measuring again")
            bench(t, b, c, cfg)
    for k in wanted:
        if k not in clean and k in any_:
            log(f"# warning: {k} has no measurement below {100 * a.max_foreign:.0f}% foreign load; "
                f"using the best disturbed one")
            clean[k] = any_[k]
    best = {}       # (tool, case, batch) -> (ips, config, foreign); torch: its best configuration
    for (t, c, b, cfg), m in clean.items():
        if (t, c, b) not in best or m[0] > best[(t, c, b)][0]:
            best[(t, c, b)] = m


    # torch memory: one process per batch running only the best configuration (of the full case),
    # features then full, as the engine process does
    for b in batches:
        cfg = best[("torch", "full", b)][1]
        out, _ = measured([PY, "bench_torch.py", "--batches", str(b), "--configs", cfg, "--budget", "0",
                           "--min-reps", "3", "--warmup", "1", "--threads", str(a.threads)])
        for line in out:
            if line.startswith("torch memory"):
                mem[("torch", b)] = (float(kv(line)["peak_rss_mb"]), cfg)

    # torch under other environments (dense layers use OpenBLAS, so OPENBLAS_CORETYPE can matter):
    # each --torch-variant VAR=VALUE (VAR= unsets it); when OPENBLAS_CORETYPE is set, "unset" is added
    variants = list(a.torch_variant)
    if "OPENBLAS_CORETYPE" in env and "OPENBLAS_CORETYPE=" not in variants:
        variants.append("OPENBLAS_CORETYPE=")
    variant_best = {}   # (variant, case, batch) -> (ips, config, foreign)
    for var in variants:
        name, _, value = var.partition("=")
        env2 = {k: v for k, v in env.items() if k != name}
        if value:
            env2[name] = value
        for b in batches:
            for attempt in range(a.retries + 1):
                out, _ = measured([PY, "bench_torch.py", "--batches", str(b), "--configs", a.torch_configs]
                                  + common, env2, retry=False)
                all_clean = True
                for line in out:
                    parts = line.split()
                    if len(parts) > 2 and parts[0] == "torch_config" and parts[1] in ("features", "full"):
                        d = kv(line)
                        m = (float(d["ips"]), d["config"], float(d["foreign"]))
                        key = (var, parts[1], b)
                        ok = 0 <= m[2] <= a.max_foreign
                        all_clean = all_clean and ok
                        if ok and (key not in variant_best or m[0] > variant_best[key][0]):
                            variant_best[key] = m
                if all_clean:
                    break

    # -------- per-layer (optional)
    layers = {}     # (batch, step) -> {"engine": ms, "nchw": ms, "nhwc": ms}
    if a.layers:
        for b in batches:
            out, _ = measured(["./bench_engine", "--batches", str(b), "--layers", "--cases", "full"] + common)
            for line in out:
                if line.startswith("engine_layer"):
                    d = kv(line)
                    layers.setdefault((b, d["step"]), {})["engine"] = float(d["ms"])
        out, _ = measured([PY, "profile_torch.py", "--batches", a.batches, "--threads", str(a.threads)])
        for line in out:
            if line.startswith("torch_layer"):
                d = kv(line)
                layers.setdefault((int(d["batch"]), d["step"]), {})[d["layout"]] = float(d["ms"])

    run_peak()
    fma_peak = max(v[1] for k, v in peak.items() if k.startswith("fma"))
    sgemm_peak = peak["sgemm"][1]

    # -------- report
    L = []
    L.append(f"## AlexNet forward, CPU, {a.threads} threads ({time.strftime('%Y-%m-%d %H:%M')})")
    L.append("")
    L.append(f"- engine: {info.get('engine', '?')}")
    L.append(f"- torch: {info.get('torch', '?')}")
    L.append(f"- peak (peak_flops, {a.threads} threads): FMA loop {fma_peak:.1f} GFLOP/s "
             f"(fma512 {peak.get('fma512', (0, 0))[1]:.1f}, fma256 {peak.get('fma256', (0, 0))[1]:.1f}); "
             f"dnnl_sgemm 4096^3 {sgemm_peak:.1f} GFLOP/s (best repetition of the better of two runs, "
             f"one before and one after the benchmarks)")
    L.append(f"- FLOPs per image (2 x multiply-adds of conv and dense layers, 1000 classes): "
             f"features {f_feat:,} ({f_feat / 1e9:.4f} GFLOP), full {f_full:,} ({f_full / 1e9:.4f} GFLOP). "
             f"Without the multiply-adds on zero padding (which oneDNN's direct convolutions skip, so "
             f"the conventional count can exceed the peak): features {u_feat:,}, full {u_full:,} ("
             f"{u_full / 1e9:.4f} GFLOP)")
    L.append(f"- policy: median over timed repetitions (>= {a.budget:g} s per case and torch config, "
             f"after warm-up), best of {a.rounds} rounds; torch = best of configs {a.torch_configs}")
    L.append("")
    L.append("| case | batch | engine img/s | torch img/s | engine/torch | engine GFLOP/s | "
             "% of FMA peak | % of sgemm peak | engine useful GFLOP/s (% of FMA peak) | torch GFLOP/s | "
             "torch config | foreign load |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for case, fl, ufl in (("features", f_feat, u_feat), ("full", f_full, u_full)):
        for b in batches:
            e, _, fe = best.get(("engine", case, b), (float("nan"), "", -1))
            t, cfg, ft = best.get(("torch", case, b), (float("nan"), "", -1))
            eg = e * fl / 1e9
            fo = max(fe, ft)
            L.append(f"| {case} | {b} | {e:.1f} | {t:.1f} | {e / t:.2f} | {eg:.1f} | "
                     f"{100 * eg / fma_peak:.0f}% | {100 * eg / sgemm_peak:.0f}% | "
                     f"{e * ufl / 1e9:.1f} ({100 * e * ufl / 1e9 / fma_peak:.0f}%) | {t * fl / 1e9:.1f} | {cfg} | "
                     f"{100 * fo:.1f}% |")
    L.append("")
    L.append("torch by configuration (img/s, best clean median):")
    L.append("")
    L.append("| case | batch | " + " | ".join(configs) + " |")
    L.append("|---|---|" + "---|" * len(configs))
    for case in ("features", "full"):
        for b in batches:
            L.append(f"| {case} | {b} | " + " | ".join(
                f"{clean[('torch', case, b, cfg)][0]:.1f}" if ("torch", case, b, cfg) in clean else "-"
                for cfg in configs) + " |")
    L.append("")
    L.append("foreign load: CPU time other processes took during the timed runs that gave the figures "
             f"(the larger of engine and torch), as a share of {NCPU} CPUs; each program waited for a quiet "
             f"machine first and cases above {100 * a.max_foreign:.0f}% were measured again.")
    L.append("")
    L.append("| batch | engine peak RSS (MB) | torch peak RSS (MB) |")
    L.append("|---|---|---|")
    for b in batches:
        tm = mem.get(("torch", b), (float("nan"), ""))
        L.append(f"| {b} | {mem.get(('engine', b), float('nan')):.0f} | {tm[0]:.0f} ({tm[1]}) |")
    L.append("")
    L.append("Peak RSS: ru_maxrss of one process per batch size that runs features then full "
             "(torch: its best full-case configuration only).")
    L.append("")
    L.append(f"OPENBLAS_CORETYPE in this environment: {env.get('OPENBLAS_CORETYPE', 'not set')} "
             f"(OpenBLAS picks its kernels from CPUID when unset).")
    if variant_best:
        L.append("")
        L.append("torch under other environments (best clean configuration; foreign load in brackets):")
        L.append("")
        L.append("| case | batch | torch img/s (this environment) | " +
                 " | ".join(f"torch img/s with {v if not v.endswith('=') else v[:-1] + ' unset'}"
                            for v in variants) + " |")
        L.append("|---|---|---|" + "---|" * len(variants))
        for case in ("features", "full"):
            for b in batches:
                cells = []
                for v in variants:
                    m = variant_best.get((v, case, b))
                    cells.append(f"{m[0]:.1f} ({m[1]}) [{100 * m[2]:.1f}%]" if m else "-")
                L.append(f"| {case} | {b} | {best[('torch', case, b)][0]:.1f} | " + " | ".join(cells) + " |")
    if layers:
        L.append("")
        L.append("Per step, ms per batch. engine: difference of the median forward time up to this step and up "
                 "to the previous one (includes the change in the cost of returning the output in plain layout; "
                 "noisy, can be negative); torch: eager, each step timed alone on its input (nchw = default, "
                 "nhwc = channels_last). Engine GFLOP/s: conventional count (useful count in brackets).")
        L.append("")
        L.append("| batch | step | engine ms | torch nchw ms | torch nhwc ms | engine GFLOP/s |")
        L.append("|---|---|---|---|---|---|")
        for (b, step), v in layers.items():
            if step == "mean":
                continue
            e = v.get("engine", float("nan"))
            g = (f"{flops[step] * b / e / 1e6:.0f} ({uflops[step] * b / e / 1e6:.0f})"
                 if step in flops and e > 0 else "-")
            L.append(f"| {b} | {step} | {e:.1f} | {v.get('nchw', float('nan')):.1f} | "
                     f"{v.get('nhwc', float('nan')):.1f} | {g} |")
    report = "\n".join(L)
    with open(os.path.join(a.out, "results.md"), "w") as fh:
        fh.write(report + "\n")
    print(report)
    log(f"# results in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
