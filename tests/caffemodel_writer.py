"""Test utility: write caffemodels byte by byte (protobuf wire format by hand), independent of ifmsan.models.caffe.

Not library code. It writes both NetParameter forms (V1 `layers` = 2 as in the 2014 bvlc_alexnet.caffemodel,
and `layer` = 100), old 4-D blob dims or BlobShape, packed or unpacked floats, float or double data, with
BVLC AlexNet's full train-time layer list (layers without blobs included) and some of the fields a real file
carries that the reader must skip (blobs_lr, weight_decay, convolution_param, lrn_param, include...).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

# Wire types.
VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5

# (name, V1 enum value, V2 type string, bottoms, tops) for BVLC AlexNet's train_val net (models/bvlc_alexnet).
BVLC_LAYERS: list[tuple[str, int, str, tuple[str, ...], tuple[str, ...]]] = [
    ("data", 5, "Data", (), ("data", "label")),
    ("conv1", 4, "Convolution", ("data",), ("conv1",)),
    ("relu1", 18, "ReLU", ("conv1",), ("conv1",)),
    ("norm1", 15, "LRN", ("conv1",), ("norm1",)),
    ("pool1", 17, "Pooling", ("norm1",), ("pool1",)),
    ("conv2", 4, "Convolution", ("pool1",), ("conv2",)),
    ("relu2", 18, "ReLU", ("conv2",), ("conv2",)),
    ("norm2", 15, "LRN", ("conv2",), ("norm2",)),
    ("pool2", 17, "Pooling", ("norm2",), ("pool2",)),
    ("conv3", 4, "Convolution", ("pool2",), ("conv3",)),
    ("relu3", 18, "ReLU", ("conv3",), ("conv3",)),
    ("conv4", 4, "Convolution", ("conv3",), ("conv4",)),
    ("relu4", 18, "ReLU", ("conv4",), ("conv4",)),
    ("conv5", 4, "Convolution", ("conv4",), ("conv5",)),
    ("relu5", 18, "ReLU", ("conv5",), ("conv5",)),
    ("pool5", 17, "Pooling", ("conv5",), ("pool5",)),
    ("fc6", 14, "InnerProduct", ("pool5",), ("fc6",)),
    ("relu6", 18, "ReLU", ("fc6",), ("fc6",)),
    ("drop6", 6, "Dropout", ("fc6",), ("fc6",)),
    ("fc7", 14, "InnerProduct", ("fc6",), ("fc7",)),
    ("relu7", 18, "ReLU", ("fc7",), ("fc7",)),
    ("drop7", 6, "Dropout", ("fc7",), ("fc7",)),
    ("fc8", 14, "InnerProduct", ("fc7",), ("fc8",)),
    ("loss", 21, "SoftmaxWithLoss", ("fc8", "label"), ("loss",)),
]

# Written here from BVLC's deploy.prototxt, on purpose not imported from ifmsan.models.caffe.
BVLC_SHAPES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "conv1": ((96, 3, 11, 11), (96,)),
    "conv2": ((256, 48, 5, 5), (256,)),
    "conv3": ((384, 256, 3, 3), (384,)),
    "conv4": ((384, 192, 3, 3), (384,)),
    "conv5": ((256, 192, 3, 3), (256,)),
    "fc6": ((4096, 9216), (4096,)),
    "fc7": ((4096, 4096), (4096,)),
    "fc8": ((1000, 4096), (1000,)),
}
_CONV_GEOMETRY = {
    "conv1": (11, 4, 0, 1),
    "conv2": (5, 1, 2, 2),
    "conv3": (3, 1, 1, 1),
    "conv4": (3, 1, 1, 2),
    "conv5": (3, 1, 1, 2),
}  # kernel, stride, pad, group


Chunks = list[bytes | memoryview]  # an encoded message as pieces, so 200 MB payloads are never copied


def varint(value: int) -> bytes:
    """Base-128 varint; negative values as 10-byte two's complement, as protobuf does for int32/int64."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def size(chunks: Chunks) -> int:
    """Byte length of an encoded message."""
    return sum(len(c) for c in chunks)


def key(field: int, wire: int) -> bytes:
    """A field key: (field << 3) | wire type."""
    return varint((field << 3) | wire)


def length_field(field: int, payload: bytes | Chunks) -> Chunks:
    """A length-delimited field (string, bytes, sub-message, packed repeated)."""
    chunks = [payload] if isinstance(payload, bytes | memoryview) else list(payload)
    return [key(field, LENGTH) + varint(size(chunks)), *chunks]


def varint_field(field: int, value: int) -> Chunks:
    """A varint field (int32/int64/enum/bool)."""
    return [key(field, VARINT) + varint(value)]


def float_field(field: int, value: float) -> Chunks:
    """A single (unpacked) float field."""
    return [key(field, FIXED32) + struct.pack("<f", value)]


def _repeated_fixed(field: int, values: np.ndarray, *, double: bool, packed: bool) -> Chunks:
    """Repeated float/double: one packed length-delimited field, or one key + fixed-width value per element."""
    flat = np.ascontiguousarray(values, dtype="<f8" if double else "<f4").ravel()
    if packed:
        return length_field(field, memoryview(flat).cast("B"))
    wire_key = key(field, FIXED64 if double else FIXED32)
    assert len(wire_key) == 1
    records = np.empty(flat.size, dtype=[("k", "u1"), ("v", flat.dtype)])
    records["k"] = wire_key[0]
    records["v"] = flat
    return [memoryview(records).cast("B")]


def encode_blob(
    array: np.ndarray,
    *,
    shape: Sequence[int] | None = None,
    old_dims: bool = True,
    packed: bool = True,
    double: bool = False,
) -> Chunks:
    """BlobProto; `shape` overrides the declared shape (to write a blob whose data does not match it)."""
    dims = tuple(int(d) for d in (np.shape(array) if shape is None else shape))
    out: Chunks = []
    if old_dims:
        if len(dims) > 4:
            raise ValueError(f"old 4-D dims cannot hold shape {dims}")
        padded = (1,) * (4 - len(dims)) + dims
        for field, dim in enumerate(padded, start=1):  # num, channels, height, width
            out += varint_field(field, dim)
    out += _repeated_fixed(8 if double else 5, np.asarray(array), double=double, packed=packed)
    if not old_dims:
        if packed:
            shape_chunks = length_field(1, b"".join(varint(d) for d in dims))
        else:
            shape_chunks = [c for d in dims for c in varint_field(1, d)]
        out += length_field(7, shape_chunks)
    return out


def encode_v1_layer(
    name: str,
    type_id: int,
    *,
    bottoms: Sequence[str] = (),
    tops: Sequence[str] = (),
    blobs: Sequence[Chunks] = (),
    extra: Chunks = (),
) -> Chunks:
    """V1LayerParameter (bottom 2, top 3, name 4, type 5, blobs 6, then `extra` fields)."""
    out: Chunks = [c for b in bottoms for c in length_field(2, b.encode())]
    out += [c for t in tops for c in length_field(3, t.encode())]
    out += length_field(4, name.encode()) + varint_field(5, type_id)
    out += [c for blob in blobs for c in length_field(6, blob)]
    return out + list(extra)


def encode_v2_layer(
    name: str,
    type_name: str,
    *,
    bottoms: Sequence[str] = (),
    tops: Sequence[str] = (),
    blobs: Sequence[Chunks] = (),
    extra: Chunks = (),
) -> Chunks:
    """LayerParameter (name 1, type 2, bottom 3, top 4, blobs 7, then `extra` fields)."""
    out: Chunks = length_field(1, name.encode()) + length_field(2, type_name.encode())
    out += [c for b in bottoms for c in length_field(3, b.encode())]
    out += [c for t in tops for c in length_field(4, t.encode())]
    out += [c for blob in blobs for c in length_field(7, blob)]
    return out + list(extra)


def encode_net(layers: Sequence[Chunks], *, form: str = "v1", name: str = "CaffeNet") -> Chunks:
    """NetParameter: name 1, then each layer in field 2 (V1) or 100 (V2)."""
    field = {"v1": 2, "v2": 100}[form]
    return length_field(1, name.encode()) + [c for layer in layers for c in length_field(field, layer)]


def write_chunks(path: str | os.PathLike[str], chunks: Chunks) -> Path:
    """Write an encoded message to a file."""
    path = Path(path)
    with path.open("wb") as handle:
        handle.writelines(chunks)
    return path


def _extras(name: str, type_name: str, *, form: str, blob_count: int, num_output: int | None) -> Chunks:
    """Fields a real file carries that a weights reader must skip (learning rates, layer parameters, phase rule)."""
    v1 = form == "v1"
    out: Chunks = []
    if type_name == "Data":
        out += length_field(32 if v1 else 8, varint_field(1, 0))  # include { phase: TRAIN }
        out += length_field(
            11 if v1 else 107, length_field(1, b"examples/imagenet/ilsvrc12_train_lmdb") + varint_field(4, 256)
        )
    if blob_count:
        if v1:
            out += [c for lr in (1.0, 2.0)[:blob_count] for c in float_field(7, lr)]  # blobs_lr
            out += [c for wd in (1.0, 0.0)[:blob_count] for c in float_field(8, wd)]  # weight_decay
        else:
            for lr, wd in ((1.0, 1.0), (2.0, 0.0))[:blob_count]:  # param { lr_mult decay_mult }
                out += length_field(6, float_field(3, lr) + float_field(4, wd))
    if type_name == "Convolution" and num_output is not None:
        kernel, stride, pad, group = _CONV_GEOMETRY.get(name, (3, 1, 1, 1))
        params = varint_field(1, num_output) + varint_field(3, pad) + varint_field(4, kernel)
        params += varint_field(5, group) + varint_field(6, stride)
        out += length_field(10 if v1 else 106, params)
    if type_name == "InnerProduct" and num_output is not None:
        out += length_field(17 if v1 else 117, varint_field(1, num_output))
    if type_name == "LRN":
        out += length_field(18 if v1 else 118, varint_field(1, 5) + float_field(2, 1e-4) + float_field(3, 0.75))
    if type_name == "Pooling":
        out += length_field(19 if v1 else 121, varint_field(1, 0) + varint_field(2, 3) + varint_field(3, 2))
    if type_name == "Dropout":
        out += length_field(12 if v1 else 108, float_field(1, 0.5))
    return out


def write_caffemodel(
    path: str | os.PathLike[str],
    blobs: Mapping[str, Sequence[np.ndarray]],
    *,
    form: str = "v1",
    old_dims: bool = True,
    packed: bool = True,
    double: bool = False,
) -> Path:
    """Write `{layer: [weight, bias]}` as a caffemodel; BVLC's full layer list when all names are BVLC's.

    Other names give a plain chain: 4-D weights as Convolution, others as InnerProduct layers.
    """
    if form not in ("v1", "v2"):
        raise ValueError(f"form must be 'v1' or 'v2', got {form!r}")
    if set(blobs) <= set(BVLC_SHAPES):
        table = BVLC_LAYERS
    else:
        table, previous = [], "data"
        for name, arrays in blobs.items():
            conv = np.ndim(arrays[0]) == 4
            table.append((name, 4 if conv else 14, "Convolution" if conv else "InnerProduct", (previous,), (name,)))
            previous = name
    encoded = []
    for name, type_id, type_name, bottoms, tops in table:
        arrays = [np.asarray(a) for a in blobs.get(name, ())]
        blob_chunks = [encode_blob(a, old_dims=old_dims, packed=packed, double=double) for a in arrays]
        extra = _extras(
            name, type_name, form=form, blob_count=len(arrays), num_output=int(arrays[0].shape[0]) if arrays else None
        )
        if form == "v1":
            encoded.append(encode_v1_layer(name, type_id, bottoms=bottoms, tops=tops, blobs=blob_chunks, extra=extra))
        else:
            encoded.append(encode_v2_layer(name, type_name, bottoms=bottoms, tops=tops, blobs=blob_chunks, extra=extra))
    return write_chunks(path, encode_net(encoded, form=form))


def bvlc_random_blobs(seed: int) -> dict[str, list[np.ndarray]]:
    """Random float32 weights in BVLC AlexNet's real shapes, small (normal * 0.01) so activations stay finite."""
    rng = np.random.default_rng(seed)
    return {
        name: [(rng.standard_normal(shape, dtype=np.float32) * np.float32(0.01)) for shape in shapes]
        for name, shapes in BVLC_SHAPES.items()
    }
