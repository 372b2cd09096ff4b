#!/usr/bin/python3
"""Images benchmark, Python side (run by bench/bench_images.sh).

  bench_images.py photos DIR [--n 200] [--seed 1]
      write DIR/photo_NNN.jpg: photo-like 500x375 (and some 375x500) JPEGs at
      quality 90, 4:2:0 (PIL's default), the Kaggle dogs-vs-cats average size.
      Content: smooth colour gradients, a few soft-edged and hard-edged
      objects, textured regions (fur/grass-like) and sensor noise, so the
      entropy coder and DCT see what they see in photos (~2-3 bits/pixel).
  bench_images.py time DIR [--rounds 5]
      decode + resize to 227x227 (+ augment) images/s with PIL and
      torchvision, single process, one thread; prints one JSON line per case.
  bench_images.py quiet [--max-wait 60]   wait for idle CPUs (JSON line)
  bench_images.py table RAW               the markdown table from the JSON lines

Needs /usr/bin/python3 with PIL, numpy and (for the augmented case)
torchvision.
"""
import argparse
import glob
import json
import os
import sys
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def smooth_field(rng, h, w, cells, amp):
    small = rng.uniform(-amp, amp, size=(cells[0], cells[1], 3)).astype(np.float32)
    im = Image.fromarray(np.uint8(np.clip(small + 128, 0, 255)), "RGB").resize((w, h), Image.BICUBIC)
    return np.asarray(im, np.float32) - 128


def photo(rng, w, h):
    base = rng.uniform(60, 190, size=3).astype(np.float32)
    img = (base + smooth_field(rng, h, w, (3, 4), 60) + smooth_field(rng, h, w, (12, 16), 20)
           + smooth_field(rng, h, w, (60, 80), 22) + smooth_field(rng, h, w, (150, 200), 12))
    grey = img.mean(axis=2, keepdims=True)
    img = grey + 0.6 * (img - grey)   # photos are far less saturated than random colours
    canvas = Image.fromarray(np.uint8(np.clip(img, 0, 255)), "RGB")
    # objects: soft (blurred) and hard edges, some with texture
    for _ in range(rng.integers(3, 8)):
        layer = Image.new("L", (w, h), 0)
        d = ImageDraw.Draw(layer)
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * (w, h)
        x1, y1 = x0 + rng.uniform(0.1, 0.6) * w, y0 + rng.uniform(0.1, 0.6) * h
        if rng.random() < 0.6:
            d.ellipse([x0, y0, x1, y1], fill=255)
        else:
            pts = [tuple(rng.uniform(0, 1, 2) * (w, h)) for _ in range(rng.integers(3, 7))]
            d.polygon(pts, fill=255)
        layer = layer.filter(ImageFilter.GaussianBlur(rng.choice([0.7, 1.2, 3.0])))
        colour = rng.uniform(20, 235, size=3).astype(np.float32)
        fill = colour + smooth_field(rng, h, w, (6, 8), 30)
        if rng.random() < 0.6:   # fur / grass / foliage
            tex = rng.normal(0, rng.uniform(8, 22), size=(h // 2 + 1, w // 2 + 1, 1)).astype(np.float32)
            tex = np.repeat(np.repeat(tex, 2, 0), 2, 1)[:h, :w]
            fill = fill + tex
        obj = Image.fromarray(np.uint8(np.clip(fill, 0, 255)), "RGB")
        canvas = Image.composite(obj, canvas, layer)
    a = np.asarray(canvas.filter(ImageFilter.GaussianBlur(0.6)), np.float32)
    a = a + rng.normal(0, 3.5, size=a.shape).astype(np.float32)   # sensor noise
    return Image.fromarray(np.uint8(np.clip(a, 0, 255)), "RGB")


def make_photos(args):
    os.makedirs(args.dir, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    total = 0
    for i in range(args.n):
        w, h = (375, 500) if i % 5 == 4 else (500, 375)
        path = os.path.join(args.dir, "photo_%03d.jpg" % i)
        photo(rng, w, h).save(path, quality=90)
        total += os.path.getsize(path)
    print("%d photos in %s, mean %.1f KB, %.2f bits/pixel" %
          (args.n, args.dir, total / args.n / 1024, total * 8 / args.n / (500 * 375)))


def timed(fn, files, rounds):
    for f in files[:10]:
        fn(f)
    best = None
    for _ in range(rounds):
        c0, t0 = time.process_time(), time.perf_counter()
        for f in files:
            fn(f)
        c, t = time.process_time() - c0, time.perf_counter() - t0
        if best is None or t < best[1]:
            best = (c, t)
    return {"images": len(files), "wall_s": best[1], "cpu_s": best[0],
            "per_s": len(files) / best[1], "per_cpu_s": len(files) / best[0]}


def time_all(args):
    files = sorted(glob.glob(os.path.join(args.dir, "*.jpg")))
    if not files:
        sys.exit("no .jpg files in " + args.dir)
    for f in files:   # page cache
        with open(f, "rb") as fh:
            fh.read()
    S = 227
    results = []

    def pil_plain(path):
        im = Image.open(path).convert("RGB").resize((S, S), Image.BILINEAR)
        return np.asarray(im, dtype=np.float32)

    def pil_draft(path):
        # PIL's own DCT scaling (JPEG draft mode): the fairest PIL
        im = Image.open(path)
        im.draft("RGB", (S, S))
        im = im.convert("RGB").resize((S, S), Image.BILINEAR)
        return np.asarray(im, dtype=np.float32)

    results.append(dict(case="decode+resize", impl="PIL (open, convert, resize BILINEAR, asarray)",
                        **timed(pil_plain, files, args.rounds)))
    results.append(dict(case="decode+resize", impl="PIL with draft() (DCT scaling)",
                        **timed(pil_draft, files, args.rounds)))
    try:
        import torch
        import torchvision.transforms as T
        torch.set_num_threads(1)
        IM = T.InterpolationMode
        aug = T.Compose([
            T.Resize((S, S), interpolation=IM.BILINEAR),
            T.RandomAffine(degrees=0, shear=(-11.46, 11.46), scale=(0.8, 1.2),
                           interpolation=IM.BILINEAR),
            T.RandomHorizontalFlip(),
            T.PILToTensor(),
        ])
        aug_nearest = T.Compose([
            T.Resize((S, S), interpolation=IM.BILINEAR),
            T.RandomAffine(degrees=0, shear=(-11.46, 11.46), scale=(0.8, 1.2),
                           interpolation=IM.NEAREST),
            T.RandomHorizontalFlip(),
            T.PILToTensor(),
        ])
        torch.manual_seed(1)

        def tv(path, tf=aug):
            return tf(Image.open(path).convert("RGB")).float()

        results.append(dict(case="decode+resize+augment",
                            impl="torchvision (Resize, RandomAffine bilinear, RandomHorizontalFlip, float)",
                            **timed(tv, files, args.rounds)))
        results.append(dict(case="decode+resize+augment",
                            impl="torchvision, RandomAffine nearest (its default)",
                            **timed(lambda p: tv(p, aug_nearest), files, args.rounds)))
    except ImportError as e:
        print("# torchvision not available: %s" % e, file=sys.stderr)
    for r in results:
        print(json.dumps(r))


def cpu_busy(seconds=1.0):
    """Fraction of all CPUs busy over `seconds` (from /proc/stat)."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]   # total, idle + iowait
    t0, i0 = snap()
    time.sleep(seconds)
    t1, i1 = snap()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def quiet(args):
    """Wait (at most --max-wait s) until other processes leave the CPUs idle."""
    t0 = time.time()
    busy = cpu_busy()
    while busy > args.threshold and time.time() - t0 < args.max_wait:
        busy = cpu_busy()
    print(json.dumps({"quiet": busy <= args.threshold, "busy": round(busy, 3),
                      "waited_s": round(time.time() - t0, 1)}))


def table(args):
    """Markdown table from the JSON lines of bench_images and `time`: the best
    of the rounds for each implementation, images/s both by the clock and per
    CPU-second of the process (per core: the clock figure is shared with other
    processes on a busy machine, CPU time much less)."""
    best, quiet_runs, runs = {}, 0, 0
    with open(args.raw) as f:
        for line in f:
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            if "quiet" in r:
                runs += 1
                quiet_runs += r["quiet"]
                continue
            k = (r["case"], r["impl"])
            b = best.setdefault(k, dict(r))
            b["per_s"] = max(b["per_s"], r["per_s"])
            b["per_cpu_s"] = max(b["per_cpu_s"], r["per_cpu_s"])
    ref = {"decode+resize": "PIL (open, convert, resize BILINEAR, asarray)",
           "decode+resize+augment": "torchvision, RandomAffine nearest (its default)"}
    print("| case | implementation | images/s (clock) | images/s per core (per CPU-second) | per core vs %s |"
          % "PIL / torchvision (nearest)")
    print("|---|---|---:|---:|---:|")
    for case in ("decode+resize", "decode+resize+augment"):
        base = best.get((case, ref[case]))
        for (c, impl), r in sorted(best.items(), key=lambda kv: (kv[0][0], not kv[0][1].startswith("engine"))):
            if c != case:
                continue
            ratio = "%.2fx" % (r["per_cpu_s"] / base["per_cpu_s"]) if base else "-"
            print("| %s | %s | %.0f | %.0f | %s |" % (c, impl, r["per_s"], r["per_cpu_s"], ratio))
    print()
    print("%d of %d runs started on a quiet machine (other processes < %d%% CPU)." %
          (quiet_runs, runs, int(100 * args.threshold)))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quiet")
    q.add_argument("--max-wait", type=float, default=60)
    q.add_argument("--threshold", type=float, default=0.15)
    tb = sub.add_parser("table")
    tb.add_argument("raw")
    tb.add_argument("--threshold", type=float, default=0.15)
    p = sub.add_parser("photos")
    p.add_argument("dir")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    t = sub.add_parser("time")
    t.add_argument("dir")
    t.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    {"photos": make_photos, "time": time_all, "quiet": quiet, "table": table}[args.cmd](args)


if __name__ == "__main__":
    main()
