#!/usr/bin/python3
"""Write the fixtures of the Caffe reader (src/engine/caffemodel.c).

Development tool only (Debian: python3-protobuf, protobuf-compiler); the
package never runs it. Usage:
    /usr/bin/python3 tools/make_caffe_fixtures.py [OUTDIR [CORPUSDIR]]
(defaults: tests/engine/fixtures/caffe and tests/fuzz/corpus/caffe).

It compiles src/engine/caffe_subset.proto with protoc --python_out into a
temporary folder and writes, with the protobuf library itself:
  tiny_new.caffemodel      `layer` (LayerParameter) with BlobShape: a conv
                           (4-d), a grouped conv, a BatchNorm with three
                           blobs, a scalar blob, fc (2-d), biases (1-d), and
                           layers without blobs (Input, ReLU, Pooling, Softmax)
  tiny_v1.caffemodel       the same weights in the V1 form (`layers`, type
                           enums, num/channels/height/width: fc as 1x1xOxI,
                           biases as 1x1x1xO)
  tiny_double.caffemodel   `layer` with double_data
and, by hand (encode_net below, the wire format written directly):
  tiny_unpacked.caffemodel every float and dimension as its own record, as
                           writers that ignore [packed = true] do
  tiny_extra[_v1].caffemodel  tiny_new's (tiny_v1's) weights among the
                           fields of real Caffe files that the reader skips
Each NAME.caffemodel has NAME.anfx beside it: the tensors an_caffe_read
must give, in order, under their names ("conv1.weight", ...), with their
shapes as stored and float32 values (format: tests/engine/fixture.h).

bad_*.caffemodel are files the reader must refuse; tests/engine/
test_caffemodel.c holds the reason each must give.

The valid tiny_*.caffemodel also go to the fuzzing seeds (tests/fuzz/corpus/
caffe); the found_*.caffemodel there are inputs kept from fuzzing runs, not
written here.

bvlc_alexnet_blobs(seed, v1) gives the layers, types and blob shapes of the
real bvlc_alexnet.caffemodel with seeded values, and write_caffemodel() writes
them (about 244 MB) quickly, for tests that want a full-size file at run
time; no full-size file is committed.
"""
import hashlib
import os
import random
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
PROTO = os.path.join(ROOT, "src", "engine", "caffe_subset.proto")

# V1LayerParameter.LayerType values (Caffe's caffe.proto)
V1_TYPES = {"Input": 0, "Data": 5, "Convolution": 4, "ReLU": 18, "Pooling": 17, "LRN": 15,
            "InnerProduct": 14, "Dropout": 6, "Softmax": 20, "BatchNorm": 0, "Parameter": 0}


def load_proto():
    """caffe_subset_pb2, compiled from the engine's .proto into a temporary folder."""
    tmp = tempfile.mkdtemp(prefix="caffe_pb2_")
    subprocess.run(["protoc", "--python_out=" + tmp, "-I", os.path.dirname(PROTO), PROTO], check=True)
    sys.path.insert(0, tmp)
    import caffe_subset_pb2
    return caffe_subset_pb2


# ------------------------------------------------------------ values
def f32(x):
    """x rounded to float32, as a Python float"""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def seeded_values(seed, count):
    rng = random.Random(seed)
    return [f32(rng.uniform(-1.0, 1.0)) for _ in range(count)]


def fast_values(seed, count):
    """count float32 values as little-endian bytes, quickly for 61M of them:
    random sign and mantissa, exponent fixed (|x| in [2^-7, 2^-6))."""
    raw = hashlib.shake_256(b"caffe-fixture-%d" % seed).digest(4 * count)
    x = int.from_bytes(raw, "little")
    x &= int.from_bytes(b"\xff\xff\x7f\x80" * count, "little")
    x |= int.from_bytes(b"\x00\x00\x00\x3c" * count, "little")
    return x.to_bytes(4 * count, "little")


# ------------------------------------------------------------ the nets
def prod(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def tiny_layers(seed):
    """[(name, type, [(shape, values)])]: the small net of the fixtures."""
    spec = [
        ("data", "Input", []),
        ("conv1", "Convolution", [(4, 3, 3, 3), (4,)]),
        ("relu1", "ReLU", []),
        ("pool1", "Pooling", []),
        ("conv2", "Convolution", [(6, 2, 3, 3), (6,)]),     # 2 groups: in/groups = 2
        ("bn2", "BatchNorm", [(6,), (6,), (1,)]),
        ("fc6", "InnerProduct", [(5, 24), (5,)]),
        ("scale", "Parameter", [()]),                       # a scalar blob (BlobShape without dims)
        ("prob", "Softmax", []),
    ]
    out = []
    for i, (name, typ, shapes) in enumerate(spec):
        blobs = [(s, seeded_values(seed * 1000 + i * 10 + k, prod(s))) for k, s in enumerate(shapes)]
        out.append((name, typ, blobs))
    return out


def v1_shape(shape):
    """the 4-d shape a V1 file stores for blob k of a layer: fewer dimensions
    padded with leading 1s (fc weights 1x1xOxI, biases 1x1x1xO)"""
    return (1,) * (4 - len(shape)) + tuple(shape)


def bvlc_alexnet_blobs(seed, v1=False):
    """The layers of the real bvlc_alexnet.caffemodel with seeded values:
    [(name, type, [(shape, values as little-endian float32 bytes)])], blob 0 the
    weights, blob 1 the biases. conv2, conv4 and conv5 have 2 groups (their
    weights hold in/2 input channels). v1: the shapes the V1 file stores (fc
    weights 1x1xOxI, biases 1x1x1xO). 61M values, about 244 MB."""
    spec = [
        ("data", "Data", []),
        ("conv1", "Convolution", [(96, 3, 11, 11), (96,)]),
        ("relu1", "ReLU", []), ("norm1", "LRN", []), ("pool1", "Pooling", []),
        ("conv2", "Convolution", [(256, 48, 5, 5), (256,)]),
        ("relu2", "ReLU", []), ("norm2", "LRN", []), ("pool2", "Pooling", []),
        ("conv3", "Convolution", [(384, 256, 3, 3), (384,)]),
        ("relu3", "ReLU", []),
        ("conv4", "Convolution", [(384, 192, 3, 3), (384,)]),
        ("relu4", "ReLU", []),
        ("conv5", "Convolution", [(256, 192, 3, 3), (256,)]),
        ("relu5", "ReLU", []), ("pool5", "Pooling", []),
        ("fc6", "InnerProduct", [(4096, 9216), (4096,)]),
        ("relu6", "ReLU", []), ("drop6", "Dropout", []),
        ("fc7", "InnerProduct", [(4096, 4096), (4096,)]),
        ("relu7", "ReLU", []), ("drop7", "Dropout", []),
        ("fc8", "InnerProduct", [(1000, 4096), (1000,)]),
        ("prob", "Softmax", []),
    ]
    out = []
    for i, (name, typ, shapes) in enumerate(spec):
        blobs = []
        for k, s in enumerate(shapes):
            blobs.append((v1_shape(s) if v1 else s, fast_values(seed * 100 + i * 2 + k, prod(s))))
        out.append((name, typ, blobs))
    return out


# ------------------------------------------------------------ wire format by hand
def varint(v):
    if v < 0:
        v += 1 << 64
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wire):
    return varint(field << 3 | wire)


def ld(field, payload):
    return key(field, 2) + varint(len(payload)) + payload


def as_bytes(values):
    if isinstance(values, (bytes, bytearray)):
        return bytes(values)
    return struct.pack("<%df" % len(values), *values)


def encode_blob(shape, values, v1, packed=True):
    """BlobProto bytes, its fields in field-number order as protobuf writes them"""
    data = as_bytes(values)
    out = bytearray()
    if v1:
        for f, d in zip((1, 2, 3, 4), shape):
            out += key(f, 0) + varint(d)
    if packed:
        out += ld(5, data)
    else:
        for i in range(0, len(data), 4):
            out += key(5, 5) + data[i:i + 4]
    if not v1:
        if packed:
            dims = b"".join(varint(d) for d in shape)
            out += ld(7, ld(1, dims) if shape else b"")
        else:
            out += ld(7, b"".join(key(1, 0) + varint(d) for d in shape))
    return bytes(out)


def encode_net(layers, v1=False, packed=True, name="tiny"):
    """NetParameter bytes: `layers` (V1) or `layer`, the wire format written here"""
    out = bytearray(ld(1, name.encode()))
    for lname, typ, blobs in layers:
        if v1:
            body = ld(4, lname.encode()) + key(5, 0) + varint(V1_TYPES[typ])
            body += b"".join(ld(6, encode_blob(v1_shape(s), v, True, packed)) for s, v in blobs)
            out += ld(2, body)
        else:
            body = ld(1, lname.encode()) + ld(2, typ.encode())
            body += b"".join(ld(7, encode_blob(s, v, False, packed)) for s, v in blobs)
            out += ld(100, body)
    return bytes(out)


def encode_net_extra(layers, v1=False):
    """encode_net's net with the fields of real Caffe files that the reader
    skips: bottom/top, param, convolution_param, include, blobs_lr,
    weight_decay, input, input_dim, state, and a BlobProto's diff"""
    out = bytearray(ld(1, b"tiny") + ld(3, b"data") + b"".join(key(4, 0) + varint(d) for d in (10, 3, 8, 8)))
    out += ld(6, key(1, 0) + varint(1))                         # state { phase: TEST }
    for lname, typ, blobs in layers:
        extra = ld(3, b"bottom") + ld(4, lname.encode())
        if v1:
            body = ld(2, b"bottom") + ld(3, lname.encode()) + ld(4, lname.encode())
            body += key(5, 0) + varint(V1_TYPES[typ])
            for s, v in blobs:
                body += ld(6, encode_blob(v1_shape(s), v, True) + ld(6, as_bytes(v)))    # with a diff
            body += b"".join(key(7, 5) + struct.pack("<f", 1.0) for _ in blobs)     # blobs_lr, unpacked
            body += ld(8, struct.pack("<%df" % len(blobs), *([1.0] * len(blobs))))  # weight_decay, packed
            body += ld(10, key(1, 0) + varint(4) + key(2, 0) + varint(1))           # convolution_param
            out += ld(2, body)
        else:
            body = ld(1, lname.encode()) + ld(2, typ.encode()) + extra
            body += ld(6, key(3, 5) + struct.pack("<f", 1.0))                        # param { lr_mult }
            body += b"".join(ld(7, encode_blob(s, v, False)) for s, v in blobs)
            body += ld(8, key(1, 0) + varint(1))                                     # include { phase }
            body += ld(106, key(1, 0) + varint(4) + ld(4, varint(3)))                # convolution_param
            out += ld(100, body)
    return bytes(out)


def write_caffemodel(path, layers, v1=False):
    """a .caffemodel of these layers (bvlc_alexnet_blobs' or tiny_layers'), packed"""
    with open(path, "wb") as f:
        f.write(encode_net(layers, v1, name="AlexNet"))


# ------------------------------------------------------------ with the protobuf library
def build_net(pb, layers, v1=False, double=False):
    net = pb.NetParameter()
    net.name = "tiny"
    for lname, typ, blobs in layers:
        if v1:
            L = net.layers.add()
            L.name = lname.encode()
            L.type = V1_TYPES[typ]
        else:
            L = net.layer.add()
            L.name = lname.encode()
            L.type = typ.encode()
        for k, (s, vals) in enumerate(blobs):
            b = L.blobs.add()
            if v1:
                b.num, b.channels, b.height, b.width = v1_shape(s)
            else:
                b.shape.SetInParent()
                b.shape.dim.extend(s)
            if double:
                b.double_data.extend(vals)
            else:
                b.data.extend(vals)
    return net


# ------------------------------------------------------------ expected values (.anfx)
def write_anfx(path, tensors):
    """tensors: [(name, shape, float values)] as float32 (tests/engine/fixture.h)"""
    with open(path, "wb") as f:
        f.write(b"ANFX" + struct.pack("<II", 1, len(tensors)))
        for name, shape, vals in tensors:
            nb = name.encode()
            f.write(struct.pack("<I", len(nb)) + nb)
            f.write(struct.pack("<II", 0, len(shape)))
            f.write(struct.pack("<%dI" % len(shape), *shape))
            f.write(struct.pack("<%df" % len(vals), *vals))


def expected(layers, v1=False):
    out = []
    for lname, typ, blobs in layers:
        for k, (s, vals) in enumerate(blobs):
            suffix = ".weight" if k == 0 else ".bias" if k == 1 else ".blob%d" % k
            out.append((lname + suffix, v1_shape(s) if v1 else s, vals))
    return out


# ------------------------------------------------------------ files to refuse
def bad_files(pb, good):
    """{name: bytes}"""
    bad = {}

    def one_layer(name=b"conv1", blobs=((2, 3),), values=None, typ=b"Convolution"):
        net = pb.NetParameter()
        L = net.layer.add()
        if name is not None:
            L.name = name
        L.type = typ
        for s in blobs:
            b = L.blobs.add()
            b.shape.SetInParent()
            b.shape.dim.extend(s)
            n = prod(s) if values is None else values
            b.data.extend([0.5] * max(n, 0))
        return net

    # truncated copies of a good file, cut inside its records (not on a layer's boundary)
    cuts = [1, 3, 17, len(good) // 3, len(good) // 2, len(good) - 1]
    for i, c in enumerate(cuts):
        try:
            pb.NetParameter().ParseFromString(good[:c])
            raise SystemExit("cut %d of the good file parses: pick another" % c)
        except Exception as e:  # google.protobuf.message.DecodeError
            if "DecodeError" not in type(e).__name__ and "Error" not in type(e).__name__:
                raise
        bad["bad_truncated_%d" % i] = good[:c]

    bad["bad_garbage"] = random.Random(99).randbytes(4096)
    bad["bad_empty"] = b""
    bad["bad_count"] = one_layer(blobs=((2, 3),), values=5).SerializeToString()
    bad["bad_zero_dim"] = one_layer(blobs=((4, 0),), values=0).SerializeToString()
    bad["bad_negative_dim"] = one_layer(blobs=((-3, 2),), values=6).SerializeToString()
    net = pb.NetParameter()
    L = net.layers.add()
    L.name = b"fc6"
    L.type = 14
    b = L.blobs.add()
    b.num, b.height, b.width = 1, 2, 3      # channels missing: 0
    b.data.extend([0.5] * 6)
    bad["bad_v1_zero_dim"] = net.SerializeToString()
    bad["bad_control_name"] = one_layer(name=b"conv\x01x").SerializeToString()
    bad["bad_c1_control_name"] = one_layer(name=b"conv\xc2\x85").SerializeToString()
    bad["bad_utf8_name"] = one_layer(name=b"conv\xff").SerializeToString()
    bad["bad_long_name"] = one_layer(name=b"a" * 300).SerializeToString()
    bad["bad_empty_name"] = one_layer(name=b"").SerializeToString()
    bad["bad_no_name"] = one_layer(name=None).SerializeToString()
    net = one_layer()
    net.layer.append(net.layer[0])
    bad["bad_duplicate"] = net.SerializeToString()
    # field 100 (`layer`) claiming 2^31 bytes
    bad["bad_huge_length"] = key(100, 2) + varint(1 << 31) + b"\x0a\x05conv1" + b"\x00" * 32
    bad["bad_no_weights"] = pb.NetParameter(layer=[pb.LayerParameter(name=b"relu1", type=b"ReLU")]).SerializeToString()
    net = one_layer()
    L = net.layers.add()
    L.name = b"fc6"
    b = L.blobs.add()
    b.num = b.channels = b.height = b.width = 1
    b.data.append(1.0)
    bad["bad_both_forms"] = net.SerializeToString()
    bad["bad_five_dims"] = one_layer(blobs=((1, 2, 1, 2, 1),)).SerializeToString()
    net = one_layer()
    net.layer[0].blobs[0].double_data.extend([0.25] * 6)
    bad["bad_float_and_double"] = net.SerializeToString()
    net = one_layer(values=0)
    net.layer[0].blobs[0].double_data.extend([0.25] * 5 + [1e300])
    bad["bad_double_range"] = net.SerializeToString()
    net = pb.NetParameter()
    L = net.layer.add()
    L.name = b"conv1"
    L.blobs.add().data.extend([1.0] * 4)    # neither BlobShape nor num, channels, ...
    bad["bad_no_shape"] = net.SerializeToString()
    # by hand: what the library does not write
    blob = key(5, 0) + varint(7)    # data as a varint
    bad["bad_wire_type"] = ld(100, ld(1, b"conv1") + ld(7, blob))
    blob = ld(7, ld(1, varint(2))) + ld(7, ld(1, varint(2))) + ld(5, struct.pack("<2f", 1, 2))
    bad["bad_shape_twice"] = ld(100, ld(1, b"conv1") + ld(7, blob))
    blob = ld(7, ld(1, varint(1))) + ld(5, b"\x00" * 6)
    bad["bad_packed_length"] = ld(100, ld(1, b"conv1") + ld(7, blob))
    bad["bad_group"] = key(100, 3) + ld(1, b"conv1") + key(100, 4)
    v0 = ld(1, b"conv1") + ld(2, b"conv") + ld(50, key(1, 0) + varint(1) + ld(5, struct.pack("<f", 1)))
    bad["bad_v0"] = ld(1, b"old") + ld(2, ld(1, v0))
    return bad


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "engine", "fixtures", "caffe")
    corpus = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "tests", "fuzz", "corpus", "caffe")
    pb = load_proto()
    os.makedirs(out, exist_ok=True)
    os.makedirs(corpus, exist_ok=True)

    layers = tiny_layers(7)
    files = {}
    new = build_net(pb, layers).SerializeToString()
    # the hand encoder agrees with the library, byte for byte
    assert encode_net(layers) == new, "encode_net differs from the protobuf library"
    files["tiny_new"] = (new, expected(layers))
    files["tiny_v1"] = (build_net(pb, layers, v1=True).SerializeToString(), expected(layers, v1=True))
    assert encode_net(layers, v1=True) == files["tiny_v1"][0]
    dlayers = tiny_layers(8)
    files["tiny_double"] = (build_net(pb, dlayers, double=True).SerializeToString(), expected(dlayers))
    ulayers = tiny_layers(9)
    unpacked = encode_net(ulayers, packed=False)
    # the library reads the unpacked records as the same message
    msg = pb.NetParameter()
    msg.ParseFromString(unpacked)
    assert msg == build_net(pb, ulayers), "the unpacked file does not parse as the packed one"
    assert unpacked != build_net(pb, ulayers).SerializeToString()
    files["tiny_unpacked"] = (unpacked, expected(ulayers))
    for v1 in (False, True):
        extra = encode_net_extra(layers, v1)
        msg = pb.NetParameter()
        msg.ParseFromString(extra)
        msg.DiscardUnknownFields()
        for L in msg.layers:
            for b in L.blobs:
                assert list(b.diff) == list(b.data)
                b.ClearField("diff")
        assert msg == build_net(pb, layers, v1=v1), "the extra fields are not all unknown"
        files["tiny_extra_v1" if v1 else "tiny_extra"] = (extra, expected(layers, v1))

    for name, (data, tensors) in files.items():
        with open(os.path.join(out, name + ".caffemodel"), "wb") as f:
            f.write(data)
        write_anfx(os.path.join(out, name + ".anfx"), tensors)
        with open(os.path.join(corpus, name + ".caffemodel"), "wb") as f:
            f.write(data)
        print("wrote %s (%d bytes, %d tensors)" % (name, len(data), len(tensors)))
    for name, data in sorted(bad_files(pb, new).items()):
        with open(os.path.join(out, name + ".caffemodel"), "wb") as f:
            f.write(data)
    print("wrote %d files to refuse" % len(bad_files(pb, new)))


if __name__ == "__main__":
    main()
