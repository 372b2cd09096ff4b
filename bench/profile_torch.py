#!/usr/bin/python3
"""profile_torch.py: where PyTorch spends its time in the AlexNet forward pass (2 threads).

1. Stage by stage: the eager model's forward cut into its steps (the engine's named outputs),
   each timed alone on its real input; median over repetitions, in ms per batch.
   Printed as "torch_layer batch=16 layout=nchw step=conv_1 ms=... gflops=...".
2. torch.profiler over a few forward passes of the configuration given by --config
   (default jit_optimized), operators sorted by self CPU time.

Usage: /usr/bin/python3 profile_torch.py [--batches 16,64] [--threads 2] [--reps 10]
                                         [--config jit_optimized] [--no-profiler]
"""
import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from bench_torch import AlexNet, build

CONVS = {"conv_1": (96, 3, 1, 11, 55), "conv_2": (256, 96, 2, 5, 27), "conv_3": (384, 256, 1, 3, 13),
         "conv_4": (384, 384, 2, 3, 13), "conv_5": (256, 384, 2, 3, 13)}
DENSES = {"dense_1": (9216, 4096), "dense_2": (4096, 4096), "dense_3": (4096, 1000)}


def flops(step):
    if step in CONVS:
        o, i, g, k, hw = CONVS[step]
        return 2 * o * (i // g) * k * k * hw * hw
    if step in DENSES:
        i, o = DENSES[step]
        return 2 * i * o
    return 0


def stages(m):
    """(name, function) in the engine's step order; conv and dense steps include their ReLU."""
    return [
        ("mean", lambda x: x - m.mean),
        ("conv_1", lambda x: F.relu(m.conv_1(x))),
        ("pool_1", lambda x: F.max_pool2d(x, 3, 2)),
        ("convpool_1", m.lrn),
        ("conv_2", lambda x: F.relu(m.conv_2(x))),
        ("pool_2", lambda x: F.max_pool2d(x, 3, 2)),
        ("lrn_2", m.lrn),
        ("conv_3", lambda x: F.relu(m.conv_3(x))),
        ("conv_4", lambda x: F.relu(m.conv_4(x))),
        ("conv_5", lambda x: F.relu(m.conv_5(x))),
        ("convpool_5", lambda x: F.max_pool2d(x, 3, 2)),
        ("dense_1", lambda x: F.relu(m.dense_1(torch.flatten(x, 1)))),
        ("dense_2", lambda x: F.relu(m.dense_2(x))),
        ("dense_3", m.dense_3),
        ("softmax", lambda x: F.softmax(x, dim=1)),
    ]


def time_stages(batch, reps, channels_last):
    torch.manual_seed(42)
    m = AlexNet(1000).eval()
    x = torch.rand(batch, 3, 227, 227) * 255.0
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    layout = "nhwc" if channels_last else "nchw"
    total = 0.0
    with torch.inference_mode():
        for name, fn in stages(m):
            for _ in range(2):
                y = fn(x)
            ts = []
            for _ in range(reps):
                t0 = time.perf_counter()
                y = fn(x)
                ts.append(time.perf_counter() - t0)
            ms = 1e3 * statistics.median(ts)
            total += ms
            f = flops(name) * batch
            g = f"{f / ms / 1e6:.1f}" if f else "-"
            print(f"torch_layer batch={batch} layout={layout} step={name} ms={ms:.3f} cum_ms={total:.3f} "
                  f"gflops={g}", flush=True)
            x = y


def profile(batch, config, reps):
    torch.manual_seed(42)
    x = torch.rand(batch, 3, 227, 227) * 255.0
    fn, ctx, prep = build(config, False, x)
    x = prep(x)
    with ctx():
        for _ in range(3):
            fn(x)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(reps):
                fn(x)
    print(f"# torch.profiler: config={config} batch={batch}, {reps} forward passes (full), "
          f"times are totals over the passes")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="16,64")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--config", default="jit_optimized")
    ap.add_argument("--no-profiler", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if torch.get_num_threads() != a.threads:
        print(f"profile_torch: torch uses {torch.get_num_threads()} threads", file=sys.stderr)
        return 1
    for b in [int(s) for s in a.batches.split(",")]:
        time_stages(b, a.reps, False)
        time_stages(b, a.reps, True)
        if not a.no_profiler:
            profile(b, a.config, max(3, a.reps // 3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
