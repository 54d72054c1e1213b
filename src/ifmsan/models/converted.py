"""BVLC AlexNet's caffemodel, parsed once into a safetensors file that every job memory-maps instead.

Reading the 233 MB caffemodel directly would cost each job a sha1 of the whole file and a protobuf parse. The converted file
holds the same float32 arrays as `{layer}.weight` / `{layer}.bias` in Caffe's shapes, and records the caffemodel's
sha1 and sha256 in its metadata: a job checks the recorded sums against the expected ones (no re-hash) and reads the
tensors through a memory map. Outputs made from it carry the caffemodel's sha1 as their weights checksum, exactly
as if the caffemodel had been read directly. docs/models.md describes the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ifmsan._shared.hashing import CHUNK, HEX_DIGITS, checked_sums

if TYPE_CHECKING:
    import torch

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SUFFIX",
    "convert_caffemodel",
    "converted_path",
    "expected_tensors",
    "load_converted",
    "read_converted_metadata",
    "verify_converted",
]

FORMAT = "ifmsan.bvlc_alexnet"
"""The `format` metadata entry of a converted file."""
FORMAT_VERSION = "1"
"""The `format_version` metadata entry this ifmsan writes and reads."""
SUFFIX = ".safetensors"
LAYOUT = (
    "float32 little-endian, C order, in Caffe's blob shapes: convolution weight (out, in/group, kh, kw), "
    "fully connected weight (out, in), bias (out,)"
)
_HOW = "(ifmsan convert-weights CAFFEMODEL --out FILE.safetensors; docs/models.md)"


def expected_tensors() -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of a converted BVLC AlexNet: conv1.weight, conv1.bias, ..., fc8.bias (float32)."""
    from ifmsan.models.caffe import BVLC_ALEXNET_BLOB_SHAPES

    tensors: dict[str, tuple[int, ...]] = {}
    for layer, (weight, bias) in BVLC_ALEXNET_BLOB_SHAPES.items():
        tensors[f"{layer}.weight"], tensors[f"{layer}.bias"] = tuple(weight), tuple(bias)
    return tensors


def converted_path(caffemodel: str | os.PathLike[str]) -> Path:
    """Where the workflow puts a caffemodel's converted file: the same folder and stem, suffix .safetensors."""
    return Path(caffemodel).with_suffix(SUFFIX)


def _digests(path: Path) -> dict[str, str]:
    """sha1 and sha256 of a file in one pass."""
    digests = {algorithm: hashlib.new(algorithm) for algorithm in HEX_DIGITS}
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            for digest in digests.values():
                digest.update(block)
    return {algorithm: digest.hexdigest() for algorithm, digest in digests.items()}


def _write_safetensors(path: Path, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> None:
    """The safetensors format (8-byte little-endian header length, JSON header, raw data), byte for byte the same
    for the same input: keys sorted, compact JSON, header padded with spaces to 8 bytes, tensors in name order.

    The safetensors library's own writer orders the metadata by a hash map, differently in every process.
    """
    names = sorted(tensors)
    arrays = {name: np.ascontiguousarray(tensors[name], dtype="<f4") for name in names}
    header: dict[str, Any] = {"__metadata__": dict(metadata)}
    offset = 0
    for name in names:
        size = arrays[name].nbytes
        header[name] = {"dtype": "F32", "shape": list(arrays[name].shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(text)))
        handle.write(text)
        for name in names:
            handle.write(arrays[name].data)


def convert_caffemodel(
    caffemodel: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    sha1: str | None = None,
    sha256: str | None = None,
) -> Path:
    """Convert BVLC AlexNet's .caffemodel into `out` (a .safetensors file), atomically; returns `out`.

    The caffemodel is checked against `sha1` / `sha256` when given (before it is parsed), read with
    ifmsan.models.caffe.read_caffemodel and checked to hold BVLC AlexNet's layers and blob shapes. The file records the
    caffemodel's sha1 and sha256 (computed here), its file name and size, the format and the tensor layout; the same
    caffemodel gives a byte-identical file. It is read back through the safetensors library before it is renamed into
    place, so a failure at any step leaves no file at `out`.
    """
    from ifmsan._shared.atomic import atomic_path
    from ifmsan.models.caffe import read_caffemodel, validate_bvlc_alexnet

    source, target = Path(caffemodel), Path(out)
    if target.suffix != SUFFIX:
        raise ValueError(f"output {target} must end in {SUFFIX}, got suffix {target.suffix or '(none)'!r}")
    expected = checked_sums(sha256, sha1, what="expected caffemodel")
    if not source.exists():
        raise FileNotFoundError(f"caffemodel not found: {source}")
    if not source.is_file():
        raise ValueError(f"caffemodel {source} is not a regular file")
    if target.exists() and target.resolve() == source.resolve():
        raise ValueError(f"output {target} is the caffemodel itself; write the converted file elsewhere")
    digests = _digests(source)
    wrong = [a for a in expected if digests[a] != expected[a]]
    if wrong:
        sums = "; ".join(f"{a} is {digests[a]}, expected {expected[a]}" for a in wrong)
        raise ValueError(f"{source} is not the expected caffemodel: its {sums}; nothing was converted")
    blobs = read_caffemodel(source)
    validate_bvlc_alexnet(blobs, path=source)
    tensors = {}
    for layer, (weight, bias) in blobs.items():  # validate_bvlc_alexnet: exactly [weight, bias] each
        tensors[f"{layer}.weight"], tensors[f"{layer}.bias"] = weight, bias
    del blobs
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": "bvlc_alexnet",
        "caffemodel": source.name,
        "caffemodel_bytes": str(source.stat().st_size),
        "caffemodel_sha1": digests["sha1"],
        "caffemodel_sha256": digests["sha256"],
        "layout": LAYOUT,
    }
    with atomic_path(target) as tmp:
        _write_safetensors(tmp, tensors, metadata)
        _check_written(tmp, tensors, metadata, target=target)
    return target


def _check_written(path: Path, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str], *, target: Path) -> None:
    """Read the new file back through the safetensors library: the same metadata and the same bits in every tensor."""
    from safetensors import safe_open

    if read_converted_metadata(path) != dict(metadata):
        raise ValueError(f"writing {target}: the metadata read back differ from those written")
    with safe_open(str(path), framework="numpy") as handle:
        for name, array in tensors.items():
            got, written = handle.get_tensor(name), np.ascontiguousarray(array, dtype="<f4")
            if got.shape != written.shape or not np.array_equal(got.view("<u4"), written.view("<u4")):  # bits, NaN too
                raise ValueError(f"writing {target}: tensor {name!r} read back differs from the one written")


def _open(path: Path) -> Any:
    """safe_open(path) for torch (a memory map), or a ValueError naming the file and what it should be."""
    from safetensors import safe_open

    if not path.exists():
        raise FileNotFoundError(f"converted bvlc_alexnet weights not found: {path}")
    if not path.is_file():
        raise ValueError(f"converted bvlc_alexnet weights {path} is not a regular file")
    try:
        return safe_open(str(path), framework="pt")
    except Exception as exc:  # SafetensorError, OSError, or whatever a foreign file makes the header parser raise
        raise ValueError(
            f"{path} is not a readable safetensors file ({type(exc).__name__}: {exc}): truncated, corrupt or another "
            f"kind of file; delete it and convert the caffemodel again {_HOW}"
        ) from exc


def _check_header(path: Path, handle: Any) -> dict[str, str]:
    """The metadata of an open converted file, after checking its format, version, tensor names, shapes and dtypes."""
    metadata = dict(handle.metadata() or {})
    found = metadata.get("format")
    if found != FORMAT:
        what = "no ifmsan metadata" if found is None else f"metadata format {found!r}"
        raise ValueError(
            f"{path} is a safetensors file with {what}, not converted BVLC AlexNet weights (format {FORMAT!r}); "
            f"convert the caffemodel {_HOW}"
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version {metadata.get('format_version')!r}; this ifmsan reads {FORMAT_VERSION!r}: "
            f"convert the caffemodel again {_HOW}"
        )
    for key in ("caffemodel_sha1", "caffemodel_sha256"):
        algorithm = key.removeprefix("caffemodel_")
        if not re.fullmatch(rf"[0-9a-f]{{{HEX_DIGITS[algorithm]}}}", metadata.get(key, "")):
            raise ValueError(
                f"{path}: metadata {key} is {metadata.get(key)!r}, expected {HEX_DIGITS[algorithm]} lower-case hex digits; "
                f"convert the caffemodel again {_HOW}"
            )
    expected = expected_tensors()
    names = list(handle.keys())
    missing = [name for name in expected if name not in names]
    unexpected = [name for name in names if name not in expected]
    if missing or unexpected:
        raise ValueError(
            f"{path} does not hold BVLC AlexNet's tensors: missing {missing}, unexpected {unexpected}; expected "
            f"{list(expected)}"
        )
    for name, shape in expected.items():
        tensor = handle.get_slice(name)
        found_shape, dtype = tuple(tensor.get_shape()), tensor.get_dtype()
        if found_shape != shape or dtype != "F32":
            raise ValueError(
                f"{path}: tensor {name!r} is {dtype} of shape {found_shape}, expected F32 (float32) of shape {shape}"
            )
    return metadata


def read_converted_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata of a converted file, after checking format, version, recorded sums and every tensor's name,
    shape and dtype; reads the header only. A ValueError names the file and what was expected."""
    path = Path(path)
    with _open(path) as handle:
        return _check_header(path, handle)


def _check_sums(path: Path, metadata: Mapping[str, str], expected: Mapping[str, str]) -> None:
    """The recorded caffemodel sums equal the expected ones, or a ValueError naming the file and both sums."""
    wrong = [a for a in expected if metadata[f"caffemodel_{a}"] != expected[a]]
    if wrong:
        sums = "; ".join(f"{a} {metadata[f'caffemodel_{a}']}, expected {expected[a]}" for a in wrong)
        raise ValueError(
            f"{path} is not the expected weights: it was converted from a caffemodel ({metadata.get('caffemodel')!r}) "
            f"with {sums}. To fix: delete {path} and convert the right caffemodel (the workflow does it again)"
        )


def verify_converted(
    path: str | os.PathLike[str], *, sha1: str | None = None, sha256: str | None = None
) -> dict[str, str]:
    """Check a converted file's recorded caffemodel sums against the expected ones, without hashing anything.

    sha1 / sha256 name the caffemodel the file was converted from (as --weights-sha1/-sha256 do for bvlc_alexnet);
    at least one is required. Returns the metadata; a ValueError names the file and both sums.
    """
    expected = checked_sums(sha256, sha1, what="expected caffemodel")
    if not expected:
        raise ValueError(f"verifying {path}: give sha1= or sha256= (of the caffemodel it was converted from)")
    path = Path(path)
    metadata = read_converted_metadata(path)
    _check_sums(path, metadata, expected)
    return metadata


def load_converted(
    path: str | os.PathLike[str], *, sha1: str | None = None, sha256: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors of a converted file, read through a memory map, and its metadata, after every check of
    read_converted_metadata and (when given) of the recorded caffemodel sums against `sha1` / `sha256`."""
    expected = checked_sums(sha256, sha1, what="expected caffemodel")
    path = Path(path)
    with _open(path) as handle:
        metadata = _check_header(path, handle)
        _check_sums(path, metadata, expected)
        try:
            tensors = {name: handle.get_tensor(name) for name in expected_tensors()}
        except Exception as exc:  # a file that shrank after its header was read
            raise ValueError(
                f"{path}: cannot read its tensors ({type(exc).__name__}: {exc}); convert the caffemodel again {_HOW}"
            ) from exc
    return tensors, metadata
