#!/usr/bin/python3
"""Seed corpora for the fuzzers (tests/fuzz/corpus/), small and committed.

  /usr/bin/python3 tests/fuzz/make_corpus.py

Needs PIL, numpy, h5py (Debian python3-pil, python3-h5py) and cjpeg and
jpegtran (libjpeg-turbo-progs). Rewrites corpus/jpeg and corpus/weights.

JPEG seeds: tiny images in every mode the decoder meets (grey, RGB 4:2:0,
4:4:4 and 4:2:2, stored RGB, progressive, Adobe CMYK, 1 x 1, arithmetic
coding, restart markers) and a few that must fail clearly (truncated,
12-bit, lossless, a 60000 x 60000 header).

Weights seeds (for a 2-class net, see fuzz_weights.c): an own-format file
and Keras 1 files (with and without weight_names, float16, a model file
under /model_weights) holding every layer's group; dense_3 has its true
shape for 2 classes (so that a by-name load reads and commits it), the
other layers tiny datasets of the wrong shape; dense_3's kernel compressed
(gzip) in three of them. 8 to 30 KB each.
"""
import os
import subprocess
import tempfile

import h5py
import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
JPEG_DIR = os.path.join(HERE, "corpus", "jpeg")
WEIGHTS_DIR = os.path.join(HERE, "corpus", "weights")

LAYERS = ["conv_1", "conv_2_1", "conv_2_2", "conv_3", "conv_4_1", "conv_4_2",
          "conv_5_1", "conv_5_2", "dense_1", "dense_2", "dense_3"]
CLASSES = 2


def picture(w, h, seed=1):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    a = np.stack([128 + 100 * np.sin(x / 3.0), 40 + 9 * x + 5 * y, 220 - 11 * y], axis=2)
    a += rng.normal(0, 8, size=a.shape)
    return Image.fromarray(np.uint8(np.clip(a, 0, 255)), "RGB")


def write(name, data):
    with open(os.path.join(JPEG_DIR, name), "wb") as f:
        f.write(data)


def pil_jpeg(img, **kw):
    with tempfile.NamedTemporaryFile(suffix=".jpg") as t:
        img.save(t.name, "JPEG", **kw)
        return open(t.name, "rb").read()


def cjpeg(img, args):
    with tempfile.NamedTemporaryFile(suffix=".ppm") as src:
        img.save(src.name, "PPM")
        return subprocess.run(["cjpeg"] + args + [src.name], check=True, capture_output=True).stdout


def patch_sof(data, **what):
    """Patch the first SOF marker: marker byte, precision, height, width."""
    b = bytearray(data)
    for i in range(2, len(b) - 9):
        if b[i] == 0xFF and b[i + 1] in (0xC0, 0xC1, 0xC2):
            if "marker" in what:
                b[i + 1] = what["marker"]
            if "precision" in what:
                b[i + 4] = what["precision"]
            if "height" in what:
                b[i + 5:i + 7] = what["height"].to_bytes(2, "big")
            if "width" in what:
                b[i + 7:i + 9] = what["width"].to_bytes(2, "big")
            return bytes(b)
    raise ValueError("no SOF marker")


def make_jpegs():
    os.makedirs(JPEG_DIR, exist_ok=True)
    for f in os.listdir(JPEG_DIR):
        os.remove(os.path.join(JPEG_DIR, f))
    rgb = picture(16, 12)
    write("grey_8x8.jpg", pil_jpeg(picture(8, 8).convert("L"), quality=80))
    write("rgb_420_16x12.jpg", pil_jpeg(rgb, quality=75))
    write("rgb_444_16x12.jpg", pil_jpeg(rgb, quality=90, subsampling=0, optimize=True))
    write("progressive_24x16.jpg", pil_jpeg(picture(24, 16, 2), quality=70, progressive=True))
    write("cmyk_adobe_8x8.jpg", pil_jpeg(picture(8, 8, 3).convert("CMYK"), quality=80))
    write("one_pixel.jpg", pil_jpeg(picture(1, 1, 4), quality=90))
    write("odd_17x3_422.jpg", cjpeg(picture(17, 3, 5), ["-quality", "60", "-sample", "2x1"]))
    write("stored_rgb_8x8.jpg", cjpeg(picture(8, 8, 6), ["-rgb", "-quality", "70"]))
    write("arithmetic_16x16.jpg", cjpeg(picture(16, 16, 7), ["-arithmetic", "-quality", "70"]))
    write("restart_16x16.jpg", cjpeg(picture(16, 16, 8), ["-restart", "1B", "-quality", "70"]))
    prog_arith = cjpeg(picture(16, 16, 9), ["-arithmetic", "-progressive", "-quality", "70"])
    write("progressive_arithmetic_16x16.jpg", prog_arith)
    good = pil_jpeg(rgb, quality=75)
    write("truncated_16x12.jpg", good[:len(good) * 2 // 3])
    write("precision12_16x12.jpg", patch_sof(good, precision=12))
    write("lossless_sof3_16x12.jpg", patch_sof(good, marker=0xC3))
    write("huge_60000x60000.jpg", patch_sof(good, height=60000, width=60000))


def string_attr(obj, name, value):
    """A variable-length UTF-8 string, scalar or a list, as weights.c writes."""
    dt = h5py.string_dtype("utf-8")
    if isinstance(value, list):
        obj.attrs.create(name, np.array(value, dtype=object), dtype=dt)
    else:
        obj.attrs.create(name, value, dtype=dt)


def make_own(path):
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_V18, h5py.h5f.LIBVER_V18)
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_attr_phase_change(0, 0)   # dense attribute storage on the root, as weights.c
    fid = h5py.h5f.create(path.encode(), h5py.h5f.ACC_TRUNC, fcpl=fcpl, fapl=fapl)
    with h5py.File(fid) as f:
        string_attr(f, "format", "alexnet")
        f.attrs.create("format_version", 1, dtype="<i4")
        f.attrs.create("classes", CLASSES, dtype="<i4")
        string_attr(f, "class_names", ["cat", "dog"])
        f.attrs.create("mean", np.array([123.68, 116.779, 103.939]), dtype="<f8")
        f.attrs.create("input_scale", 1.0, dtype="<f8")
        string_attr(f, "layers", LAYERS)
        string_attr(f, "layout", "float32, channels first")
        for name in LAYERS:
            g = f.create_group(name)
            string_attr(g, "type", "dense" if name.startswith("dense") else "convolution")
            g.attrs.create("relu", 0 if name == "dense_3" else 1, dtype="<i4")
            if name == "dense_3":
                w = np.full((CLASSES, 4096), 0.25, np.float32)
                b = np.zeros(CLASSES, np.float32)
                # compressed: a 32 KB kernel in a few hundred bytes keeps the seed small
                g.create_dataset("weight", data=w, chunks=(1, 4096), compression="gzip", shuffle=True)
                g.create_dataset("bias", data=b)
                continue
            elif name.startswith("dense"):
                w, b = np.ones((2, 3), np.float32), np.ones(2, np.float32)
            else:
                g.attrs.create("stride", 1, dtype="<i4")
                g.attrs.create("padding", 0, dtype="<i4")
                w, b = np.ones((2, 1, 1, 1), np.float32), np.ones(2, np.float32)
            g.create_dataset("weight", data=w)
            g.create_dataset("bias", data=b)


def keras_layers(root, weight_names=True, dtype=np.float32, compress=True):
    string_attr(root, "layer_names", LAYERS + ["flatten", "activation_1"])
    for name in LAYERS:
        g = root.create_group(name)
        if name == "dense_3":
            w = np.linspace(-1, 1, 4096 * CLASSES).reshape(4096, CLASSES).astype(dtype)
            b = np.zeros(CLASSES, dtype)
            if compress:   # the kernel compressed, to keep the seed small
                w = np.full((4096, CLASSES), 0.5, dtype)
                if weight_names:
                    string_attr(g, "weight_names", [name + "_W", name + "_b"])
                g.create_dataset(name + "_W", data=w, chunks=(1024, CLASSES), compression="gzip")
                g.create_dataset(name + "_b", data=b)
                continue
        elif name.startswith("dense"):
            w, b = np.ones((3, 2), dtype), np.ones(2, dtype)
        else:
            w, b = np.ones((2, 1, 1, 1), dtype), np.ones(2, dtype)
        if weight_names:
            string_attr(g, "weight_names", [name + "_W", name + "_b"])
        g.create_dataset(name + "_W", data=w)
        g.create_dataset(name + "_b", data=b)
    for name in ["flatten", "activation_1"]:
        g = root.create_group(name)
        if weight_names:
            g.attrs.create("weight_names", np.zeros(0))   # h5py's empty list: float64, shape (0,)


def make_weights():
    os.makedirs(WEIGHTS_DIR, exist_ok=True)
    for f in os.listdir(WEIGHTS_DIR):
        os.remove(os.path.join(WEIGHTS_DIR, f))
    make_own(os.path.join(WEIGHTS_DIR, "own_2classes.h5"))
    with h5py.File(os.path.join(WEIGHTS_DIR, "keras1_theano.h5"), "w") as f:
        keras_layers(f)
    # the newer file format (compact groups): smaller, and other HDF5 structures to mutate
    with h5py.File(os.path.join(WEIGHTS_DIR, "keras1_tf_float16_no_weight_names.h5"), "w", libver="latest") as f:
        string_attr(f, "backend", "tensorflow")
        keras_layers(f, weight_names=False, dtype=np.float16, compress=False)   # 16 KB kernel
    with h5py.File(os.path.join(WEIGHTS_DIR, "keras1_model_file.h5"), "w", libver="latest") as f:
        fixed = np.array([b"theano"], dtype="S6")[0]
        f.attrs.create("backend", fixed)                 # a fixed-length string
        keras_layers(f.create_group("model_weights"))
        f.attrs.create("model_config", b"{}")


if __name__ == "__main__":
    make_jpegs()
    make_weights()
    for d in (JPEG_DIR, WEIGHTS_DIR):
        total = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        print("%s: %d files, %d bytes" % (os.path.relpath(d, HERE), len(os.listdir(d)), total))
