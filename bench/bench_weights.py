#!/usr/bin/python3
"""Read the files that bench_weights.c wrote with h5py, for comparison.

Usage: /usr/bin/python3 bench/bench_weights.py [DIR] [REPEATS]
Reads every dataset of DIR/bench_own.h5 and DIR/bench_keras1.h5 into numpy
(float32), and for the Keras 1 file also converts as the engine does (flip
the Theano kernels, transpose the dense ones) into one float32 block; then
writes the own file's arrays back with h5py (no fsync, then with one).
Prints the median time of REPEATS (default 5).
"""
import os
import statistics
import sys
import time

import h5py
import numpy as np


def read_all(path):
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[...]
        f.visititems(visit)
    return out


def read_keras_converted(path):
    """as an_weights_load does: one float32 block in PyTorch's layout"""
    with h5py.File(path, "r") as f:
        parts = []
        for name in f.attrs["layer_names"]:
            g = f[name.decode() if isinstance(name, bytes) else name]
            wn = [n.decode() if isinstance(n, bytes) else n for n in g.attrs["weight_names"]]
            if not wn:
                continue
            w = g[wn[0]][...].astype(np.float32, copy=False)
            w = w[:, :, ::-1, ::-1] if w.ndim == 4 else w.T
            parts.append(np.ascontiguousarray(w).ravel())
            parts.append(g[wn[1]][...].astype(np.float32, copy=False))
        return np.concatenate(parts)


def write_all(path, arrays, sync):
    tmp = path + ".tmp-py"
    with h5py.File(tmp, "w") as f:
        for name, a in arrays.items():
            f.create_dataset(name, data=a)
    if sync:
        fd = os.open(tmp, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    os.replace(tmp, path)


def timed(fn, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("TMPDIR") or "/tmp"
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    own, keras = os.path.join(d, "bench_own.h5"), os.path.join(d, "bench_keras1.h5")
    arrays = read_all(own)
    n = sum(a.size for a in arrays.values())
    mb = n * 4 / 1e6
    print("h5py %s, HDF5 %s, numpy %s; %d parameters (%.1f MB); median of %d"
          % (h5py.__version__, h5py.version.hdf5_version, np.__version__, n, mb, reps))
    for label, fn in [
        ("h5py read all datasets  own file", lambda: read_all(own)),
        ("h5py read all datasets  Keras 1 file", lambda: read_all(keras)),
        ("h5py read Keras 1 + flip/transpose to one block", lambda: read_keras_converted(keras)),
        ("h5py write own file (no fsync)", lambda: write_all(own + ".py", arrays, False)),
        ("h5py write own file (fsync)", lambda: write_all(own + ".py", arrays, True)),
    ]:
        t = timed(fn, reps)
        print("%-50s %7.3f s  %6.0f MB/s" % (label, t, mb / t))
    os.remove(own + ".py")


if __name__ == "__main__":
    main()
