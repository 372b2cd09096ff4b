#!/usr/bin/python3
"""Write the engine's reference fixtures (tests/engine/fixtures/*.anfx).

Development tool only: needs PyTorch and numpy (Debian: python3-torch); the
package never runs it. Usage:  /usr/bin/python3 tools/make_fixtures.py [OUTDIR]

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

    def add_ref(self, name, arr):
        """Full tensor when small, else a sample plus whole-tensor statistics."""
        a64 = np.asarray(arr, dtype=np.float64)
        if a64.size <= FULL_LIMIT:
            self.add(name, a64.astype(np.float32))
            return
        n = a64.size
        flat = a64.reshape(-1)
        # jittered stride: evenly spread, but not locked to any spatial period
        step = n // SAMPLE
        jitter = (splitmix64(np.arange(SAMPLE, dtype=np.uint64) + np.uint64(n))
                  % np.uint64(step)).astype(np.int64)
        idx = np.arange(SAMPLE, dtype=np.int64) * step + jitter
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
#   lrn:     case, n, c, h, w, size      (alpha 1e-4, beta 0.75, k 2: the .par tensor)
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
            wr.add(name + ".par", [1e-4, 0.75, 2.0])
            x = t64(fill(s + 0, (p["n"], p["c"], p["h"], p["w"]), p["xscale"])).requires_grad_()
            with torch.enable_grad():
                y = lrn_heuritech(x, p["size"])
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


def net_fixtures(out):
    wr = Writer()
    ps = net_params()
    x = t64(fill_image(2000, (2, 3, 227, 227)))
    x = x - torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    outs = {}

    def conv(x, j):
        _, _, _, _, stride, pad, g = CONVS[j]
        return F.relu(F.conv2d(x, ps[j][0], ps[j][1], stride=stride, padding=pad, groups=g))

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
    h = h.reshape(2, -1)
    h = outs["dense_1"] = F.relu(F.linear(h, *ps[5]))
    h = outs["dense_2"] = F.relu(F.linear(h, *ps[6]))
    h = outs["dense_3"] = F.linear(h, *ps[7])
    outs["softmax"] = torch.softmax(h, dim=1)
    wr.add("net.classes", [CLASSES])
    for name, t in outs.items():
        wr.add_ref("net." + name, t)
        a = t.abs()
        print("  %-10s %-18s max|y| %10.4g  mean|y| %10.4g  zero %4.1f%%"
              % (name, tuple(t.shape), a.max().item(), a.mean().item(),
                 100.0 * (t == 0).double().mean().item()))
    wr.write(os.path.join(out, "net.anfx"))


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


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "tests", "engine", "fixtures")
    os.makedirs(out, exist_ok=True)
    op_fixtures(out)
    image_fixtures(out)
    net_fixtures(out)


if __name__ == "__main__":
    main()
