"""Training throughput of PyTorch on the same AlexNet (bench_torch.AlexNet):
SGD with Nesterov momentum, cross-entropy, dropout 0.5, two threads; with
"bf16", the forward and loss under torch.autocast("cpu", dtype=torch.bfloat16)
(the backward follows the forward's types), channels_last when that is faster,
denormals flushed (torch.set_flush_denormal) when that is faster: on Intel
cores f32 training takes a microcode assist for each denormal operand.
Usage: bench_train.py [batch 16] [steps 12] [f32|bf16]
Prints: torch train[_bf16] batch=B ips=X peak_rss_mb=M"""
import contextlib
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from bench_torch import AlexNet


def main():
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    bf16 = len(sys.argv) > 3 and sys.argv[3] == "bf16"
    torch.set_num_threads(2)
    best = None
    for channels_last, flush in [(c, f) for c in ([False, True] if bf16 else [False]) for f in (False, True)]:
        torch.set_flush_denormal(flush)
        torch.manual_seed(1)
        net = AlexNet(classes=2).train()
        x = torch.randint(0, 256, (batch, 3, 227, 227)).float()
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.SGD(net.parameters(), lr=1e-5, momentum=0.9, nesterov=True)
        y = torch.arange(batch) % 2
        ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
        times = []
        for s in range(steps + 2):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            with ctx():
                # the model ends in a softmax: cross-entropy is the NLL of its log
                loss = F.nll_loss(torch.log(net(x).float()), y)
            loss.backward()
            opt.step()
            if s >= 2:
                times.append(time.perf_counter() - t0)
        ips = batch / statistics.median(times)
        if best is None or ips > best[0]:
            best = (ips, channels_last, flush)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"torch train{'_bf16' if bf16 else ''} batch={batch} ips={best[0]:.2f} steps={steps} "
          f"peak_rss_mb={peak:.1f} threads={torch.get_num_threads()} channels_last={int(best[1])} "
          f"flush_denormal={int(best[2])}")


if __name__ == "__main__":
    main()
