"""Training throughput of PyTorch on the same AlexNet (bench_torch.AlexNet):
SGD with Nesterov momentum, cross-entropy, dropout 0.5, two threads.
Prints: torch train batch=B ips=X peak_rss_mb=M"""
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
    torch.set_num_threads(2)
    torch.manual_seed(1)
    net = AlexNet(classes=2).train()
    opt = torch.optim.SGD(net.parameters(), lr=1e-5, momentum=0.9, nesterov=True)
    x = torch.randint(0, 256, (batch, 3, 227, 227)).float()
    y = torch.arange(batch) % 2
    times = []
    for s in range(steps + 2):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        # the model ends in a softmax: cross-entropy is the NLL of its log
        F.nll_loss(torch.log(net(x)), y).backward()
        opt.step()
        if s >= 2:
            times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"torch train batch={batch} ips={batch / statistics.median(times):.2f} steps={steps} "
          f"peak_rss_mb={peak:.1f} threads={torch.get_num_threads()}")


if __name__ == "__main__":
    main()
