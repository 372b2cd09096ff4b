#!/usr/bin/python3
"""bench_variants.py: PyTorch on the ImageNet AlexNets that alexnet(arch =) runs, timed as
bench_variants.R times the package: torchvision's own torchvision.models.alexnet(), and
Caffe's BVLC AlexNet written here (grouped convolutions, conv -> ReLU -> LRN -> pool in the
first two blocks, LRN(5, alpha 1e-4, beta 0.75, k 1), 227 input).

Cases per variant: features (the convolutional part, up to pool 5: 256 x 6 x 6) on batches of
32, best of eager and channels-last under inference_mode; training (2-class head, SGD with
Nesterov momentum, cross-entropy, train mode with dropout) on batches of 16, eager and
channels-last. With --precision bf16: torch.autocast("cpu", dtype=torch.bfloat16) around the
same. 2 threads. Median over repetitions until --budget seconds (2 warm-up runs, at least 3).

Usage: /usr/bin/python3 bench_variants.py [--budget 3] [--threads 2] [--precision f32|bf16]
Prints: torch <case>_<arch>[_bf16] batch=B ips=X config=NAME
"""
import argparse
import contextlib
import statistics
import time

import torch
import torch.nn as nn
import torchvision


def caffe_alexnet():
    features = nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(inplace=True),
        nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(inplace=True),
        nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
    classifier = nn.Sequential(
        nn.Linear(9216, 4096), nn.ReLU(inplace=True), nn.Dropout(),
        nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(), nn.Linear(4096, 1000))
    net = nn.Module()
    net.features, net.classifier = features, classifier
    net.forward = lambda x: classifier(torch.flatten(features(x), 1))
    return net


def make(arch, classes):
    if arch == "torchvision":
        net = torchvision.models.alexnet()
        net.classifier[6] = nn.Linear(4096, classes)
        return net, 224
    net = caffe_alexnet()
    net.classifier[6] = nn.Linear(4096, classes)
    return net, 227


def timed(step, images, budget):
    for _ in range(2):
        step()
    times, start = [], time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < budget:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return images / statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="f32", choices=["f32", "bf16"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    bf16 = a.precision == "bf16"
    suffix = "_bf16" if bf16 else ""
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    for arch in ("caffe", "torchvision"):
        best = {}
        for fmt in ("eager", "channels_last"):
            mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
            net, size = make(arch, 2)
            net = net.to(memory_format=mf)
            x = (torch.rand(32, 3, size, size) * 255).to(memory_format=mf)
            net.eval()

            def features():
                with torch.inference_mode(), autocast():
                    net.features(x)
            ips = timed(features, 32, a.budget)
            if ips > best.get("features", (0, ""))[0]:
                best["features"] = (ips, fmt)
            net.train()
            opt = torch.optim.SGD(net.parameters(), lr=1e-5, momentum=0.9, nesterov=True)
            xb = (torch.rand(16, 3, size, size) * 255).to(memory_format=mf)
            yb = torch.randint(0, 2, (16,))
            loss_fn = nn.CrossEntropyLoss()

            def train_step():
                opt.zero_grad(set_to_none=True)
                with autocast():
                    loss = loss_fn(net(xb), yb)
                loss.backward()
                opt.step()
            ips = timed(train_step, 16, a.budget)
            if ips > best.get("train", (0, ""))[0]:
                best["train"] = (ips, fmt)
        for case, batch in (("features", 32), ("train", 16)):
            ips, fmt = best[case]
            print(f"torch {case}_{arch}{suffix} batch={batch} ips={ips:.2f} config={fmt}", flush=True)


if __name__ == "__main__":
    main()
