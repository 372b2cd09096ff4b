"""bench_gpu.py: PyTorch's AlexNet (bench_torch.AlexNet, the engine's network)
on a CUDA GPU, timed as bench_gpu.c times the engine: images come from host
memory every step, features go back to the host, a training step ends when
its loss is on the host (loss.item()). cuDNN autotuning on (benchmark=True),
PyTorch's default math (TF32 in convolutions, FP32 matmuls); with
--precision bf16, its autocast to bfloat16 (cases named <case>_bf16).

Usage: python3 bench_gpu.py [--batches 16,128] [--steps 30] [--warmup 5] [--precision f32|bf16]
Output: torch_gpu <case> batch=B ips=X ms=Y   (median over steps)"""
import argparse
import contextlib
import statistics
import time

import torch
import torch.nn.functional as F

from bench_torch import AlexNet


def timed(fn, steps, warmup):
    times = []
    for s in range(warmup + steps):
        t0 = time.perf_counter()
        fn()
        if s >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="16,128")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--precision", default="f32", choices=["f32", "bf16"])
    a = ap.parse_args()
    bf16 = a.precision == "bf16"
    suffix = "_bf16" if bf16 else ""

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    if not torch.cuda.is_available():
        print("torch_gpu skipped: torch.cuda.is_available() is False")
        return 3
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda:0")
    print(f'torch_gpu info device="{torch.cuda.get_device_name(0)}" torch={torch.__version__} '
          f'cuda={torch.version.cuda} cudnn={torch.backends.cudnn.version()} '
          f'tf32_conv={torch.backends.cudnn.allow_tf32} tf32_matmul={torch.backends.cuda.matmul.allow_tf32}')
    for n in [int(b) for b in a.batches.split(",")]:
        x = torch.randint(0, 256, (n, 3, 227, 227)).float()
        y = torch.arange(n) % 2
        feat_net = AlexNet(2, features_only=True).to(dev).eval()

        def features():
            with torch.inference_mode(), autocast():
                feat_net(x.to(dev)).float().cpu()

        ms = timed(features, a.steps, a.warmup) * 1e3
        print(f"torch_gpu features{suffix} batch={n} ips={n / ms * 1e3:.1f} ms={ms:.3f}", flush=True)
        full_net = AlexNet(2).to(dev).eval()

        def inference():
            with torch.inference_mode(), autocast():
                full_net(x.to(dev)).float().cpu()

        ms = timed(inference, a.steps, a.warmup) * 1e3
        print(f"torch_gpu inference{suffix} batch={n} ips={n / ms * 1e3:.1f} ms={ms:.3f}", flush=True)
        net = AlexNet(2).to(dev).train()
        opt = torch.optim.SGD(net.parameters(), lr=1e-5, momentum=0.9, nesterov=True)

        def train():
            opt.zero_grad(set_to_none=True)
            with autocast():
                prob = net(x.to(dev))
            loss = F.nll_loss(torch.log(prob.float()), y.to(dev))
            loss.backward()
            opt.step()
            loss.item()

        ms = timed(train, a.steps, a.warmup) * 1e3
        print(f"torch_gpu train{suffix} batch={n} ips={n / ms * 1e3:.1f} ms={ms:.3f}", flush=True)
        del feat_net, full_net, net, opt
        torch.cuda.empty_cache()


if __name__ == "__main__":
    raise SystemExit(main())
