"""Read the weights of a Caffe `.caffemodel` without Caffe or protoc, so BVLC AlexNet can run in PyTorch."""

from __future__ import annotations

import functools
import itertools
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

# The real blob shapes of BVLC AlexNet (models/bvlc_alexnet): [weight, bias] per layer with parameters.
BVLC_ALEXNET_BLOB_SHAPES: dict[str, list[tuple[int, ...]]] = {
    "conv1": [(96, 3, 11, 11), (96,)],
    "conv2": [(256, 48, 5, 5), (256,)],
    "conv3": [(384, 256, 3, 3), (384,)],
    "conv4": [(384, 192, 3, 3), (384,)],
    "conv5": [(256, 192, 3, 3), (256,)],
    "fc6": [(4096, 9216), (4096,)],
    "fc7": [(4096, 4096), (4096,)],
    "fc8": [(1000, 4096), (1000,)],
}

# V1LayerParameter.LayerType values that matter here (caffe.proto); others are named by number in messages.
V1_LAYER_TYPES: dict[int, str] = {
    1: "Accuracy",
    4: "Convolution",
    5: "Data",
    6: "Dropout",
    14: "InnerProduct",
    15: "LRN",
    17: "Pooling",
    18: "ReLU",
    20: "Softmax",
    21: "SoftmaxWithLoss",
    39: "Deconvolution",
}

MAX_BLOB_AXES = 32  # Caffe's kMaxBlobAxes
_EXPECTED = (
    "expected a Caffe .caffemodel (binary protobuf NetParameter with trained blobs, e.g. bvlc_alexnet.caffemodel)"
)
# Leading bytes of files that people hand over instead of a caffemodel -> what they are.
_FOREIGN_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a zip archive"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (Keras .h5 or NetCDF-4?)"),
    (b"CDF\x01", "a NetCDF-3 file"),
    (b"CDF\x02", "a NetCDF-3 file"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x1f\x8b", "a gzip-compressed file (unpack it first)"),
    (b"BZh", "a bzip2-compressed file (unpack it first)"),
    (b"\xfd7zXZ\x00", "an xz-compressed file (unpack it first)"),
)
_CONV_TYPES = frozenset({"Convolution", "Deconvolution"})
_FC_TYPES = frozenset({"InnerProduct"})
_PACKAGE = "ifmsan_caffe"


@functools.cache
def _message_classes() -> dict[str, Any]:
    """Build the minimal caffe.proto subset at run time (no protoc) and return its message classes by name."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="ifmsan_caffe_subset.proto", package=_PACKAGE, syntax="proto2")
    fdp_field = descriptor_pb2.FieldDescriptorProto

    def add(
        message: descriptor_pb2.DescriptorProto,
        name: str,
        number: int,
        kind: int,
        *,
        repeated: bool = False,
        message_type: str | None = None,
        packed: bool = False,
    ) -> None:
        field = message.field.add(
            name=name,
            number=number,
            type=kind,
            label=fdp_field.LABEL_REPEATED if repeated else fdp_field.LABEL_OPTIONAL,
        )
        if message_type is not None:
            field.type_name = f".{_PACKAGE}.{message_type}"
        if packed:
            field.options.packed = True

    shape = fdp.message_type.add(name="BlobShape")
    add(shape, "dim", 1, fdp_field.TYPE_INT64, repeated=True, packed=True)

    blob = fdp.message_type.add(name="BlobProto")
    # Caffe declares the legacy dims int32 in old protos and int64 in newer ones: identical varints on the wire.
    for number, name in enumerate(("num", "channels", "height", "width"), start=1):
        add(blob, name, number, fdp_field.TYPE_INT64)
    add(blob, "data", 5, fdp_field.TYPE_FLOAT, repeated=True, packed=True)
    add(blob, "diff", 6, fdp_field.TYPE_FLOAT, repeated=True, packed=True)
    add(blob, "shape", 7, fdp_field.TYPE_MESSAGE, message_type="BlobShape")
    add(blob, "double_data", 8, fdp_field.TYPE_DOUBLE, repeated=True, packed=True)

    v1 = fdp.message_type.add(name="V1LayerParameter")
    add(v1, "bottom", 2, fdp_field.TYPE_STRING, repeated=True)
    add(v1, "top", 3, fdp_field.TYPE_STRING, repeated=True)
    add(v1, "name", 4, fdp_field.TYPE_STRING)
    # An enum in caffe.proto; read as int32 (same varint) so that values unknown to this subset are kept.
    add(v1, "type", 5, fdp_field.TYPE_INT32)
    add(v1, "blobs", 6, fdp_field.TYPE_MESSAGE, repeated=True, message_type="BlobProto")

    layer = fdp.message_type.add(name="LayerParameter")
    add(layer, "name", 1, fdp_field.TYPE_STRING)
    add(layer, "type", 2, fdp_field.TYPE_STRING)
    add(layer, "blobs", 7, fdp_field.TYPE_MESSAGE, repeated=True, message_type="BlobProto")

    net = fdp.message_type.add(name="NetParameter")
    add(net, "name", 1, fdp_field.TYPE_STRING)
    add(net, "layers", 2, fdp_field.TYPE_MESSAGE, repeated=True, message_type="V1LayerParameter")
    add(net, "layer", 100, fdp_field.TYPE_MESSAGE, repeated=True, message_type="LayerParameter")

    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    names = ("BlobShape", "BlobProto", "V1LayerParameter", "LayerParameter", "NetParameter")
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}")) for name in names}


def _sniff_foreign(raw: bytes) -> str | None:
    """What a file is when its first bytes show that it is not a caffemodel (PyTorch, NumPy, HTML, text...)."""
    if not raw:
        return "empty (0 bytes; download it again)"
    if raw.startswith(b"PK\x03\x04") and b"data.pkl" in raw[:4096]:
        return "a PyTorch checkpoint (.pt: a zip archive holding data.pkl)"
    for magic, kind in _FOREIGN_MAGIC:
        if raw.startswith(magic):
            return kind
    if raw[:1] == b"\x80" and raw[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle (a legacy PyTorch .pt/.pth checkpoint?)"
    head = raw[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        return "an HTML/XML page (an error page saved instead of the download?)"
    if head.startswith((b"{", b"[")) and b"\x00" not in raw[:1024]:
        return "a JSON/text file"
    sample = raw[:1024]
    if len(sample) >= 32 and all(32 <= c < 127 or c in (9, 10, 13) for c in sample) and b"\n" in sample:
        return f"a text file starting {sample[:40].decode()!r} (a .prototxt network definition has no weights)"
    return None


def _blob_array(blob: Any, *, path: Path, layer: str, layer_type: str, index: int) -> np.ndarray:
    """One BlobProto as a float32 array in Caffe's shape (legacy 4-D dims squeezed for conv/fc layers)."""
    where = f"{path}: layer {layer!r} ({layer_type}) blob {index}"
    legacy_fields = ("num", "channels", "height", "width")
    if blob.HasField("shape"):
        if len(blob.shape.dim) > MAX_BLOB_AXES:
            raise ValueError(f"{where}: shape has {len(blob.shape.dim)} axes, Caffe allows at most {MAX_BLOB_AXES}")
        dims = tuple(int(d) for d in blob.shape.dim)
        legacy = False
    elif any(blob.HasField(name) for name in legacy_fields):
        dims = tuple(int(getattr(blob, name)) for name in legacy_fields)
        legacy = True
    else:
        raise ValueError(f"{where}: has neither a shape nor num/channels/height/width")
    if any(d < 0 for d in dims):
        raise ValueError(f"{where}: negative dimension in shape {dims}")
    count = math.prod(dims)
    source = "double_data" if len(blob.double_data) > 0 else "data"  # Caffe's Blob::FromProto prefers double_data
    stored = getattr(blob, source)
    if len(stored) != count:  # checked before any array is made: a declared shape cannot inflate an allocation
        raise ValueError(f"{where}: shape {dims} needs {count} values but {source} holds {len(stored)}")
    if math.prod(d for d in dims if d) * 4 > np.iinfo(np.intp).max:  # numpy refuses such a shape even with a 0 in it
        raise ValueError(
            f"{where}: shape {dims} is too large for a float32 array (its non-zero sizes exceed 2**63 bytes)"
        )
    with np.errstate(over="ignore"):  # doubles beyond float32 become inf: ifmsan.models refuses non-finite weights
        wire_dtype = np.float64 if source == "double_data" else np.float32
        values = np.array(stored, dtype=wire_dtype).astype(np.float32, copy=False)
    if legacy:
        dims = _squeeze_legacy(dims, layer_type=layer_type, index=index, where=where)
    return values.reshape(dims)


def _squeeze_legacy(dims: tuple[int, ...], *, layer_type: str, index: int, where: str) -> tuple[int, ...]:
    """Old 4-D dims -> the shape PyTorch needs: fc weight (1,1,out,in) -> (out,in), bias (1,1,1,out) -> (out,)."""
    if layer_type not in _CONV_TYPES | _FC_TYPES:
        return dims  # Caffe itself keeps legacy blobs 4-D
    if index == 1:
        if dims[:3] != (1, 1, 1):
            raise ValueError(f"{where}: a bias in old 4-D form must be (1, 1, 1, out), found {dims}")
        return dims[3:]
    if index == 0 and layer_type in _FC_TYPES:
        if dims[:2] != (1, 1):
            raise ValueError(f"{where}: an InnerProduct weight in old 4-D form must be (1, 1, out, in), found {dims}")
        return dims[2:]
    return dims


def read_caffemodel(path: str | os.PathLike[str]) -> dict[str, list[np.ndarray]]:
    """Layer name -> [weight, bias, ...] as float32 arrays in Caffe's shapes, for V1 (2014) and newer caffemodels."""
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.exists():
        raise ValueError(f"caffemodel not found: {path}")
    if not path.is_file():
        raise ValueError(f"caffemodel {path} is not a regular file")
    raw = path.read_bytes()
    foreign = _sniff_foreign(raw)
    if foreign is not None:
        raise ValueError(f"caffemodel {path} is {foreign}, not Caffe weights; {_EXPECTED}")
    net = _message_classes()["NetParameter"]()
    try:
        net.ParseFromString(raw)
    except DecodeError as exc:
        raise ValueError(
            f"caffemodel {path} is truncated or corrupt ({len(raw)} bytes; protobuf: {exc}); download it again"
        ) from exc
    del raw
    result: dict[str, list[np.ndarray]] = {}
    for layer in itertools.chain(net.layers, net.layer):  # only layers with blobs are kept, nothing per layer
        if len(layer.blobs) == 0:
            continue
        is_v1 = isinstance(layer.type, int)
        layer_type = V1_LAYER_TYPES.get(layer.type, f"V1 type {layer.type}") if is_v1 else layer.type
        name, blobs = layer.name, layer.blobs
        if not isinstance(name, str) or not isinstance(layer_type, str):  # upb hands back bytes for invalid UTF-8
            raise ValueError(f"caffemodel {path}: a layer name or type is not valid UTF-8 ({name!r}, {layer_type!r})")
        if not name:
            raise ValueError(f"caffemodel {path}: a {layer_type} layer with parameters has no name")
        if name in result:
            raise ValueError(f"caffemodel {path}: layer {name!r} with parameters appears more than once")
        result[name] = [
            _blob_array(blob, path=path, layer=name, layer_type=layer_type, index=i) for i, blob in enumerate(blobs)
        ]
    if not result:
        raise ValueError(
            f"caffemodel {path} holds no layers with parameters ({len(net.layers) + len(net.layer)} layers in all); "
            f"{_EXPECTED}"
        )
    return result


def validate_bvlc_alexnet(blobs: dict[str, list[np.ndarray]], *, path: str | os.PathLike[str]) -> None:
    """Check that read blobs are BVLC AlexNet's (names, counts, shapes), so a wrong file fails before any forward."""
    missing = [name for name in BVLC_ALEXNET_BLOB_SHAPES if name not in blobs]
    extra = [name for name in blobs if name not in BVLC_ALEXNET_BLOB_SHAPES]
    if missing or extra:
        raise ValueError(
            f"{path} is not BVLC AlexNet: layers with parameters {list(blobs)}, expected "
            f"{list(BVLC_ALEXNET_BLOB_SHAPES)} (missing {missing}, unexpected {extra})"
        )
    for name, expected in BVLC_ALEXNET_BLOB_SHAPES.items():
        found = [tuple(array.shape) for array in blobs[name]]
        if found != expected:
            raise ValueError(f"{path}: layer {name!r} has blob shapes {found}, expected {expected} (BVLC AlexNet)")
