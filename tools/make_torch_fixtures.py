#!/usr/bin/python3
"""Write the fixtures of the torch.save reader (src/engine/torchfile.c):
tests/engine/fixtures/torch/ and the seeds of tests/fuzz/corpus/torch/.

    /usr/bin/python3 tools/make_torch_fixtures.py [FIXTURE_DIR [CORPUS_DIR]]

Needs PyTorch (Debian python3-torch 1.13) and torchvision (python3-torchvision
0.14), only here: the engine reads these files in C.

Valid files (each a torch.save of a small state dict) and expected.anfx
(.anfx: see tests/engine/fixture.h), holding for every float tensor
"<file>/<name>" its values in C order, float32 (float64 for the float64
file: the test converts them as C does), in the file's order; tensors the
reader skips (int64, bool) have no entry.

torchvision_alexnet_strided.pth: torchvision's alexnet() state dict, every
tensor an as_strided view of a small seeded storage (see
strided_alexnet_state_dict(), importable), and
torchvision_alexnet_strided.anfx with NAME.shape (int32), NAME.idx (int32
flat C-order indices), NAME.val (float32) and NAME.stats (float64: sum,
sum |x|, max |x|, count). Every value is an integer times a power of two,
so the sums are exact in float64 in any order.

bad_*.pth: files the reader must refuse (the C test names the reason it
expects for each), several crafted by hand: the pickle emitter below writes
the opcodes torch.save writes, and torch_zip() zips them in torch's layout.
"""
import io
import math
import os
import shutil
import struct
import sys
import zipfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import Writer, splitmix64  # noqa: E402  (the same hash and .anfx writer)

# ---------------------------------------------------------------- the strided AlexNet
# torchvision.models.alexnet()'s state dict, in order (checked against
# torchvision below)
ALEXNET_SHAPES = [
    ("features.0.weight", (64, 3, 11, 11)), ("features.0.bias", (64,)),
    ("features.3.weight", (192, 64, 5, 5)), ("features.3.bias", (192,)),
    ("features.6.weight", (384, 192, 3, 3)), ("features.6.bias", (384,)),
    ("features.8.weight", (256, 384, 3, 3)), ("features.8.bias", (256,)),
    ("features.10.weight", (256, 256, 3, 3)), ("features.10.bias", (256,)),
    ("classifier.1.weight", (4096, 9216)), ("classifier.1.bias", (4096,)),
    ("classifier.4.weight", (4096, 4096)), ("classifier.4.bias", (4096,)),
    ("classifier.6.weight", (1000, 4096)), ("classifier.6.bias", (1000,)),
]
STRIDED_SEED = 0x70C4          # stream of the storage values (splitmix64)
STORAGE_MIN = 2048             # a storage holds at least this many elements ...
SPAN_FACTOR = 1.5              # ... or 1.5 x the smallest span (all strides 1)
VALUE_BITS = 11                # storage values: integers in [-1024, 1024) ...
BIAS_EXPONENT = 14             # ... times 2^-14 for biases, for weights 2^-e with
                               # e = round(log2(1024 / sqrt(3) / sqrt(2 / fan_in)))
SAMPLES = 64                   # sampled elements per tensor in the .anfx


def strided_params(shape, k):
    """(storage length, offset, strides, exponent) of tensor k of the table."""
    nd = len(shape)
    numel = int(np.prod(shape))
    offset = (3 * k) % 7
    span_min = sum(s - 1 for s in shape)
    budget = min(numel, max(STORAGE_MIN, int(SPAN_FACTOR * span_min)))
    # inner dimensions take contiguous strides while the budget allows, the
    # outer ones the largest stride left: overlapping, Hankel-like views
    strides = [1] * nd
    contiguous = [int(np.prod(shape[d + 1:])) for d in range(nd)]
    span = span_min
    for d in reversed(range(nd - 1)):
        rest = span - (shape[d] - 1) * strides[d]
        most = (budget - 1 - rest) // (shape[d] - 1) if shape[d] > 1 else contiguous[d]
        strides[d] = max(1, min(contiguous[d], most))
        span = rest + (shape[d] - 1) * strides[d]
    length = offset + span + 1
    if nd == 1:
        exponent = BIAS_EXPONENT
    else:
        fan_in = numel // shape[0]
        exponent = int(round(math.log2(2.0 ** (VALUE_BITS - 1) / math.sqrt(3) / math.sqrt(2.0 / fan_in))))
    return length, offset, tuple(strides), exponent


def strided_alexnet_state_dict():
    """torchvision alexnet()'s names and shapes; each tensor an as_strided view
    (see strided_params) of its own storage of integers in [-1024, 1024) times
    2^-exponent, from splitmix64(STRIDED_SEED << 32 + 1_000_000 k + i)."""
    sd = {}
    for k, (name, shape) in enumerate(ALEXNET_SHAPES):
        length, offset, strides, exponent = strided_params(shape, k)
        i = np.arange(length, dtype=np.uint64)
        with np.errstate(over="ignore"):
            key = (np.uint64(STRIDED_SEED) << np.uint64(32)) + np.uint64(1000000 * k) + i
        ints = (splitmix64(key) >> np.uint64(64 - VALUE_BITS)).astype(np.int64) - (1 << (VALUE_BITS - 1))
        storage = torch.from_numpy(ints.astype(np.float32) * np.float32(2.0 ** -exponent))
        sd[name] = torch.as_strided(storage, shape, strides, offset)
    return sd


# ---------------------------------------------------------------- .anfx
class Anfx(Writer):
    """make_fixtures' writer, keeping 0-d arrays 0-d (the scalar fixture)."""

    def add(self, name, arr):
        a = np.asarray(arr)
        if a.dtype not in (np.float32, np.float64, np.int32):
            a = a.astype(np.int32 if a.dtype.kind in "iu" else np.float32)
        self.items.append((name, np.array(a, order="C")))   # (ascontiguousarray makes 0-d 1-d)


# ---------------------------------------------------------------- hand-made pickles, torch's layout
def pk_int(i):
    if 0 <= i < 256:
        return b"K" + bytes([i])
    if 0 <= i < 65536:
        return b"M" + struct.pack("<H", i)
    if -2**31 <= i < 2**31:
        return b"J" + struct.pack("<i", i)
    n = (i.bit_length() + 8) // 8
    return b"\x8a" + bytes([n]) + i.to_bytes(n, "little", signed=True)


def pk_str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def pk_tuple(items):
    return b"(" + b"".join(items) + b"t"


def pk_tensor(storage_cls, key, numel, offset, size, stride):
    """_rebuild_tensor_v2(persistent_load(('storage', torch.<cls>, key, 'cpu', numel)), ...)"""
    pid = pk_tuple([pk_str("storage"), b"ctorch\n" + storage_cls.encode() + b"\n", pk_str(key), pk_str("cpu"),
                    pk_int(numel)])
    return (b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid + b"Q" + pk_int(offset) +
            pk_tuple([pk_int(s) for s in size]) + pk_tuple([pk_int(s) for s in stride]) +
            b"\x89ccollections\nOrderedDict\n)Rt" + b"R")


def pk_state_dict(entries):
    """OrderedDict(name -> pickled value) as torch writes it (protocol 2)"""
    return (b"\x80\x02ccollections\nOrderedDict\n)R(" + b"".join(pk_str(n) + v for n, v in entries) +
            b"u.")


def entry(name, compression=zipfile.ZIP_STORED):
    """a zip entry with a fixed date, so that the files come out the same each time"""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = compression
    return info


def torch_zip(path, pkl, storages, prefix="archive", byteorder=None, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(entry(prefix + "/data.pkl", compression), pkl)
        if byteorder is not None:
            z.writestr(entry(prefix + "/byteorder", compression), byteorder)
        for key, data in storages.items():
            z.writestr(entry(prefix + "/data/" + key, compression), data)
        z.writestr(entry(prefix + "/version", compression), b"3\n")


def rezip(src, dst, compression):
    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(dst, "w") as zo:
        for info in zi.infolist():
            zo.writestr(entry(info.filename, compression), zi.read(info.filename))


# ---------------------------------------------------------------- the valid files
def valid_dicts():
    g = torch.Generator().manual_seed(7)

    def randn(*shape, dtype=torch.float32):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)

    d = {}
    d["f32.pth"] = {"conv.weight": randn(4, 3, 3, 3), "conv.bias": randn(4), "fc.weight": randn(5, 12)}
    d["f64.pth"] = {"w": randn(3, 4, dtype=torch.float64) / 3,
                    "special": torch.tensor([1 / 3, -0.0, 1e300, -1e300, 1e-310, 2.0 ** -149, 3.4028235e38,
                                             float("inf"), 1.0000000596046448], dtype=torch.float64)}
    d["f16.pth"] = {"w": randn(2, 3, 2, dtype=torch.float16),
                    "special": torch.tensor([6e-8, -6e-8, 1e-5, 65504, -65504, 0.0, -0.0, float("inf"),
                                             float("-inf"), 0.333], dtype=torch.float16)}
    d["bf16.pth"] = {"w": randn(3, 5, dtype=torch.bfloat16),
                     "special": torch.tensor([1e-40, 3e38, -0.0, float("inf"), 1 / 3], dtype=torch.bfloat16)}
    a = randn(3, 5)
    b = randn(2, 3, 4, 5)
    d["transposed.pth"] = {"t": a.t(), "perm": b.permute(0, 2, 3, 1), "flip": b.transpose(1, 3)[:, ::2]}
    c = randn(4, 6)
    e = randn(3, 4, 5)
    d["offset.pth"] = {"slice": c[1:, 2:5], "row": e[2], "col": e[1, :, 3], "tail": c.reshape(-1)[17:]}
    s = randn(3, 4)
    d["shared.pth"] = {"a": s, "row1": s[1], "at": s.t(), "corner": s[1:, 2:]}
    d["scalar.pth"] = {"zero_d": torch.tensor(3.5), "one_d": torch.arange(5, dtype=torch.float32) - 2,
                       "empty": torch.zeros(0, 3), "one": randn(1, 1, 1, 1)}
    d["int64.pth"] = {"bn.weight": randn(3), "bn.num_batches_tracked": torch.tensor(7),
                      "mask": torch.tensor([True, False]), "bn.bias": randn(3),
                      "ids": torch.arange(4)}
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(16, 2))
    net.train()
    net(torch.randn(2, 3, 4, 4))      # BatchNorm statistics, num_batches_tracked 1
    d["module.pth"] = net.state_dict()
    assert hasattr(d["module.pth"], "_metadata")
    d["proto4.pth"] = dict(d["f32.pth"])
    x = randn(3, 1)
    y = randn(10)
    d["expand.pth"] = {"expand": x.expand(3, 4), "overlap": torch.as_strided(y, (4, 3, 2), (2, 1, 0), 1),
                       "bcast": randn(5).expand(2, 2, 5)}
    d["parameter.pth"] = dict(net.named_parameters())
    return d


def expected_of(anfx, fname, sd):
    for name, t in sd.items():
        if t.dtype in (torch.float32, torch.float16, torch.bfloat16):
            anfx.add("%s/%s" % (fname, name), t.detach().float().contiguous().numpy())
        elif t.dtype == torch.float64:
            anfx.add("%s/%s" % (fname, name), t.detach().contiguous().numpy())


def write_valid(out):
    anfx = Anfx()
    for fname, sd in valid_dicts().items():
        path = os.path.join(out, fname)
        if fname == "proto4.pth":
            torch.save(sd, path, pickle_protocol=4)
        else:
            torch.save(sd, path)
        back = torch.load(path)
        assert list(back) == list(sd) and all(torch.equal(back[k], sd[k]) for k in sd), fname
        expected_of(anfx, fname, sd)
    # the same archive, deflated (libzip inflates)
    rezip(os.path.join(out, "f32.pth"), os.path.join(out, "deflated.pth"), zipfile.ZIP_DEFLATED)
    expected_of(anfx, "deflated.pth", valid_dicts()["f32.pth"])
    # made by the emitter below, any top folder name, byteorder "little": the
    # emitter writes what torch writes (torch.load agrees)
    vals = np.arange(12, dtype=np.float32) * np.float32(0.25) - 1
    pkl = pk_state_dict([("w", pk_tensor("FloatStorage", "0", 12, 2, (2, 3), (1, 4))),
                         ("big", pk_tensor("FloatStorage", "0", 12, 0, (2, 1000), (1, 0)))])
    path = os.path.join(out, "handmade.pth")
    torch_zip(path, pkl, {"0": vals.tobytes()}, prefix="some name", byteorder=b"little")
    back = torch.load(path)
    ref = torch.from_numpy(vals)
    assert torch.equal(back["w"], torch.as_strided(ref, (2, 3), (1, 4), 2))
    expected_of(anfx, "handmade.pth", back)
    anfx.write(os.path.join(out, "expected.anfx"))


def write_strided_alexnet(out):
    import torchvision
    model = torchvision.models.alexnet()
    names = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert names == ALEXNET_SHAPES, names
    sd = strided_alexnet_state_dict()
    path = os.path.join(out, "torchvision_alexnet_strided.pth")
    torch.save(sd, path)
    model.load_state_dict(torch.load(path))     # a torchvision user can load it
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    size = os.path.getsize(path)
    assert size < 300 * 1024, size
    print("wrote %s (%d bytes)" % (path, size))
    anfx = Anfx()
    for k, (name, shape) in enumerate(ALEXNET_SHAPES):
        t = sd[name]
        flat = t.reshape(-1)                    # a copy: C order
        n = flat.numel()
        idx = splitmix64(np.arange(SAMPLES, dtype=np.uint64) + np.uint64(977 * k)) % np.uint64(n)
        idx = np.concatenate([[0, n - 1], idx.astype(np.int64)])
        f64 = flat.double()
        anfx.add(name + ".shape", np.array(shape, dtype=np.int32))
        anfx.add(name + ".idx", idx.astype(np.int32))
        anfx.add(name + ".val", flat[torch.from_numpy(idx)].numpy())
        anfx.add(name + ".stats", np.array([f64.sum().item(), f64.abs().sum().item(), f64.abs().max().item(), n],
                                           dtype=np.float64))
    anfx.write(os.path.join(out, "torchvision_alexnet_strided.anfx"))


# ---------------------------------------------------------------- the bad files
def write_bad(out):
    def p(name):
        return os.path.join(out, name)

    good = p("f32.pth")
    raw = open(good, "rb").read()
    vals = np.arange(16, dtype=np.float32).tobytes()

    torch.save(valid_dicts()["f32.pth"], p("bad_legacy.pth"), _use_new_zipfile_serialization=False)
    for tag, cut in (("3", 3), ("100", 100), ("half", len(raw) // 2), ("end30", len(raw) - 30),
                     ("end1", len(raw) - 1)):
        open(p("bad_trunc_%s.pth" % tag), "wb").write(raw[:cut])
    open(p("bad_not_zip.pth"), "wb").write(b"this is not a weights file\n")
    # code instead of a state dict: os.system('echo') and, protocol 4, builtins.eval
    torch_zip(p("bad_global_os_system.pth"), b"\x80\x02cos\nsystem\nq\x00" + pk_str("echo pwned") + b"\x85R.", {})
    torch_zip(p("bad_global_eval.pth"), b"\x80\x04\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94" +
              b"\x8c\x041+1\x94\x85\x94R\x94.", {})
    torch_zip(p("bad_stride.pth"), pk_state_dict([("w", pk_tensor("FloatStorage", "0", 16, 1, (4, 4), (4, 1)))]),
              {"0": vals})
    torch_zip(p("bad_short_storage.pth"),
              pk_state_dict([("w", pk_tensor("FloatStorage", "0", 16, 0, (16,), (1,)))]), {"0": vals[:60]})
    torch_zip(p("bad_not_dict.pth"), b"\x80\x02](" + pk_tensor("FloatStorage", "0", 16, 0, (16,), (1,)) + b"e.",
              {"0": vals})
    # nesting bombs, deflated to a few hundred bytes
    dz = zipfile.ZIP_DEFLATED
    torch_zip(p("bad_nest_marks.pth"), b"\x80\x02" + b"(" * 100000 + b"t" * 100000 + b".", {}, compression=dz)
    torch_zip(p("bad_nest_lists.pth"), b"\x80\x02" + b"]" * 100000 + b"a" * 99999 + b".", {}, compression=dz)
    torch_zip(p("bad_deep_list.pth"), b"\x80\x02" + b"]" * 60000 + b"a" * 59999 + b".", {}, compression=dz)
    torch_zip(p("bad_deep_tuple.pth"), b"\x80\x02N" + b"\x85" * 200000 + b".", {}, compression=dz)
    torch_zip(p("bad_value_bomb.pth"), b"\x80\x02" + b"N0" * 2500000 + b"}.", {}, compression=dz)
    torch_zip(p("bad_byteorder.pth"),
              pk_state_dict([("w", pk_tensor("FloatStorage", "0", 16, 0, (16,), (1,)))]), {"0": vals},
              byteorder=b"big")
    torch_zip(p("bad_missing_storage.pth"),
              pk_state_dict([("w", pk_tensor("FloatStorage", "7", 16, 0, (16,), (1,)))]), {"0": vals})
    torch.save({"w": torch.zeros(1, 1, 1, 1, 2)}, p("bad_5d.pth"))
    torch_zip(p("bad_dup.pth"), pk_state_dict([("w", pk_tensor("FloatStorage", "0", 16, 0, (16,), (1,))),
                                               ("w", pk_tensor("FloatStorage", "0", 16, 0, (4,), (1,)))]),
              {"0": vals})
    torch.save({"epoch": 3, "w": torch.zeros(2)}, p("bad_value.pth"))
    with zipfile.ZipFile(p("bad_no_pickle.pth"), "w") as z:
        z.writestr(entry("archive/version"), b"3\n")
    torch_zip(p("bad_no_stop.pth"), pk_state_dict([("w", pk_tensor("FloatStorage", "0", 16, 0, (16,), (1,)))])[:-1],
              {"0": vals})
    torch_zip(p("bad_opcode.pth"), b"\x80\x02(ios\nsystem\nS'echo'\n.", {})
    torch_zip(p("bad_memo.pth"), b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01h\x05.", {})
    torch_zip(p("bad_expand_bomb.pth"),
              pk_state_dict([("w", pk_tensor("FloatStorage", "0", 16, 0, (1 << 20, 1 << 20), (0, 0)))]),
              {"0": vals})
    torch_zip(p("bad_huge_storage.pth"),
              pk_state_dict([("w", pk_tensor("FloatStorage", "0", 1 << 40, 0, (16,), (1,)))]), {"0": vals})
    # found by fuzz_torch (UBSan): an empty tuple before anything was pushed made
    # the reader memcpy from its still-NULL stack (0 items); an empty state
    # dict, read without error (test_torchfile: regress_empty_tuple_first.pth)
    torch_zip(p("regress_empty_tuple_first.pth"), b"\x80\x02)0ccollections\nOrderedDict\n)R.", {})
    # a storage byte changed, the CRC not
    zi = zipfile.ZipFile(good)
    buf = bytearray(raw)
    info = [i for i in zi.infolist() if i.filename.endswith("/data/0")][0]
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    assert bytes(buf[start:start + 4]) == zi.read(info.filename)[:4]
    buf[start] ^= 0x40
    open(p("bad_crc.pth"), "wb").write(bytes(buf))


# ---------------------------------------------------------------- fuzz seeds
PIECE = b"\x00PIECE\x00"   # fuzz_torch.c's "pieces" inputs: data.pkl, then data/0, data/1, ...


def write_corpus(fixtures, corpus):
    os.makedirs(corpus, exist_ok=True)
    for f in ("f32.pth", "module.pth", "shared.pth", "int64.pth", "proto4.pth", "expand.pth", "deflated.pth"):
        shutil.copy(os.path.join(fixtures, f), os.path.join(corpus, f))
    for f in ("f32.pth", "f16.pth", "bf16.pth", "f64.pth", "module.pth", "offset.pth", "handmade.pth"):
        with zipfile.ZipFile(os.path.join(fixtures, f)) as z:
            names = z.namelist()
            top = [n for n in names if n.endswith("/data.pkl")][0][:-len("data.pkl")]
            keys = sorted(n[len(top) + 5:] for n in names if n.startswith(top + "data/"))
            assert keys == [str(i) for i in range(len(keys))] or f == "handmade.pth", keys
            pieces = [z.read(top + "data.pkl")] + [z.read(top + "data/" + k) for k in sorted(keys, key=int)]
        assert not any(PIECE in piece for piece in pieces)
        open(os.path.join(corpus, "pieces_" + f[:-4]), "wb").write(PIECE.join(pieces))
    print("wrote the seeds in %s" % corpus)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "tests", "engine", "fixtures", "torch")
    corpus = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "..", "tests", "fuzz", "corpus", "torch")
    os.makedirs(out, exist_ok=True)
    write_valid(out)
    write_strided_alexnet(out)
    write_bad(out)
    write_corpus(out, corpus)
    total = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print("%d files, %d bytes in %s" % (len(os.listdir(out)), total, out))


if __name__ == "__main__":
    main()
