#!/usr/bin/python3
"""Write the engine's reference fixtures (tests/engine/fixtures/*.anfx).

Development tool only: needs PyTorch and numpy (Debian: python3-torch); the
package never runs it. Usage:
    /usr/bin/python3 tools/make_fixtures.py [OUTDIR [ops|image|net|train|bf16|gradcam|arch|foreign ...]]
(default: all; train takes a minute or two, for its near-tie list).

No weights or inputs are stored: both sides regenerate them with the hash fill
below (C twin: tests/engine/hashfill.h), so the fixtures hold only shapes and
reference outputs. References are computed in float64 from the float32 inputs,
so they are the exact answer up to one final rounding, not torch's own float32
summation order.

Hash fill (bit-identical in C):
  splitmix64(x): x += 0x9E3779B97F4A7C15; z = x;
                 z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
                 z = (z ^ (z >> 27)) * 0x94D049BB133111EB; return z ^ (z >> 31)
  hash_uniform(stream, i) = (float)(splitmix64((stream << 32) + i) >> 40) * 2^-23 - 1
  fill(stream, count, scale)[i] = hash_uniform(stream, i) * scale   (float32 multiply)
  images: 127.5f + fill(stream, count, 127.5f)[i]  (float32 add)
  scale for weights: (float)sqrt(6.0 / fan_in), fan_in = in/groups*kh*kw (He uniform);
      whole-net dense_3 uses (float)(sqrt(6.0 / 4096) / 32) so the softmax is not saturated

Streams:
  per-op case c (1-based, listed in OPS):  x = 16c+0, w = 16c+1, b = 16c+2, r = 16c+3
      (r is dy, the gradient of L = sum(y * r))
  whole net: parameter layer j (0..7, alexnet.h order): weight 1000+2j, bias 1001+2j;
      input images (2 x 3 x 227 x 227) 2000
  training (train.anfx): the whole-net parameters above, images (3 x 3 x 227 x 227) 2001
  image_to_input: grey 28x28 image 3000, RGB 20x28 image 3001
  hash self-check: stream 7

File format (.anfx, all little-endian):
  "ANFX", uint32 version (1), uint32 tensor count, then per tensor:
  uint32 name length, name bytes (no NUL), uint32 dtype (0 float32, 1 int32,
  2 float64), uint32 ndim, uint32 dims[ndim], data (row-major).
Large tensors (over FULL_LIMIT elements) are stored as NAME.idx (int32 flat
indices of a jittered strided sample), NAME.val (float32 values there),
NAME.stats (float64: sum, sum of |x|, max |x|, element count) and NAME.shape
(int32 dims); small ones as NAME itself.

train.anfx (see train_fixtures): the whole net with dropout off on 3 images;
per parameter layer L (alexnet.h names) and part P (w: weights, b: bias):
  train.labels, train.classes, train.correct (int32), train.sgd (float32: lr,
  momentum, decay, weight_decay, nesterov)
  train.{ce,mse}.loss        float64 per-image losses at the initial parameters
  train.{ce,mse}.grad.L.P    gradient of the batch-mean loss
  train.step{1,2}.v.L.P      SGD velocity after step 1, 2 (cross-entropy)
  train.step{1,2}.dp.L.P     the step's change of the parameters (p1 - p0, p2 - p1)
  train.step2.loss           float64 per-image cross-entropy at p1 (step 2's loss)
  train.nt{0,1}.{sites,unit,scale}  near-ties of the forward pass at p0, p1 that
                             the engine may decide otherwise (see train_sites)
"""
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_grad_enabled(False)

FULL_LIMIT = 16384     # store tensors up to this many elements in full
SAMPLE = 6144          # sample size of larger tensors
M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


# ---------------------------------------------------------------- hash fill
def splitmix64(x):
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hash_uniform(stream, count):
    i = np.arange(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        key = (np.uint64(stream) << np.uint64(32)) + i
    u = (splitmix64(key) >> np.uint64(40)).astype(np.float32)
    return u * np.float32(2.0 / 16777216.0) - np.float32(1.0)


def fill(stream, shape, scale):
    n = int(np.prod(shape))
    return (hash_uniform(stream, n) * np.float32(scale)).reshape(shape)


def fill_image(stream, shape):
    return np.float32(127.5) + fill(stream, shape, 127.5)


def he_scale(fan_in):
    return np.float32(math.sqrt(6.0 / fan_in))


# ---------------------------------------------------------------- file writer
class Writer:
    def __init__(self):
        self.items = []

    def add(self, name, arr, dtype=None):
        arr = np.asarray(arr)
        if dtype is None:
            dtype = np.int32 if arr.dtype.kind in "iu" else np.float32
        self.items.append((name, np.ascontiguousarray(arr, dtype=dtype)))

    def add_ref(self, name, arr, sample=SAMPLE):
        """Full tensor when small, else a sample plus whole-tensor statistics."""
        a64 = np.asarray(arr.detach() if torch.is_tensor(arr) else arr, dtype=np.float64)
        if a64.size <= FULL_LIMIT:
            self.add(name, a64.astype(np.float32))
            return
        n = a64.size
        flat = a64.reshape(-1)
        # jittered stride: evenly spread, but not locked to any spatial period
        step = n // sample
        jitter = (splitmix64(np.arange(sample, dtype=np.uint64) + np.uint64(n))
                  % np.uint64(step)).astype(np.int64)
        idx = np.arange(sample, dtype=np.int64) * step + jitter
        self.add(name + ".shape", np.array(a64.shape, dtype=np.int32))
        self.add(name + ".idx", idx.astype(np.int32))
        self.add(name + ".val", flat[idx].astype(np.float32))
        stats = [flat.sum(), np.abs(flat).sum(), np.abs(flat).max(), float(n)]
        self.add(name + ".stats", np.array(stats, dtype=np.float64), np.float64)

    def write(self, path):
        codes = {np.dtype(np.float32): 0, np.dtype(np.int32): 1, np.dtype(np.float64): 2}
        with open(path, "wb") as f:
            f.write(b"ANFX" + struct.pack("<II", 1, len(self.items)))
            for name, a in self.items:
                nb = name.encode()
                f.write(struct.pack("<I", len(nb)) + nb)
                f.write(struct.pack("<II", codes[a.dtype], a.ndim))
                f.write(struct.pack("<%dI" % a.ndim, *a.shape))
                f.write(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
        print("wrote %s (%d tensors, %d bytes)" % (path, len(self.items), os.path.getsize(path)))


def t64(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64)).clone()


def lrn_heuritech(x, size=5, alpha=1e-4, beta=0.75, k=2.0):
    # torch divides alpha by size; Heuritech does not
    return torch.nn.LocalResponseNorm(size, alpha=size * alpha, beta=beta, k=k)(x)


# ---------------------------------------------------------------- per-op cases
# spec layouts (int32), also read by tests/engine/test_engine.c:
#   conv:    case, n, in, h, w, out, k, stride, pad, groups, relu
#   pool:    case, n, c, h, w, k, stride
#   lrn:     case, n, c, h, w, size      (alpha, beta, k in the .par tensor: Heuritech's
#            1e-4, 0.75, 2 unless the case says; alpha is not divided by size)
#   dense:   case, n, in, out, relu
#   softmax: case, n, classes
# NAME.xscale (float32) scales the x fill where it is not 1.
OPS = [
    ("conv_g2_relu", "conv", dict(n=2, cin=8, h=13, w=11, out=6, k=3, stride=2, pad=1, groups=2, relu=1)),
    ("conv_g2_linear", "conv", dict(n=2, cin=6, h=9, w=12, out=8, k=5, stride=1, pad=2, groups=2, relu=0)),
    ("conv_k11_s4", "conv", dict(n=2, cin=3, h=35, w=39, out=8, k=11, stride=4, pad=0, groups=1, relu=1)),
    ("conv_pad1_relu", "conv", dict(n=2, cin=7, h=10, w=10, out=9, k=3, stride=1, pad=1, groups=1, relu=1)),
    ("pool_3_2", "pool", dict(n=2, c=6, h=14, w=15, k=3, stride=2, xscale=10.0)),
    ("lrn_5", "lrn", dict(n=2, c=8, h=9, w=10, size=5, xscale=100.0)),
    ("dense_relu", "dense", dict(n=2, cin=50, out=20, relu=1)),
    ("dense_linear", "dense", dict(n=3, cin=33, out=7, relu=0)),
    ("softmax", "softmax", dict(n=3, classes=10, xscale=5.0)),
    ("softmax_large", "softmax", dict(n=2, classes=7, xscale=300.0)),  # exp would overflow unshifted
    # Caffe's LRN (BVLC AlexNet): alpha 1e-4 divided by the window, k 1
    ("lrn_5_caffe", "lrn", dict(n=2, c=8, h=9, w=10, size=5, xscale=100.0, par=(1e-4 / 5, 0.75, 1.0))),
]


def op_fixtures(out):
    wr = Writer()
    for c, (name, kind, p) in enumerate(OPS, start=1):
        s = 16 * c
        if "xscale" in p:   # scale of the x fill, default 1
            wr.add(name + ".xscale", [p["xscale"]], np.float32)
        if kind == "conv":
            wr.add(name + ".spec", [c, p["n"], p["cin"], p["h"], p["w"], p["out"], p["k"],
                                    p["stride"], p["pad"], p["groups"], p["relu"]])
            fan_in = p["cin"] // p["groups"] * p["k"] * p["k"]
            x = t64(fill(s + 0, (p["n"], p["cin"], p["h"], p["w"]), 1.0)).requires_grad_()
            w = t64(fill(s + 1, (p["out"], p["cin"] // p["groups"], p["k"], p["k"]),
                         he_scale(fan_in))).requires_grad_()
            b = t64(fill(s + 2, (p["out"],), 0.1)).requires_grad_()
            with torch.enable_grad():
                y = F.conv2d(x, w, b, stride=p["stride"], padding=p["pad"], groups=p["groups"])
                if p["relu"]:
                    y = F.relu(y)
                r = t64(fill(s + 3, tuple(y.shape), 1.0))
                (y * r).sum().backward()
            wr.add(name + ".y", y.detach().float())
            wr.add(name + ".dx", x.grad.float())
            wr.add(name + ".dw", w.grad.float())
            wr.add(name + ".db", b.grad.float())
        elif kind == "pool":
            wr.add(name + ".spec", [c, p["n"], p["c"], p["h"], p["w"], p["k"], p["stride"]])
            xf = fill(s + 0, (p["n"], p["c"], p["h"], p["w"]), p["xscale"])
            x = t64(xf).requires_grad_()
            with torch.enable_grad():
                y = F.max_pool2d(x, p["k"], p["stride"])
                r = t64(fill(s + 3, tuple(y.shape), 1.0))
                (y * r).sum().backward()
            # a tie inside a window would make the backward ambiguous
            win = F.unfold(t64(xf).reshape(-1, 1, p["h"], p["w"]), p["k"], stride=p["stride"])
            srt = win.sort(dim=1).values
            assert (srt[:, -1] != srt[:, -2]).all(), "tie in a pooling window"
            wr.add(name + ".y", y.detach().float())
            wr.add(name + ".dx", x.grad.float())
        elif kind == "lrn":
            wr.add(name + ".spec", [c, p["n"], p["c"], p["h"], p["w"], p["size"]])
            alpha, beta, k = p.get("par", (1e-4, 0.75, 2.0))
            wr.add(name + ".par", [alpha, beta, k])
            x = t64(fill(s + 0, (p["n"], p["c"], p["h"], p["w"]), p["xscale"])).requires_grad_()
            with torch.enable_grad():
                y = lrn_heuritech(x, p["size"], float(np.float32(alpha)), beta, k)
                r = t64(fill(s + 3, tuple(y.shape), 1.0))
                (y * r).sum().backward()
            wr.add(name + ".y", y.detach().float())
            wr.add(name + ".dx", x.grad.float())
        elif kind == "dense":
            wr.add(name + ".spec", [c, p["n"], p["cin"], p["out"], p["relu"]])
            x = t64(fill(s + 0, (p["n"], p["cin"]), 1.0)).requires_grad_()
            w = t64(fill(s + 1, (p["out"], p["cin"]), he_scale(p["cin"]))).requires_grad_()
            b = t64(fill(s + 2, (p["out"],), 0.1)).requires_grad_()
            with torch.enable_grad():
                y = F.linear(x, w, b)
                if p["relu"]:
                    y = F.relu(y)
                r = t64(fill(s + 3, tuple(y.shape), 1.0))
                (y * r).sum().backward()
            wr.add(name + ".y", y.detach().float())
            wr.add(name + ".dx", x.grad.float())
            wr.add(name + ".dw", w.grad.float())
            wr.add(name + ".db", b.grad.float())
        elif kind == "softmax":
            wr.add(name + ".spec", [c, p["n"], p["classes"]])
            x = t64(fill(s + 0, (p["n"], p["classes"]), p["xscale"]))
            wr.add(name + ".y", torch.softmax(x, dim=1).float())
    # hash self-check: both ends of the index range and a high stream
    wr.add("hash.u7", hash_uniform(7, 16))
    wr.add("hash.u7_far", hash_uniform(7, 3000000)[-16:])
    wr.add("hash.u2000_img", fill_image(2000, (16,)))
    wr.write(os.path.join(out, "ops.anfx"))


# ---------------------------------------------------------------- whole net
MEAN = (123.68, 116.779, 103.939)
# name, out, in, k, stride, pad, groups, relu  (conv); dense: name, out, in
CONVS = [("conv_1", 96, 3, 11, 4, 0, 1), ("conv_2", 256, 96, 5, 1, 2, 2),
         ("conv_3", 384, 256, 3, 1, 1, 1), ("conv_4", 384, 384, 3, 1, 1, 2),
         ("conv_5", 256, 384, 3, 1, 1, 2)]
CLASSES = 10
DENSES = [("dense_1", 4096, 9216), ("dense_2", 4096, 4096), ("dense_3", CLASSES, 4096)]


def net_params():
    ps = []
    j = 0
    for _, out, cin, k, _, _, g in CONVS:
        ps.append((t64(fill(1000 + 2 * j, (out, cin // g, k, k), he_scale(cin // g * k * k))),
                   t64(fill(1001 + 2 * j, (out,), 0.1))))
        j += 1
    for name, out, cin in DENSES:
        scale = he_scale(cin) if name != "dense_3" else np.float32(math.sqrt(6.0 / cin) / 32)
        ps.append((t64(fill(1000 + 2 * j, (out, cin), scale)),
                   t64(fill(1001 + 2 * j, (out,), 0.1))))
        j += 1
    return ps


def net_forward(x, ps, outs=None, pre=None):
    """The whole net on mean-subtracted images x; returns the logits and
    records every named activation in `outs` and the pre-ReLU values of the
    layers with a ReLU in `pre`, when given."""
    outs = {} if outs is None else outs
    pre = {} if pre is None else pre

    def conv(x, j):
        _, _, _, _, stride, pad, g = CONVS[j]
        z = pre[CONVS[j][0]] = F.conv2d(x, ps[j][0], ps[j][1], stride=stride, padding=pad, groups=g)
        return F.relu(z)

    def dense(x, j):
        z = pre[DENSES[j - 5][0]] = F.linear(x, *ps[j])
        return F.relu(z)

    h = outs["conv_1"] = conv(x, 0)
    h = outs["pool_1"] = F.max_pool2d(h, 3, 2)
    h = outs["convpool_1"] = lrn_heuritech(h)
    h = outs["conv_2"] = conv(h, 1)
    h = outs["pool_2"] = F.max_pool2d(h, 3, 2)
    h = outs["lrn_2"] = lrn_heuritech(h)
    h = outs["conv_3"] = conv(h, 2)
    h = outs["conv_4"] = conv(h, 3)
    h = outs["conv_5"] = conv(h, 4)
    h = outs["convpool_5"] = F.max_pool2d(h, 3, 2)
    h = h.reshape(h.shape[0], -1)
    h = outs["dense_1"] = dense(h, 5)
    h = outs["dense_2"] = dense(h, 6)
    h = outs["dense_3"] = F.linear(h, *ps[7])
    outs["softmax"] = torch.softmax(h, dim=1)
    return h


def net_images(stream, n):
    x = t64(fill_image(stream, (n, 3, 227, 227)))
    return x - torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)


def net_fixtures(out):
    wr = Writer()
    ps = net_params()
    x = net_images(2000, 2)
    outs = {}
    net_forward(x, ps, outs)
    wr.add("net.classes", [CLASSES])
    for name, t in outs.items():
        wr.add_ref("net." + name, t)
        a = t.abs()
        print("  %-10s %-18s max|y| %10.4g  mean|y| %10.4g  zero %4.1f%%"
              % (name, tuple(t.shape), a.max().item(), a.mean().item(),
                 100.0 * (t == 0).double().mean().item()))
    wr.write(os.path.join(out, "net.anfx"))


# ---------------------------------------------------------------- training
PNAMES = [c[0] for c in CONVS] + [d[0] for d in DENSES]
TRAIN_N = 3
# image 0's argmax is its label; 1 and 2 are labelled with other classes
# (the script checks this and that the argmax margins are clear)
TRAIN_LABELS = [9, 4, 1]
TRAIN_CORRECT = 1
# Keras SGD. The net's gradients span 4 decades (|dL/dw| of dense_3 ~ 3, of
# conv biases ~ 1e-4, because dense_2's outputs are ~ 10-100), so lr is set by
# dense_3: at 1e-6 step 1 takes the mean cross-entropy from 1.87 to 1.60 and
# changes the gradients by ~20%, leaving the softmax unsaturated for step 2. decay 0.25 gives lr/1.25 at step 2, and
# weight_decay 0.01 is ~6% of conv_1's gradient, so both are visible.
TRAIN_SGD = dict(lr=1e-6, momentum=0.9, decay=0.25, weight_decay=0.01, nesterov=1)
TRAIN_SAMPLE = 3072     # smaller samples than the other fixtures: 48 sampled tensors


def train_loss(kind, z, labels):
    """Per-image losses; the engine's gradient is that of their mean."""
    if kind == "ce":
        return F.cross_entropy(z, labels, reduction="none")
    onehot = F.one_hot(labels, z.shape[1]).to(z.dtype)
    return ((torch.softmax(z, dim=1) - onehot) ** 2).mean(dim=1)   # Keras MSE on the softmax


def train_grads(x, ps, labels, kind):
    flat = [p.detach().clone().requires_grad_() for wb in ps for p in wb]
    with torch.enable_grad():
        z = net_forward(x, [flat[2 * j:2 * j + 2] for j in range(len(ps))])
        losses = train_loss(kind, z, labels)
        grads = torch.autograd.grad(losses.mean(), flat)
    return z.detach(), losses.detach(), [g.detach() for g in grads]


# Near-discontinuities. ReLU and max pooling make the gradient jump where a
# pre-activation crosses zero or two values in a pooling window swap order.
# The engine computes in float32 (errors ~1e-6 of a layer's largest value),
# so at values that close to a kink it may decide the other way than this
# float64 reference, and one such flip moves a deep gradient by up to ~10%.
# With ~10^6 such decisions per image some always fall that close, so
# instead of avoiding them the fixture lists every decision within
# TRAIN_BAND (relative to the layer's largest value; ~20x the engine's error)
# whose flip would change a gradient, with torch's choice and the flip's exact
# effect; the test reads the engine's own choices from its forward pass and
# widens the tolerance only by the effect of the decisions it took otherwise.
TRAIN_BAND = 3e-5
RELU_CODES = {name: j for j, name in enumerate(PNAMES[:7])}     # 0..6: conv_1..dense_2
POOL_CODES = {"pool_1": (10, "conv_1", 0), "pool_2": (11, "conv_2", 1), "convpool_5": (12, "conv_5", 4)}


def train_sites(x, ps, labels):
    """Near-ties of the forward pass at ps: sites int32 (K, 4), unit effects
    float32 (K, 16, 2) and per-loss scales float32 (K, 2) (cross-entropy,
    MSE); a flip of site k moves parameter tensor t (alexnet.h order, weight
    then bias) by at most scale * unit[k, t, 0] per element and
    scale * unit[k, t, 1] in sum |x|.
    Sites: ReLU [layer 0..6, flat index into that layer's output, torch's
    choice (1: passes), 0]; pooling [10 pool_1 | 11 pool_2 | 12 convpool_5,
    flat index of the window's output, flat index of torch's maximum in the
    input, flat index of the runner-up]."""
    flat = [p.detach().clone().requires_grad_() for wb in ps for p in wb]
    with torch.enable_grad():
        outs, pre = {}, {}
        z = net_forward(x, [flat[2 * j:2 * j + 2] for j in range(len(ps))], outs, pre)
        watch = PNAMES[:7] + list(POOL_CODES)
        up = []     # per loss: upstream gradient at each watched output
        for kind in ("ce", "mse"):
            g = torch.autograd.grad(train_loss(kind, z, labels).mean(), [outs[k] for k in watch],
                                    retain_graph=True)
            up.append(dict(zip(watch, g)))
        cand = []   # (site row, target tensor, unit direction, scales, deepest layer)
        pooled = {v[1]: k for k, v in POOL_CODES.items()}
        for name, code in RELU_CODES.items():
            zl = pre[name].detach()
            idx = torch.nonzero(zl.abs().reshape(-1) < TRAIN_BAND * zl.abs().max()).reshape(-1)
            for s in idx.tolist():
                passes = bool(zl.reshape(-1)[s] > 0)
                if passes or name not in pooled:
                    # the flip removes (adds) the gradient arriving at the output
                    sc = [(-1.0 if passes else 1.0) * u[name].reshape(-1)[s].item() for u in up]
                else:
                    # a blocked value next to a pooling window that is otherwise all
                    # zero becomes that window's maximum when it passes
                    ylay = outs[name].detach()
                    pool = pooled[name]
                    n_, c_, h_, w_ = np.unravel_index(s, ylay.shape)
                    sc = [0.0, 0.0]
                    ph, pw = outs[pool].shape[2:]
                    for oh in range(max(0, (h_ - 1) // 2), min(ph, h_ // 2 + 1)):
                        for ow in range(max(0, (w_ - 1) // 2), min(pw, w_ // 2 + 1)):
                            if ylay[n_, c_, 2 * oh:2 * oh + 3, 2 * ow:2 * ow + 3].max() == 0:
                                for i, u in enumerate(up):
                                    sc[i] += u[pool][n_, c_, oh, ow].item()
                if sc[0] == 0 and sc[1] == 0:
                    continue
                e = torch.zeros_like(zl)
                e.reshape(-1)[s] = 1.0
                cand.append(([code, s, int(passes), 0], pre[name], e, sc, code))
        for pool, (code, conv, j) in POOL_CODES.items():
            y = outs[conv].detach()
            n, c, h, w = y.shape
            _, arg = F.max_pool2d(y, 3, 2, return_indices=True)
            win = F.unfold(y.reshape(n * c, 1, h, w), 3, stride=2)     # (n*c, 9, L)
            top = win.topk(2, dim=1)
            gap = top.values[:, 0] - top.values[:, 1]
            near = (top.values[:, 1] > 0) & (gap < TRAIN_BAND * y.max())
            pw = outs[pool].shape[3]
            for row, l in torch.nonzero(near).tolist():
                widx = row * win.shape[2] + l
                oh, ow = divmod(l, pw)
                k2 = top.indices[row, 1, l].item()
                a = row * h * w + arg.reshape(-1)[widx].item()
                b = row * h * w + (2 * oh + k2 // 3) * w + 2 * ow + k2 % 3
                assert a != b
                sc = [u[pool].reshape(-1)[widx].item() for u in up]
                if sc[0] == 0 and sc[1] == 0:
                    continue
                e = torch.zeros_like(y)
                e.reshape(-1)[b] = 1.0
                e.reshape(-1)[a] = -1.0
                cand.append(([code, widx, a, b], outs[conv], e, sc, j))
        sites, unit, scale = [], [], []
        for row, target, e, sc, deepest in cand:
            need = flat[:2 * deepest + 2]
            g = torch.autograd.grad(target, need, e, retain_graph=True)
            u = np.zeros((len(flat), 2))
            for t, gt in enumerate(g):
                a = gt.abs()
                u[t] = [a.max().item(), a.sum().item()]
            sites.append(row)
            unit.append(u)
            scale.append(sc)
    counts = {}
    for r in sites:
        key = PNAMES[r[0]] + " relu" if r[0] < 10 else [k for k, v in POOL_CODES.items() if v[0] == r[0]][0]
        counts[key] = counts.get(key, 0) + 1
    print("  near-ties within %g that carry gradient: %s" % (TRAIN_BAND, counts))
    K = len(sites)
    return (np.array(sites, dtype=np.int32).reshape(K, 4), np.array(unit).reshape(K, len(flat), 2),
            np.array(scale).reshape(K, 2))


def train_fixtures(out):
    wr = Writer()
    ps = net_params()
    x = net_images(2001, TRAIN_N)
    labels = torch.tensor(TRAIN_LABELS, dtype=torch.int64)
    f32 = lambda v: float(np.float32(v))     # the engine holds the settings as float
    lr, mu, decay, wd = (f32(TRAIN_SGD[k]) for k in ("lr", "momentum", "decay", "weight_decay"))
    nesterov = TRAIN_SGD["nesterov"]
    wr.add("train.classes", [CLASSES])
    wr.add("train.labels", TRAIN_LABELS)
    wr.add("train.correct", [TRAIN_CORRECT])
    wr.add("train.sgd", [lr, mu, decay, wd, nesterov], np.float32)

    def add_set(prefix, tensors):
        for j, name in enumerate(PNAMES):
            wr.add_ref("%s.%s.w" % (prefix, name), tensors[2 * j], TRAIN_SAMPLE)
            wr.add_ref("%s.%s.b" % (prefix, name), tensors[2 * j + 1], TRAIN_SAMPLE)

    def report(tag, z, losses, grads):
        prob = torch.softmax(z, dim=1)
        print("  %-5s loss %s  max p %s  argmax %s" % (tag, losses.numpy().round(5),
              prob.max(1).values.numpy().round(3), z.argmax(1).numpy()))
        for j, name in enumerate(PNAMES):
            gw, gb = grads[2 * j], grads[2 * j + 1]
            print("        %-8s max|gw| %9.3g  zero %5.1f%%  max|gb| %9.3g" % (
                name, gw.abs().max().item(), 100.0 * (gw == 0).double().mean().item(),
                gb.abs().max().item()))

    # (a), (b): loss and gradients at the initial parameters
    for kind in ("ce", "mse"):
        z, losses, grads = train_grads(x, ps, labels, kind)
        report(kind, z, losses, grads)
        prob = torch.softmax(z, dim=1)
        assert prob.max().item() < 0.5, "softmax close to one-hot"
        top2 = prob.topk(2, dim=1).values
        assert (top2[:, 0] - top2[:, 1] > 0.005).all(), "argmax nearly tied"
        assert int((z.argmax(1) == labels).sum()) == TRAIN_CORRECT
        wr.add("train.%s.loss" % kind, losses.numpy(), np.float64)
        add_set("train.%s.grad" % kind, grads)

    def add_sites(prefix, params):
        sites, unit, scale = train_sites(x, params, labels)
        wr.add(prefix + ".sites", sites)
        wr.add(prefix + ".unit", unit, np.float32)
        wr.add(prefix + ".scale", scale, np.float32)

    add_sites("train.nt0", ps)

    # two SGD steps on the cross-entropy, Keras semantics, from zero velocity;
    # lr_t = lr / (1 + decay * t) with t = 0, 1
    p = [t for wb in ps for t in wb]
    v = [torch.zeros_like(t) for t in p]
    for t in range(2):
        z, losses, grads = train_grads(x, [p[2 * j:2 * j + 2] for j in range(len(ps))], labels, "ce")
        if t == 1:
            report("ce@p1", z, losses, grads)
            wr.add("train.step2.loss", losses.numpy(), np.float64)
            add_sites("train.nt1", [p[2 * j:2 * j + 2] for j in range(len(ps))])
        lr_t = lr / (1.0 + decay * t)
        newp, dp = [], []
        for k in range(len(p)):
            g = grads[k] + (wd * p[k] if k % 2 == 0 else 0.0)   # weights only
            v[k] = mu * v[k] - lr_t * g
            step = mu * v[k] - lr_t * g if nesterov else v[k]
            newp.append(p[k] + step)
            dp.append(step)
        add_set("train.step%d.v" % (t + 1), v)
        add_set("train.step%d.dp" % (t + 1), dp)
        p = newp
    wr.write(os.path.join(out, "train.anfx"))


# ---------------------------------------------------------------- image_to_input
def image_fixtures(out):
    wr = Writer()
    # sources are doubles holding float32 hash pixels, as the C test builds them
    grey = fill_image(3000, (28, 28)).astype(np.float64)
    rgb = fill_image(3001, (20, 28, 3)).astype(np.float64)   # h, w, ch (interleaved)

    def up(img_chw):
        return F.interpolate(t64(img_chw)[None], size=(227, 227), mode="bilinear",
                             align_corners=False)[0]
    wr.add_ref("image.grey28", up(grey[None]))               # 1 x 227 x 227
    wr.add_ref("image.rgb20x28", up(rgb.transpose(2, 0, 1)))  # 3 x 227 x 227
    wr.write(os.path.join(out, "image.anfx"))


# ---------------------------------------------------------------- Grad-CAM
# Grad-CAM (Selvaraju et al. 2017) of net.anfx's net on its two images, by
# autograd: the gradient of a class's logit with respect to a step's output,
# averaged per channel, weights the channel; the weighted sum, ReLU'd, is
# the map. Image 1 asks for class GRADCAM_CLASS, image 2 for the predicted
# class (-1). Two steps: conv_5 (the usual one) and lrn_2 (after a pooling
# and an LRN, so that their backward passes are in the path).
GRADCAM_LAYERS = ["conv_5", "lrn_2"]
GRADCAM_CLASS = 3


def gradcam_fixtures(out):
    wr = Writer()
    ps = net_params()
    x = net_images(2000, 2)
    requested = [GRADCAM_CLASS, -1]
    for layer in GRADCAM_LAYERS:
        with torch.enable_grad():
            flat = [p.detach().clone().requires_grad_() for wb in ps for p in wb]
            outs = {}
            z = net_forward(x, [flat[2 * j:2 * j + 2] for j in range(len(ps))], outs)
            classes = [c if c >= 0 else int(z[i].argmax()) for i, c in enumerate(requested)]
            score = sum(z[i, c] for i, c in enumerate(classes))   # images are independent
            a = outs[layer]
            (g,) = torch.autograd.grad(score, a)
        weights = g.mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((weights * a.detach()).sum(dim=1))
        wr.add("gradcam.%s.requested" % layer, requested)
        wr.add("gradcam.%s.classes" % layer, classes)
        wr.add("gradcam.%s.map" % layer, cam.numpy().astype(np.float32))
        print("  Grad-CAM %-7s classes %s, map %s, max %.4g, zero %.0f%%"
              % (layer, classes, tuple(cam.shape), cam.max().item(), 100.0 * (cam == 0).double().mean().item()))
    wr.write(os.path.join(out, "gradcam.anfx"))


# ---------------------------------------------------------------- bf16
# How far PyTorch's own bf16 autocast lands from its float32 on the net of
# net.anfx: the yardstick for the engine's bf16 (test_bf16 holds it to these
# errors, with a margin). Forward: max |bf16 - f32| / max |f32| of each named
# output on net.anfx's two images. Training: |g_bf16 - g_f32| / |g_f32| of each
# weight gradient, cross-entropy on train.anfx's images plus a fourth (dropout
# off), labels BF16_LABELS. Gradients move far (~10-30%): the forward's bf16
# error flips ReLU and max-pool decisions, each of which reroutes gradient.
BF16_LABELS = [9, 4, 1, 3]


def bf16_fixtures(out):
    wr = Writer()
    ps = [(w.float(), b.float()) for w, b in net_params()]
    x = net_images(2000, 2).float()
    ref, got = {}, {}
    with torch.no_grad():
        net_forward(x, ps, ref)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            net_forward(x, ps, got)
    for name, t in ref.items():
        e = ((got[name].float() - t).abs().max() / t.abs().max()).item()
        wr.add("bf16.net." + name, [e])
        print("  bf16 autocast %-10s max error %.2e of the largest value" % (name, e))
    x = net_images(2001, 4).float()
    labels = torch.tensor(BF16_LABELS)

    def grads(autocast):
        flat = [p.detach().clone().requires_grad_() for wb in ps for p in wb]
        with torch.enable_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            z = net_forward(x, [flat[2 * j:2 * j + 2] for j in range(len(ps))])
            loss = train_loss("ce", z.float(), labels).mean()
        return torch.autograd.grad(loss, flat)

    g32, g16 = grads(False), grads(True)
    for j, name in enumerate(PNAMES):
        e = ((g16[2 * j].float() - g32[2 * j]).norm() / g32[2 * j].norm()).item()
        wr.add("bf16.grad." + name, [e])
        print("  bf16 autocast %-10s weight gradient |bf16 - f32| = %.2e |f32|" % (name, e))
    wr.write(os.path.join(out, "bf16.anfx"))


# ---------------------------------------------------------------- variants
# The other AlexNets the engine builds (alexnet.h an_arch): BVLC Caffe's
# (conv -> LRN -> pool, Caffe's LRN: alpha / 5, k 1) and torchvision's (no
# groups, no LRN, 64-192-384-256-256, conv_1 padded by 2, 224 input). Same
# streams as net.anfx (parameter layer j: 1000 + 2j, 1001 + 2j; images 2000,
# 2 of them at the variant's side), each variant's own mean and scale (as
# float32, as the engine holds them). arch.anfx holds, per variant V:
#   arch.V.<step>          every named output (reference, float64 math)
#   arch.V.grad.<layer>.{w,b}  gradients of the mean cross-entropy, labels ARCH_LABELS
# torchvision's reference is torchvision.models.alexnet itself (eval mode),
# checked against the step-by-step outputs.
ARCH_LABELS = [3, 7]
ARCH_CONVS = {
    "caffe": CONVS,
    "torchvision": [("conv_1", 64, 3, 11, 4, 2, 1), ("conv_2", 192, 64, 5, 1, 2, 1),
                    ("conv_3", 384, 192, 3, 1, 1, 1), ("conv_4", 256, 384, 3, 1, 1, 1),
                    ("conv_5", 256, 256, 3, 1, 1, 1)],
}
ARCH_INPUT = {
    "caffe": (227, (122.6789143406786, 116.66876761696767, 104.0069879317889), (1.0, 1.0, 1.0)),
    "torchvision": (224, (0.485 * 255, 0.456 * 255, 0.406 * 255),
                    (1 / (0.229 * 255), 1 / (0.224 * 255), 1 / (0.225 * 255))),
}


def arch_params(arch):
    ps = []
    for j, (_, out, cin, k, _, _, g) in enumerate(ARCH_CONVS[arch]):
        ps.append([t64(fill(1000 + 2 * j, (out, cin // g, k, k), he_scale(cin // g * k * k))),
                   t64(fill(1001 + 2 * j, (out,), 0.1))])
    for j, (name, out, cin) in enumerate(DENSES, start=5):
        scale = he_scale(cin) if name != "dense_3" else np.float32(math.sqrt(6.0 / cin) / 32)
        ps.append([t64(fill(1000 + 2 * j, (out, cin), scale)), t64(fill(1001 + 2 * j, (out,), 0.1))])
    return ps


def arch_images(arch, n):
    side, mean, scale = ARCH_INPUT[arch]
    x = t64(fill_image(2000, (n, 3, side, side)))
    m = torch.tensor(np.float32(mean), dtype=torch.float64).view(1, 3, 1, 1)
    sc = torch.tensor(np.float32(scale), dtype=torch.float64).view(1, 3, 1, 1)
    return (x - m) * sc


def arch_forward(arch, x, ps, outs):
    convs = ARCH_CONVS[arch]

    def conv(h, j):
        _, _, _, _, stride, pad, g = convs[j]
        return F.relu(F.conv2d(h, ps[j][0], ps[j][1], stride=stride, padding=pad, groups=g))

    def lrn(h):
        return F.local_response_norm(h, 5, alpha=1e-4, beta=0.75, k=1.0)   # Caffe's: alpha / 5

    h = outs["conv_1"] = conv(x, 0)
    if arch == "caffe":
        h = outs["lrn_1"] = lrn(h)
    h = outs["convpool_1"] = F.max_pool2d(h, 3, 2)
    h = outs["conv_2"] = conv(h, 1)
    if arch == "caffe":
        h = outs["lrn_2"] = lrn(h)
    h = outs["pool_2"] = F.max_pool2d(h, 3, 2)
    h = outs["conv_3"] = conv(h, 2)
    h = outs["conv_4"] = conv(h, 3)
    h = outs["conv_5"] = conv(h, 4)
    h = outs["convpool_5"] = F.max_pool2d(h, 3, 2)
    h = h.reshape(h.shape[0], -1)
    h = outs["dense_1"] = F.relu(F.linear(h, *ps[5]))
    h = outs["dense_2"] = F.relu(F.linear(h, *ps[6]))
    h = outs["dense_3"] = F.linear(h, *ps[7])
    outs["softmax"] = torch.softmax(h, dim=1)
    return h


def torchvision_logits(x, ps):
    import torchvision
    model = torchvision.models.alexnet(num_classes=CLASSES).double().eval()
    layers = [model.features[i] for i in (0, 3, 6, 8, 10)] + [model.classifier[i] for i in (1, 4, 6)]
    for layer, (w, b) in zip(layers, ps):
        layer.weight.copy_(w)
        layer.bias.copy_(b)
    return model(x)


def arch_fixtures(out):
    wr = Writer()
    labels = torch.tensor(ARCH_LABELS)
    for arch in ("caffe", "torchvision"):
        ps = arch_params(arch)
        x = arch_images(arch, len(ARCH_LABELS))
        outs = {}
        z = arch_forward(arch, x, ps, outs)
        if arch == "torchvision":
            e = (torchvision_logits(x, ps) - z).abs().max().item()
            assert e < 1e-9, "torchvision's alexnet differs from the steps by %g" % e
            print("  torchvision.models.alexnet agrees with the steps (max |diff| %.1e)" % e)
        for name, t in outs.items():
            wr.add_ref("arch.%s.%s" % (arch, name), t, sample=2048)
        flat = [p.detach().clone().requires_grad_() for wb in ps for p in wb]
        with torch.enable_grad():
            z = arch_forward(arch, x, [flat[2 * j:2 * j + 2] for j in range(len(ps))], {})
            grads = torch.autograd.grad(F.cross_entropy(z, labels), flat)
        for j, name in enumerate(PNAMES):
            wr.add_ref("arch.%s.grad.%s.w" % (arch, name), grads[2 * j], sample=2048)
            wr.add_ref("arch.%s.grad.%s.b" % (arch, name), grads[2 * j + 1], sample=2048)
        print("  %s: logits %s, conv_1 weight gradient max %.3g" % (arch, z.detach().numpy().round(3).tolist(),
                                                                  grads[0].abs().max().item()))
    wr.write(os.path.join(out, "arch.anfx"))


# ---------------------------------------------------------------- foreign files
# foreign.anfx: torchvision's own alexnet() loaded with
# fixtures/torch/torchvision_alexnet_strided.pth (tools/make_torch_fixtures.py:
# a genuine torch.save of its state dict, made small by strided storages),
# on hash-filled images (stream 2000, 2 at 224) normalised as torchvision's
# transforms do: foreign.torchvision.<step> for convpool_5, dense_3, softmax.
# The engine loads the same file by name and must give the same outputs.
def foreign_fixtures(out):
    import torchvision
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from make_torch_fixtures import strided_alexnet_state_dict
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "tests", "engine", "fixtures", "torch", "torchvision_alexnet_strided.pth")
    sd = torch.load(path)
    ref = strided_alexnet_state_dict()
    assert all(torch.equal(sd[k], ref[k]) for k in ref), "the .pth is not strided_alexnet_state_dict()"
    model = torchvision.models.alexnet().double().eval()
    model.load_state_dict({k: v.double() for k, v in sd.items()})
    x = arch_images("torchvision", 2)
    wr = Writer()
    with torch.no_grad():
        pool5 = model.features(x)
        logits = model(x)
    wr.add_ref("foreign.torchvision.convpool_5", pool5, sample=2048)
    wr.add_ref("foreign.torchvision.dense_3", logits, sample=2048)
    wr.add_ref("foreign.torchvision.softmax", torch.softmax(logits, dim=1), sample=2048)
    print("  torchvision alexnet on the strided file: logits max %.4g, top classes %s"
          % (logits.abs().max().item(), logits.argmax(dim=1).tolist()))
    wr.write(os.path.join(out, "foreign.anfx"))
    # For R: the same file in inst/extdata (the vignette and the tests use it),
    # and in tests/testthat/fixtures torchvision's logits for two images that
    # R builds itself, pixel (i, y, x, c) = (31 i + 7 y + 13 x + 50 c) mod 256.
    with open(path, "rb") as src, open(os.path.join(here, "..", "inst", "extdata",
                                                    "torchvision_alexnet_strided.pth"), "wb") as dst:
        dst.write(src.read())
    rdir = os.path.join(here, "..", "tests", "testthat", "fixtures")
    os.makedirs(rdir, exist_ok=True)
    i, y, xx, c = np.meshgrid(np.arange(2), np.arange(224), np.arange(224), np.arange(3), indexing="ij")
    px = ((31 * i + 7 * y + 13 * xx + 50 * c) % 256).astype(np.float64)          # (n, h, w, c)
    mean = torch.tensor(np.float32(ARCH_INPUT["torchvision"][1]), dtype=torch.float64).view(1, 3, 1, 1)
    scale = torch.tensor(np.float32(ARCH_INPUT["torchvision"][2]), dtype=torch.float64).view(1, 3, 1, 1)
    xr = (torch.from_numpy(px).permute(0, 3, 1, 2) - mean) * scale
    with torch.no_grad():
        z = model(xr).numpy()
    np.savetxt(os.path.join(rdir, "torchvision_alexnet_strided_logits.csv"), z, delimiter=",", fmt="%.9g")
    print("  R fixtures: the .pth and torchvision's logits for two pattern images, top classes %s"
          % z.argmax(axis=1).tolist())


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "tests", "engine", "fixtures")
    which = sys.argv[2:] or ["ops", "image", "net", "train", "bf16", "gradcam", "arch", "foreign"]
    makers = {"ops": op_fixtures, "image": image_fixtures, "net": net_fixtures,
              "train": train_fixtures, "bf16": bf16_fixtures, "gradcam": gradcam_fixtures,
              "arch": arch_fixtures, "foreign": foreign_fixtures}
    os.makedirs(out, exist_ok=True)
    for name in which:
        makers[name](out)


if __name__ == "__main__":
    main()
