#!/usr/bin/python3
"""Python side of bench_foreign.sh: loading foreign AlexNet weights.

    bench_foreign.py make DIR        write DIR/alexnet.pth (torchvision alexnet,
                                     torch.manual_seed(0)), DIR/alexnet.caffemodel
                                     (bvlc_alexnet layout, seeded), DIR/image.u8
                                     (224x224x3, in R's c(1, h, w, 3) order) and
                                     DIR/features.f32 (PyTorch's model.features
                                     output for it, 9216 float32)
    bench_foreign.py torch DIR       one timed PyTorch load in this process:
                                     torchvision.models.alexnet() (fresh net),
                                     torch.load(pth), model.load_state_dict(sd)
    bench_foreign.py parse DIR       one timed NetParameter.ParseFromString of
                                     the caffemodel (protobuf library, caffe_subset.proto)
    bench_foreign.py baseline        imports only (torch, torchvision): for RSS
    bench_foreign.py quiet           wait (up to 20 s) for idle CPUs
    bench_foreign.py table RAW       the table from the JSON lines of a run

Every timed command prints one JSON line. Needs /usr/bin/python3 with torch,
torchvision, numpy, google.protobuf, and protoc (Debian packages).
"""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, os.path.join(ROOT, "tools"))

SEED = 0
# bvlc_alexnet's weighted layers and blob shapes (weights, biases)
CAFFE_SHAPES = {
    "conv1": [(96, 3, 11, 11), (96,)], "conv2": [(256, 48, 5, 5), (256,)],
    "conv3": [(384, 256, 3, 3), (384,)], "conv4": [(384, 192, 3, 3), (384,)],
    "conv5": [(256, 192, 3, 3), (256,)], "fc6": [(4096, 9216), (4096,)],
    "fc7": [(4096, 4096), (4096,)], "fc8": [(1000, 4096), (1000,)],
}


def paths(d):
    return {k: os.path.join(d, v) for k, v in
            dict(pth="alexnet.pth", caffe="alexnet.caffemodel", image="image.u8",
                 features="features.f32").items()}


def threads():
    import torch
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    return torch


def check_caffe(pb, data):
    """parse the full file with the protobuf library and check its layers"""
    net = pb.NetParameter()
    net.ParseFromString(data)
    names = [L.name.decode() for L in net.layer]
    assert not net.layers, "V1 layers in a `layer` file"
    assert "relu1" in names and "pool1" in names, names
    n = 0
    for L in net.layer:
        name = L.name.decode()
        want = CAFFE_SHAPES.get(name, [])
        got = [tuple(b.shape.dim) for b in L.blobs]
        assert got == [tuple(s) for s in want], (name, got, want)
        for b, s in zip(L.blobs, want):
            k = 1
            for d in s:
                k *= d
            assert len(b.data) == k, (name, len(b.data), k)
            n += k
    return names, n


def make(d):
    import numpy as np
    import torchvision
    import make_caffe_fixtures as mcf
    torch = threads()
    os.makedirs(d, exist_ok=True)
    p = paths(d)

    # torchvision: the seeded default init, saved as torchvision's state dict
    torch.manual_seed(SEED)
    model = torchvision.models.alexnet().eval()
    torch.save(model.state_dict(), p["pth"])
    nparam = sum(t.numel() for t in model.state_dict().values())
    # the random image and PyTorch's features of it
    img = np.random.default_rng(1).integers(0, 256, size=(224, 224, 3), dtype=np.uint8)
    # R reads the bytes column-major into c(1, 224, 224, 3): write (c, w, h) C-order
    img.transpose(2, 1, 0).astype(np.uint8).tofile(p["image"])
    x = torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        f = model.features((x - mean) / std).flatten()
    assert f.numel() == 9216
    f.numpy().astype("<f4").tofile(p["features"])
    print("# torchvision file %s: %d parameters, %.1f MB; features: %d values, %d nonzero"
          % (p["pth"], nparam, os.path.getsize(p["pth"]) / 1e6, f.numel(), int((f != 0).sum())))

    # Caffe: the proto compiled with protoc --python_out into a temporary folder;
    # the file written with make_caffe_fixtures' encoder (the wire format by hand,
    # fast for 61M floats), checked against the protobuf library
    pb = mcf.load_proto()
    tiny = mcf.tiny_layers(7)
    assert mcf.encode_net(tiny) == mcf.build_net(pb, tiny).SerializeToString(), \
        "the hand encoder differs from the protobuf library"
    mcf.write_caffemodel(p["caffe"], mcf.bvlc_alexnet_blobs(SEED))
    with open(p["caffe"], "rb") as fh:
        names, n = check_caffe(pb, fh.read())
    print("# caffe file %s: %d layers (%s), %d parameters, %.1f MB; parsed back with the protobuf library (%s)"
          % (p["caffe"], len(names), ",".join(names), n, os.path.getsize(p["caffe"]) / 1e6,
             __import__("google.protobuf.internal.api_implementation", fromlist=["Type"]).Type()))


def cpu():
    t = os.times()
    return t.user + t.system


def time_torch(d):
    import torchvision
    torch = threads()
    p = paths(d)
    c0, t0 = cpu(), time.perf_counter()
    model = torchvision.models.alexnet()          # a fresh net (default init)
    t1 = time.perf_counter()
    sd = torch.load(p["pth"])
    model.load_state_dict(sd)
    t2, c2 = time.perf_counter(), cpu()
    print(json.dumps({"route": "torch", "create_s": t1 - t0, "load_s": t2 - t1,
                      "total_s": t2 - t0, "cpu_s": c2 - c0}))


def parse(d):
    import make_caffe_fixtures as mcf
    pb = mcf.load_proto()
    from google.protobuf.internal import api_implementation
    p = paths(d)
    c0, t0 = cpu(), time.perf_counter()
    with open(p["caffe"], "rb") as fh:
        data = fh.read()
    t1 = time.perf_counter()
    net = pb.NetParameter()
    net.ParseFromString(data)
    t2, c2 = time.perf_counter(), cpu()
    assert len(net.layer) == 24
    print(json.dumps({"route": "protobuf", "read_s": t1 - t0, "load_s": t2 - t1,
                      "total_s": t2 - t0, "cpu_s": c2 - c0, "impl": api_implementation.Type()}))


def baseline():
    import torch  # noqa: F401
    import torchvision  # noqa: F401
    print(json.dumps({"route": "python_baseline"}))


def cpu_busy(interval=1.0):
    def read():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]
    a, ai = read()
    time.sleep(interval)
    b, bi = read()
    return 1.0 - (bi - ai) / max(b - a, 1)


def quiet(threshold=0.10, max_wait=20):
    t0 = time.time()
    busy = cpu_busy()
    while busy > threshold and time.time() - t0 < max_wait:
        busy = cpu_busy()
    print(json.dumps({"quiet": busy <= threshold, "busy": round(busy, 3),
                      "waited_s": round(time.time() - t0, 1)}))


ROUTES = [
    ("r_pth", "R `alexnet(weights = pth)` (create + load, torchvision file)"),
    ("r_caffe", "R `alexnet(weights = caffemodel)` (create + load, Caffe file)"),
    ("r_h5", "R `alexnet(weights = h5)` (create + load, package's HDF5 file)"),
    ("r_create", "R `alexnet(arch = \"torchvision\")` (create only, no file)"),
    ("r_load_pth", "R `load_weights(net, pth)` into an existing net (load only)"),
    ("r_load_caffe", "R `load_weights(net, caffemodel)` into an existing net (load only)"),
    ("r_info_pth", "R `weights_info(pth)` (alexnet(weights = ) calls it first)"),
    ("r_info_caffe", "R `weights_info(caffemodel)` (alexnet(weights = ) calls it first)"),
    ("torch", "PyTorch `torch.load` + `load_state_dict` (fresh torchvision alexnet)"),
    ("protobuf", "Python protobuf `NetParameter.ParseFromString` (caffemodel)"),
    ("r_baseline", "R `library(alexnet)` only"),
    ("python_baseline", "Python `import torch, torchvision` only"),
]


def table(raw):
    runs = {}
    quiet_n = total_n = 0
    with open(raw) as f:
        for line in f:
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            if "quiet" in r:
                total_n += 1
                quiet_n += r["quiet"]
                continue
            runs.setdefault(r["route"], []).append(r)
    print("| route | best of %d, s | runs, s | CPU s (best run) | peak RSS, MB (max of runs) |"
          % max((len(v) for v in runs.values()), default=0))
    print("|---|---:|---|---:|---:|")
    for key, label in ROUTES:
        rs = runs.get(key)
        if not rs:
            continue
        rss = max(r.get("rss_kb", 0) for r in rs) / 1024
        if "load_s" not in rs[0] and "total_s" not in rs[0]:
            print("| %s | - | - | - | %.0f |" % (label, rss))
            continue
        best = min(rs, key=lambda r: r["total_s"])
        extra = ""
        if key == "torch":
            extra = " (net creation %.3f + load %.3f)" % (best["create_s"], best["load_s"])
        elif key == "protobuf":
            extra = " (read %.3f + parse %.3f; %s)" % (best["read_s"], best["load_s"], best["impl"])
        print("| %s | %.3f%s | %s | %.2f | %.0f |" % (
            label, best["total_s"], extra, ", ".join("%.3f" % r["total_s"] for r in rs),
            best["cpu_s"], rss))
    if "torch" in runs:
        b = min(runs["torch"], key=lambda r: r["load_s"])
        print("\nPyTorch load alone (torch.load + load_state_dict, without creating the net), best: %.3f s"
              % b["load_s"])
    print("\n%d of %d measurements started on a quiet machine (other processes < 10%% of the CPUs)"
          % (quiet_n, total_n))


def main():
    cmd = sys.argv[1]
    if cmd == "make":
        make(sys.argv[2])
    elif cmd == "torch":
        time_torch(sys.argv[2])
    elif cmd == "parse":
        parse(sys.argv[2])
    elif cmd == "baseline":
        baseline()
    elif cmd == "quiet":
        quiet()
    elif cmd == "table":
        table(sys.argv[2])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
