"""BVLC AlexNet's caffemodel, parsed once into a safetensors file that every job memory-maps instead.

The converted file holds the caffemodel's float32 arrays as `{layer}.weight` / `{layer}.bias` in Caffe's shapes and
records the caffemodel's sha1 and sha256, bound to the tensors by a recorded content checksum (xxh3-128) that every
read recomputes; a job compares the recorded sums with the expected ones (the caffemodel is not hashed again) and
reads the tensors through a memory map. Outputs carry the caffemodel's sha1 as their weights checksum. The converter
also writes `<file>.xxh3` (the whole file's digest) beside it for --weights-digest. docs/models.md describes both.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ifmsan._shared.hashing import (
    CHUNK,
    HEX_DIGITS,
    RACY_NS,
    checked_sums,
    digest_path,
    file_identity,
    write_digest_file,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "CONTENT_KEY",
    "FORMAT",
    "FORMAT_VERSION",
    "KNOWN_CAFFEMODELS",
    "SUFFIX",
    "convert_caffemodel",
    "converted_path",
    "digest_path",
    "expected_tensors",
    "load_converted",
    "read_converted_metadata",
    "verify_converted",
]

FORMAT = "ifmsan.bvlc_alexnet"
"""The `format` metadata entry of a converted file."""
FORMAT_VERSION = "2"
"""The `format_version` metadata entry this ifmsan writes and reads (1: without the content checksum)."""
CONTENT_KEY = "content_xxh3_128"
"""The metadata entry that binds the recorded metadata (the caffemodel's sums among them) to every tensor's bytes."""
KNOWN_CAFFEMODELS: dict[str, dict[str, str]] = {
    # The sha1: BVLC/caffe models/bvlc_alexnet/readme.md. No public source found states the sha256 (model zoo readmes,
    # OpenCV's and MXNet's download scripts give the sha1 only): a sum is added only with the source that states it.
    "bvlc_alexnet.caffemodel": {"sha1": "9116a64c0fbe4459d18f4bb6b56d647b63920377"},
}
"""Published sums of known caffemodels: a converted file that records one of them must record its partners too."""
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


def _content_digest(metadata: Mapping[str, str], tensors: Mapping[str, Any]) -> str:
    """xxh3-128 of every metadata entry but the content key itself (the caffemodel's sha1 and sha256 among them) and of
    every tensor's name, shape and raw bytes in name order, each part length-prefixed so no two inputs give one stream.

    `tensors` maps names to (shape, bytes-like of little-endian float32 in C order).
    """
    import xxhash

    digest = xxhash.xxh3_128()

    def part(data: Any) -> None:
        """Its length, then its bytes."""
        digest.update(struct.pack("<Q", memoryview(data).nbytes))
        digest.update(data)

    part(f"{FORMAT}/{FORMAT_VERSION}".encode())
    for key in sorted(k for k in metadata if k != CONTENT_KEY):
        part(key.encode("utf-8"))
        part(metadata[key].encode("utf-8"))
    for name in sorted(tensors):
        shape, data = tensors[name]
        part(f"{name} F32 {list(shape)}".encode())
        part(data)
    return digest.hexdigest()


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
    """Convert BVLC AlexNet's .caffemodel into `out` (a .safetensors file) and its digest `out`.xxh3, atomically;
    returns `out`.

    The caffemodel is checked against `sha1` / `sha256` when given (before it is parsed), read with
    ifmsan.models.caffe.read_caffemodel and checked to hold BVLC AlexNet's layers and blob shapes. The file records the
    caffemodel's sha1 and sha256 (computed here), its file name and size, the format, the tensor layout and the content
    checksum binding them to the tensors; the same caffemodel gives a byte-identical file. It is read back through the
    safetensors library and its checksum recomputed before it is renamed into place, so a failure at any step leaves
    no file at `out`.
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
    arrays = {name: np.ascontiguousarray(array, dtype="<f4") for name, array in tensors.items()}
    metadata[CONTENT_KEY] = _content_digest(
        metadata, {n: (a.shape, a.reshape(-1).view(np.uint8)) for n, a in arrays.items()}
    )
    with atomic_path(target) as tmp:
        _write_safetensors(tmp, arrays, metadata)
        _check_written(tmp, arrays, metadata, target=target)
        _check_content(tmp, metadata, shown=target)
        write_digest_file(tmp, name=target.name)  # <out>.xxh3: renamed into place before `out` is
    return target


def _check_written(path: Path, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str], *, target: Path) -> None:
    """Read the new file back through the safetensors library: the same metadata and the same bits in every tensor."""
    from safetensors import safe_open

    with _open(path) as handle:
        read_back = dict(handle.metadata() or {})
    if read_back != dict(metadata):
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
        from ifmsan.models.caffe_alexnet import looks_like_caffemodel

        if looks_like_caffemodel(path):
            original = path.with_suffix(".caffemodel")
            raise ValueError(
                f"{path} is a Caffe caffemodel (protobuf), not converted weights, despite its {SUFFIX} name: keep it "
                f"(it is the source), rename it to {original} and give that as --weights, or convert it into another "
                f"file: ifmsan convert-weights {original} --out {path}"
            ) from exc
        raise ValueError(
            f"{path} is not a readable safetensors file ({type(exc).__name__}: {exc}): truncated, corrupt or another "
            f"kind of file; delete it and convert the caffemodel again {_HOW}"
        ) from exc


def _check_known(path: Path, metadata: Mapping[str, str]) -> None:
    """A recorded sum that is a known caffemodel's must come with that caffemodel's other published sums."""
    recorded = {algorithm: metadata.get(f"caffemodel_{algorithm}") for algorithm in HEX_DIGITS}
    for name, sums in KNOWN_CAFFEMODELS.items():
        if any(recorded[a] == v for a, v in sums.items()):
            wrong = [a for a, v in sums.items() if recorded[a] != v]
            if wrong:
                both = "; ".join(f"{a} {recorded[a]}, published {sums[a]}" for a in wrong)
                raise ValueError(
                    f"{path} records sums of which only some are {name}'s: {both}; its provenance is not BVLC's. "
                    f"Convert the caffemodel again {_HOW}"
                )


def _check_header(path: Path, handle: Any) -> dict[str, str]:
    """The metadata of an open converted file, after checking its format, version, recorded sums against each other
    and the tensor names, shapes and dtypes (not the content checksum: _check_content)."""
    metadata = dict(handle.metadata() or {})
    found = metadata.get("format")
    if found != FORMAT:
        what = "no ifmsan metadata" if found is None else f"metadata format {found!r}"
        raise ValueError(
            f"{path} is a safetensors file with {what}, not converted BVLC AlexNet weights (format {FORMAT!r}); "
            f"convert the caffemodel {_HOW}"
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        older = (
            " (written by an older ifmsan, without a content checksum)" if metadata.get("format_version") == "1" else ""
        )
        raise ValueError(
            f"{path} has format_version {metadata.get('format_version')!r}{older}; this ifmsan reads "
            f"{FORMAT_VERSION!r}: convert the caffemodel again {_HOW}"
        )
    for key, digits in (("caffemodel_sha1", 40), ("caffemodel_sha256", 64), (CONTENT_KEY, 32)):
        if not re.fullmatch(rf"[0-9a-f]{{{digits}}}", metadata.get(key, "")):
            raise ValueError(
                f"{path}: metadata {key} is {metadata.get(key)!r}, expected {digits} lower-case hex digits; "
                f"convert the caffemodel again {_HOW}"
            )
    _check_known(path, metadata)
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


_CONTENT_CHECKED: set[tuple[tuple[int, ...], str]] = set()
"""(file identity, content checksum) pairs this process verified; in memory only, bound like hashing.file_checksum."""


def _check_content(path: Path, metadata: Mapping[str, str], *, shown: Path | None = None) -> None:
    """Recompute the content checksum from the file's tensor bytes (a memory map of the data the header points at)
    and compare it with the recorded one; a ValueError names the file (`shown`, else `path`) and both checksums."""
    import mmap

    shown = shown or path
    started, identity = time.time_ns(), file_identity(path)
    if (identity, metadata[CONTENT_KEY]) in _CONTENT_CHECKED:  # verify_converted, then load_converted: one pass
        return
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        (length,) = struct.unpack("<Q", mapped[:8])
        header, base, shapes = json.loads(mapped[8 : 8 + length]), 8 + length, expected_tensors()
        spans = {name: header[name]["data_offsets"] for name in shapes}
        if any(not 0 <= start <= end <= len(mapped) - base for start, end in spans.values()):
            raise ValueError(f"{shown}: a tensor lies outside the file; convert the caffemodel again {_HOW}")
        with memoryview(mapped) as view:  # the slices die with the dict, before the view and the map are released
            found = _content_digest(
                metadata, {n: (shapes[n], view[base + a : base + b]) for n, (a, b) in spans.items()}
            )
    if found != metadata[CONTENT_KEY]:
        raise ValueError(
            f"{shown}: its recorded provenance does not match its bytes: {CONTENT_KEY} recorded "
            f"{metadata[CONTENT_KEY]}, computed {found} from its metadata (caffemodel sha1 "
            f"{metadata.get('caffemodel_sha1')}) and tensors; the file was edited after conversion. Delete it and "
            f"convert the caffemodel again {_HOW}"
        )
    if file_identity(path) == identity and started - max(identity[3], identity[4]) > RACY_NS:
        _CONTENT_CHECKED.add((identity, metadata[CONTENT_KEY]))


def read_converted_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata of a converted file, after checking format, version, recorded sums, every tensor's name, shape and
    dtype, and the content checksum against the tensors' bytes. A ValueError names the file and what was expected."""
    path = Path(path)
    with _open(path) as handle:
        metadata = _check_header(path, handle)
    _check_content(path, metadata)
    return metadata


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
    """Check a converted file's recorded caffemodel sums against the expected ones, without hashing the caffemodel
    (the file's own content checksum is recomputed).

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
        _check_content(path, metadata)
        try:
            tensors = {name: handle.get_tensor(name) for name in expected_tensors()}
        except Exception as exc:  # a file that shrank after its header was read
            raise ValueError(
                f"{path}: cannot read its tensors ({type(exc).__name__}: {exc}); convert the caffemodel again {_HOW}"
            ) from exc
    return tensors, metadata
