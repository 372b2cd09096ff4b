#!/usr/bin/python3
"""bench_torch.py: the engine's AlexNet in PyTorch, timed the way bench_engine times the engine.

Network (grouped AlexNet, channels first, input 3x227x227, RGB 0..255):
  mean subtraction; conv 96 11x11/4 ReLU; max 3/2; LRN; pad 2 conv 256 5x5 g2 ReLU; max 3/2;
  LRN; pad 1 conv 384 3x3 ReLU; pad 1 conv 384 3x3 g2 ReLU; pad 1 conv 256 3x3 g2 ReLU; max 3/2
  (= convpool_5, 256x6x6); flatten; dense 4096 ReLU; dropout; dense 4096 ReLU; dropout;
  dense 1000; softmax.
LRN: nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2), i.e. the Heuritech form with
alpha = 1e-4 not divided by n (torch divides alpha by n).

Cases: "features" (up to convpool_5, 9216 floats per image) and "full" (up to softmax).
Configurations tried per case and batch (all fp32, eval mode, 2 threads):
  eager_nograd     eager module under torch.no_grad()
  eager_inference  eager module under torch.inference_mode()
  eager_cl         channels_last memory format, inference_mode
  jit_frozen       torch.jit.trace + torch.jit.freeze (conv/ReLU folding), inference_mode
  jit_optimized    torch.jit.optimize_for_inference (oneDNN conv layout conversion), inference_mode
With --precision bf16 the cases become features_bf16 and full_bf16, over bf16 configurations:
  autocast         eager, torch.autocast("cpu", dtype=torch.bfloat16), inference_mode
  autocast_cl      the same in channels_last
(A module converted to bfloat16 outright fails in torch 1.13: its LRN's avg_pool3d has no
bfloat16 kernel on the CPU.)
The best configuration per case and batch is reported as "torch <case> batch=<n> ips=...";
every configuration is reported as "torch_config ...".

Measurement policy (the same as bench_engine): `--warmup` untimed runs, then timed runs until
`--budget` seconds have passed (at least --min-reps, at most --max-reps); the figure is the
median over repetitions of images / seconds-per-batch. `foreign` on each line is the share of
the machine's CPUs that other processes used during the timed runs (/proc/stat minus this
process's rusage).

Usage: /usr/bin/python3 bench_torch.py [--batches 16,64] [--cases features,full]
         [--threads 2] [--budget 4] [--configs all|name,name] [--check] [--precision f32|bf16]
"""
import argparse
import contextlib
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN = (123.68, 116.779, 103.939)


class AlexNet(nn.Module):
    def __init__(self, classes=1000, features_only=False):
        super().__init__()
        self.features_only = features_only
        self.register_buffer("mean", torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1))
        self.conv_1 = nn.Conv2d(3, 96, 11, stride=4)
        self.conv_2 = nn.Conv2d(96, 256, 5, padding=2, groups=2)
        self.conv_3 = nn.Conv2d(256, 384, 3, padding=1)
        self.conv_4 = nn.Conv2d(384, 384, 3, padding=1, groups=2)
        self.conv_5 = nn.Conv2d(384, 256, 3, padding=1, groups=2)
        self.lrn = nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)
        self.dense_1 = nn.Linear(9216, 4096)
        self.dense_2 = nn.Linear(4096, 4096)
        self.dense_3 = nn.Linear(4096, classes)
        self.dropout = nn.Dropout(0.5)
        for m in self.modules():   # he_normal, zero biases (as the engine)
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = x - self.mean
        x = F.relu(self.conv_1(x))
        x = self.lrn(F.max_pool2d(x, 3, 2))
        x = F.relu(self.conv_2(x))
        x = self.lrn(F.max_pool2d(x, 3, 2))
        x = F.relu(self.conv_3(x))
        x = F.relu(self.conv_4(x))
        x = F.relu(self.conv_5(x))
        x = F.max_pool2d(x, 3, 2)
        if self.features_only:
            return x
        x = torch.flatten(x, 1)
        x = self.dropout(F.relu(self.dense_1(x)))
        x = self.dropout(F.relu(self.dense_2(x)))
        x = self.dense_3(x)
        return F.softmax(x, dim=1)


def conv_dense_macs(classes=1000):
    """Multiply-adds of one forward pass: (features, full)."""
    convs = [  # out, in, groups, k, out_hw
        (96, 3, 1, 11, 55), (256, 96, 2, 5, 27), (384, 256, 1, 3, 13),
        (384, 384, 2, 3, 13), (256, 384, 2, 3, 13)]
    conv = sum(o * (i // g) * k * k * hw * hw for o, i, g, k, hw in convs)
    dense = 9216 * 4096 + 4096 * 4096 + 4096 * classes
    return conv, conv + dense


CONFIGS = ["eager_nograd", "eager_inference", "eager_cl", "jit_frozen", "jit_optimized"]
BF16_CONFIGS = ["autocast", "autocast_cl"]


def build(config, features_only, example):
    """Returns (callable taking the input batch, context-manager factory, input transform)."""
    model = AlexNet(1000, features_only).eval()
    ident = lambda x: x
    if config == "eager_nograd":
        return model, torch.no_grad, ident
    if config == "eager_inference":
        return model, torch.inference_mode, ident
    if config == "eager_cl":
        model = model.to(memory_format=torch.channels_last)
        return model, torch.inference_mode, lambda x: x.contiguous(memory_format=torch.channels_last)
    if config in ("autocast", "autocast_cl"):
        if config == "autocast_cl":
            model = model.to(memory_format=torch.channels_last)
        cl = config == "autocast_cl"

        @contextlib.contextmanager
        def ctx():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                yield
        return model, ctx, (lambda x: x.contiguous(memory_format=torch.channels_last)) if cl else ident
    if config in ("jit_frozen", "jit_optimized"):
        with torch.no_grad():
            traced = torch.jit.trace(model, example)
            if config == "jit_frozen":
                m = torch.jit.freeze(traced)
            else:
                m = torch.jit.optimize_for_inference(traced)
        return m, torch.no_grad, ident
    raise ValueError(config)


def machine_busy_s():
    """CPU seconds all processes spent busy (user+nice+system+irq+softirq), from /proc/stat."""
    with open("/proc/stat") as fh:
        v = [int(t) for t in fh.readline().split()[1:8]]
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / os.sysconf("SC_CLK_TCK")


def snap():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), machine_busy_s(), ru.ru_utime + ru.ru_stime


def foreign_load(a, b):
    """Share of the machine's CPUs that other processes used between two snapshots."""
    return max(0.0, ((b[1] - a[1]) - (b[2] - a[2])) / (os.cpu_count() * (b[0] - a[0])))


def measure(fn, ctx, x, warmup, budget, min_reps, max_reps):
    n = x.shape[0]
    with ctx():
        for _ in range(warmup):
            fn(x)
        rates = []
        s0 = snap()
        start = time.perf_counter()
        while len(rates) < max_reps:
            t0 = time.perf_counter()
            y = fn(x)
            dt = time.perf_counter() - t0
            rates.append(n / dt)
            if len(rates) >= min_reps and time.perf_counter() - start >= budget:
                break
        foreign = foreign_load(s0, snap())
    return statistics.median(rates), len(rates), y, foreign


WALL0 = time.perf_counter()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="16,64")
    ap.add_argument("--cases", default="features,full")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget", type=float, default=4.0, help="seconds of timed runs per configuration")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--min-reps", type=int, default=5)
    ap.add_argument("--max-reps", type=int, default=200)
    ap.add_argument("--configs", default="all")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--check", action="store_true", help="check that all configurations agree")
    ap.add_argument("--precision", default="f32", choices=["f32", "bf16"])
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    got = torch.get_num_threads()
    if got != a.threads:
        print(f"bench_torch: asked for {a.threads} threads, torch uses {got}", file=sys.stderr)
        return 1
    all_configs = BF16_CONFIGS if a.precision == "bf16" else CONFIGS
    configs = all_configs if a.configs == "all" else a.configs.split(",")
    suffix = "_bf16" if a.precision == "bf16" else ""
    print(f"torch info version={torch.__version__} threads={got} "
          f"interop_threads={torch.get_num_interop_threads()} "
          f"mkldnn={int(torch.backends.mkldnn.is_available())} "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '')}", flush=True)
    f_macs, t_macs = conv_dense_macs(1000)
    print(f"flops features_per_image={2 * f_macs} full_per_image={2 * t_macs}", flush=True)

    for batch in [int(b) for b in a.batches.split(",")]:
        x = torch.rand(batch, 3, 227, 227) * 255.0
        for case in a.cases.split(","):
            features_only = case == "features"
            best = None
            ref = None
            for config in configs:
                torch.manual_seed(a.seed)   # the same weights in every configuration
                fn, ctx, prep = build(config, features_only, x)
                xi = prep(x)
                ips, reps, y, foreign = measure(fn, ctx, xi, a.warmup, a.budget, a.min_reps, a.max_reps)
                print(f"torch_config {case}{suffix} batch={batch} config={config} ips={ips:.2f} reps={reps} "
                      f"foreign={foreign:.3f}", flush=True)
                if a.check:
                    y = y.contiguous().float()
                    if ref is None:
                        ref = y
                    else:
                        err = (y - ref).abs().max().item() / max(ref.abs().max().item(), 1e-30)
                        print(f"torch_check {case}{suffix} batch={batch} config={config} max_rel_diff={err:.2e}",
                              flush=True)
                if best is None or ips > best[0]:
                    best = (ips, config, reps, foreign)
                del fn
            print(f"torch {case}{suffix} batch={batch} ips={best[0]:.2f} config={best[1]} reps={best[2]} "
                  f"foreign={best[3]:.3f}", flush=True)

    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(f"torch memory batches={a.batches} peak_rss_mb={ru.ru_maxrss / 1024:.1f} "
          f"cpu_s={ru.ru_utime + ru.ru_stime:.2f} wall_s={time.perf_counter() - WALL0:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
