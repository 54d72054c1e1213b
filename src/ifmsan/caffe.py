"""Read the weights of a Caffe `.caffemodel` without Caffe or protoc, so BVLC AlexNet can run in PyTorch."""

from __future__ import annotations

import functools
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

_CONV_TYPES = frozenset({"Convolution", "Deconvolution"})
_FC_TYPES = frozenset({"InnerProduct"})
_PACKAGE = "ifmsan_caffe"


@functools.cache
def _message_classes() -> dict[str, Any]:
    """Build the minimal caffe.proto subset at run time (no protoc) and return its message classes by name."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="ifmsan_caffe_subset.proto", package=_PACKAGE, syntax="proto2")
    fdp_field = descriptor_pb2.FieldDescriptorProto

    def add(message: descriptor_pb2.DescriptorProto, name: str, number: int, kind: int, *, repeated: bool = False,
            message_type: str | None = None, packed: bool = False) -> None:
        field = message.field.add(name=name, number=number, type=kind,
                                  label=fdp_field.LABEL_REPEATED if repeated else fdp_field.LABEL_OPTIONAL)
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


def _blob_array(blob: Any, *, path: Path, layer: str, layer_type: str, index: int) -> np.ndarray:
    """One BlobProto as a float32 array in Caffe's shape (legacy 4-D dims squeezed for conv/fc layers)."""
    where = f"{path}: layer {layer!r} ({layer_type}) blob {index}"
    legacy_fields = ("num", "channels", "height", "width")
    if blob.HasField("shape"):
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
    if len(blob.double_data) > 0:  # Caffe's Blob::FromProto prefers double_data when present
        values = np.array(blob.double_data, dtype=np.float64).astype(np.float32)
        source = "double_data"
    else:
        values = np.array(blob.data, dtype=np.float32)
        source = "data"
    if values.size != count:
        raise ValueError(f"{where}: shape {dims} needs {count} values but {source} holds {values.size}")
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
    if not raw:
        raise ValueError(f"caffemodel {path} is empty (0 bytes); download it again")
    net = _message_classes()["NetParameter"]()
    try:
        net.ParseFromString(raw)
    except DecodeError as exc:
        raise ValueError(
            f"caffemodel {path} is truncated or corrupt ({len(raw)} bytes; protobuf: {exc}); download it again"
        ) from exc
    del raw
    layers: list[tuple[str, str, Any]] = []
    for v1 in net.layers:
        layers.append((v1.name, V1_LAYER_TYPES.get(v1.type, f"V1 type {v1.type}"), v1.blobs))
    for v2 in net.layer:
        layers.append((v2.name, v2.type, v2.blobs))
    result: dict[str, list[np.ndarray]] = {}
    for name, layer_type, blobs in layers:
        if len(blobs) == 0:
            continue
        if not name:
            raise ValueError(f"caffemodel {path}: a {layer_type} layer with parameters has no name")
        if name in result:
            raise ValueError(f"caffemodel {path}: layer {name!r} with parameters appears more than once")
        result[name] = [
            _blob_array(blob, path=path, layer=name, layer_type=layer_type, index=i) for i, blob in enumerate(blobs)
        ]
    if not result:
        raise ValueError(
            f"caffemodel {path} holds no layers with parameters ({len(layers)} layers in all); "
            "is it a caffemodel (NetParameter with trained blobs)?"
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
