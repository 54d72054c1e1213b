"""bvlc_alexnet's caffemodel converted once into a memory-mapped .safetensors file (ifmsan.models.converted).

The converted file holds read_caffemodel's arrays bit for bit, builds a network with bit-identical outputs, records
the caffemodel's sha1 (checked without hashing), is byte-identical for the same caffemodel, and anything else
handed over as one is refused by name. Full-size BVLC blobs are 233 MB: one caffemodel per module, one per form test.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from caffemodel_writer import BVLC_SHAPES, bvlc_random_blobs, write_caffemodel  # tests/ is on sys.path
from safetensors import safe_open
from safetensors.numpy import save_file
from workflow_runner import shell_commands, snakemake

import ifmsan.models as models
from ifmsan._shared.hashing import check_digest_file, digest_path, file_xxh3
from ifmsan.cli import main
from ifmsan.models.caffe import read_caffemodel
from ifmsan.models.converted import (
    CONTENT_KEY,
    FORMAT,
    FORMAT_VERSION,
    convert_caffemodel,
    converted_path,
    expected_tensors,
    load_converted,
    read_converted_metadata,
    verify_converted,
)
from ifmsan.workflow import configcheck, paths

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SEED = 3
BVLC_SHA1 = "9116a64c0fbe4459d18f4bb6b56d647b63920377"  # BVLC's published sha1 of bvlc_alexnet.caffemodel


def leftovers(folder: Path) -> list[str]:
    """Files in `folder` that a failed conversion must not leave: any .safetensors, digest or temporary sibling."""
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".xxh3") or ".part" in p.name)


@pytest.fixture(scope="module")
def bvlc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """One full-size V1 caffemodel of random BVLC weights, its sha1 and sha256, and its converted file."""
    root = tmp_path_factory.mktemp("bvlc")
    caffemodel = write_caffemodel(root / "bvlc_alexnet.caffemodel", bvlc_random_blobs(SEED), form="v1")
    data = caffemodel.read_bytes()
    sha1, sha256 = hashlib.sha1(data).hexdigest(), hashlib.sha256(data).hexdigest()
    del data
    converted = convert_caffemodel(caffemodel, root / "bvlc_alexnet.safetensors", sha1=sha1)
    return {"caffemodel": caffemodel, "converted": converted, "sha1": sha1, "sha256": sha256}


# --- conversion ---------------------------------------------------------------------------------------------------


def assert_holds_caffemodel(converted: Path, caffemodel: Path) -> None:
    """Every tensor of the converted file equals read_caffemodel's array bit for bit, as float32 in Caffe's shape."""
    blobs = read_caffemodel(caffemodel)
    with safe_open(str(converted), framework="numpy") as handle:
        assert sorted(handle.keys()) == sorted(expected_tensors())
        for layer, (weight, bias) in blobs.items():
            for name, array in ((f"{layer}.weight", weight), (f"{layer}.bias", bias)):
                got = handle.get_tensor(name)
                assert got.dtype == np.float32 and got.shape == array.shape, name
                assert np.array_equal(got.view(np.uint32), array.view(np.uint32)), name


def test_v1_conversion_holds_the_caffemodels_arrays_and_records_its_sums(bvlc: dict) -> None:
    assert_holds_caffemodel(bvlc["converted"], bvlc["caffemodel"])
    metadata = read_converted_metadata(bvlc["converted"])
    assert metadata == {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": "bvlc_alexnet",
        "caffemodel": "bvlc_alexnet.caffemodel",
        "caffemodel_bytes": str(bvlc["caffemodel"].stat().st_size),
        "caffemodel_sha1": bvlc["sha1"],
        "caffemodel_sha256": bvlc["sha256"],
        "layout": metadata["layout"],
        CONTENT_KEY: metadata[CONTENT_KEY],
    }
    assert FORMAT_VERSION == "2" and len(metadata[CONTENT_KEY]) == 32
    assert "float32" in metadata["layout"] and "(out, in/group, kh, kw)" in metadata["layout"]
    assert expected_tensors() == {
        f"{layer}.{kind}": shape
        for layer, shapes in BVLC_SHAPES.items()
        for kind, shape in zip(("weight", "bias"), shapes, strict=True)
    }


@pytest.mark.slow
def test_v2_conversion_holds_the_caffemodels_arrays(tmp_path: Path) -> None:
    blobs = bvlc_random_blobs(SEED + 1)
    caffemodel = write_caffemodel(tmp_path / "v2.caffemodel", blobs, form="v2", old_dims=False, packed=False)
    converted = convert_caffemodel(caffemodel, tmp_path / "v2.safetensors")  # no sha1 given: computed and recorded
    assert_holds_caffemodel(converted, caffemodel)
    with safe_open(str(converted), framework="numpy") as handle:
        assert np.array_equal(handle.get_tensor("fc6.weight"), blobs["fc6"][0])
    assert read_converted_metadata(converted)["caffemodel_sha1"] == hashlib.sha1(caffemodel.read_bytes()).hexdigest()


@pytest.mark.slow
def test_the_same_caffemodel_gives_the_same_bytes(bvlc: dict, tmp_path: Path) -> None:
    """Our writer sorts the header; the safetensors library's own orders its metadata differently in every process."""
    copy = tmp_path / "elsewhere" / "bvlc_alexnet.caffemodel"
    copy.parent.mkdir()
    shutil.copyfile(bvlc["caffemodel"], copy)
    again = convert_caffemodel(copy, tmp_path / "again.safetensors", sha256=bvlc["sha256"])
    assert again.read_bytes() == bvlc["converted"].read_bytes()
    (length,) = struct.unpack("<Q", again.read_bytes()[:8])
    assert length % 8 == 0 and again.stat().st_size == 8 + length + sum(
        4 * int(np.prod(shape)) for shape in expected_tensors().values()
    )


# --- the network built from it ------------------------------------------------------------------------------------


def test_network_from_the_converted_file_is_bit_identical_and_carries_the_caffemodels_sha1(bvlc: dict) -> None:
    direct = models.load("bvlc_alexnet", weights=bvlc["caffemodel"])
    converted = models.load("bvlc_alexnet", weights=bvlc["converted"])
    a, b = direct.state_dict(), converted.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[key], b[key]) for key in a)
    x = torch.randn(2, 3, 227, 227, generator=torch.Generator().manual_seed(0)) * 60
    with torch.no_grad():
        ifms_a, ifms_b = direct.ifms(x), converted.ifms(x)
        assert all(torch.equal(ifms_a[layer], ifms_b[layer]) for layer in ifms_a)
        assert torch.equal(direct(x), converted(x))
    info = converted.weights_info
    assert info["sha1"] == direct.weights_info["sha1"] == bvlc["sha1"] and "sha256" not in info
    assert info["source"] == str(bvlc["converted"]) and info["converted_from"] == "bvlc_alexnet.caffemodel"
    assert info["content_xxh3"] == read_converted_metadata(bvlc["converted"])[CONTENT_KEY]
    assert {k: v for k, v in info.items() if k not in ("source", "converted_from", "content_xxh3")} == {
        k: v for k, v in direct.weights_info.items() if k != "source"
    }


def test_extract_outputs_differ_only_by_the_weights_source(bvlc: dict, tmp_path: Path) -> None:
    from ifmsan.steps.io import read_ifms

    outputs = {}
    for kind in ("caffemodel", "converted"):
        outputs[kind] = tmp_path / f"{kind}.nc"
        digest = ["--weights-digest", str(digest_path(bvlc[kind]))] if kind == "converted" else []
        code = main(["extract", "--model", "bvlc_alexnet", "--weights", str(bvlc[kind]), *digest, "--weights-sha1",
                     bvlc["sha1"], "--image", "skimage:cat", "--image-id", "cat", "--target", "281", "--threads", "1",
                     "--attr", "run=t", "--out", str(outputs[kind])])  # fmt: skip
        assert code == 0, kind
    direct, converted = (read_ifms(outputs[kind]) for kind in ("caffemodel", "converted"))
    differ = sorted(
        key for key in {*direct.attrs, *converted.attrs} if direct.attrs.get(key) != converted.attrs.get(key)
    )
    assert differ == ["weights_content_xxh3", "weights_source"]  # the converted file's checksum: an extra attribute
    assert (
        converted.attrs["weights_source"] == str(bvlc["converted"]) and converted.attrs["weights_sha"] == bvlc["sha1"]
    )
    assert converted.attrs["weights_content_xxh3"] == read_converted_metadata(bvlc["converted"])[CONTENT_KEY]
    del converted.attrs["weights_content_xxh3"]
    assert direct.identical(converted.assign_attrs(weights_source=direct.attrs["weights_source"]))


# --- the recorded sha1 is checked, without hashing ----------------------------------------------------------------


def test_recorded_sums_are_compared_not_recomputed(bvlc: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import ifmsan.models.caffe_alexnet
    import ifmsan.models.converted
    import ifmsan.steps.fetch

    def no_hashing(*args: object, **kwargs: object) -> str:
        raise AssertionError("hashed")

    for module in (ifmsan.steps.fetch, ifmsan.models.caffe_alexnet):
        monkeypatch.setattr(module, "file_checksum", no_hashing)
    monkeypatch.setattr(ifmsan.models.converted, "_digests", no_hashing)
    assert verify_converted(bvlc["converted"], sha1=bvlc["sha1"].upper())["caffemodel_sha1"] == bvlc["sha1"]
    assert verify_converted(bvlc["converted"], sha256=bvlc["sha256"])["caffemodel"] == "bvlc_alexnet.caffemodel"
    tensors, metadata = load_converted(bvlc["converted"], sha1=bvlc["sha1"])
    assert set(tensors) == set(expected_tensors()) and metadata["caffemodel_sha1"] == bvlc["sha1"]
    assert models.load("bvlc_alexnet", weights=bvlc["converted"]).weights_info["sha1"] == bvlc["sha1"]


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
def test_a_wrong_caffemodel_sum_is_refused_naming_the_file_and_both(bvlc: dict, algorithm: str) -> None:
    wrong = "0" * len(bvlc[algorithm])
    with pytest.raises(ValueError) as info:
        verify_converted(bvlc["converted"], **{algorithm: wrong})
    message = str(info.value)
    assert str(bvlc["converted"]) in message and wrong in message and bvlc[algorithm] in message
    assert "converted from a caffemodel ('bvlc_alexnet.caffemodel')" in message
    with pytest.raises(ValueError, match=wrong):
        load_converted(bvlc["converted"], **{algorithm: wrong})
    with pytest.raises(ValueError, match=f"{algorithm} must be"):
        verify_converted(bvlc["converted"], **{algorithm: "abc"})
    with pytest.raises(ValueError, match="give sha1= or sha256="):
        verify_converted(bvlc["converted"])


def test_cli_job_with_a_wrong_sha1_stops_before_any_work(
    bvlc: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(models, "load", no_loading)
    out = tmp_path / "x.nc"
    own = hashlib.sha256(bvlc["converted"].read_bytes()).hexdigest()  # the .safetensors file's own sha256
    for option, value in (("--weights-sha1", "1" * 40), ("--weights-sha256", own)):
        code = main(["extract", "--model", "bvlc_alexnet", "--weights", str(bvlc["converted"]), option, value,
                     "--image", "skimage:cat", "--image-id", "cat", "--out", str(out)])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and err.startswith("ifmsan extract: error: "), err
        assert f"{bvlc['converted']} is not the expected weights" in err and value in err, err
        assert (bvlc["sha1"] if option == "--weights-sha1" else bvlc["sha256"]) in err
        assert not out.exists()


# --- provenance bound to the bytes: the content checksum, the digest beside the file, the published sums ----------


def edited_copy(bvlc: dict, folder: Path, *, sha1: str | None = None, flip: bool = False) -> Path:
    """A copy of the converted file with the caffemodel_sha1 in its header replaced (same length) and/or one byte of
    fc8.bias (the last tensor) flipped, as a hand edit would leave it."""
    data = bytearray(bvlc["converted"].read_bytes())
    if sha1 is not None:
        (length,) = struct.unpack("<Q", data[:8])
        header = bytes(data[8 : 8 + length])
        assert header.count(bvlc["sha1"].encode()) == 1
        data[8 : 8 + length] = header.replace(bvlc["sha1"].encode(), sha1.encode())
    if flip:
        data[-3] ^= 0x01
    path = folder / "edited.safetensors"
    path.write_bytes(data)
    return path


EDITS = {"header_sha1_made_bvlcs": {"sha1": BVLC_SHA1}, "one_tensor_byte": {"flip": True},
         "both": {"sha1": BVLC_SHA1, "flip": True}}  # fmt: skip


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edited_converted_file_is_refused_as_provenance_that_lies(
    bvlc: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: str
) -> None:
    edited = edited_copy(bvlc, tmp_path, **EDITS[edit])
    claimed = EDITS[edit].get("sha1", bvlc["sha1"])
    loads = (
        read_converted_metadata,
        lambda p: load_converted(p, sha1=claimed),
        lambda p: verify_converted(p, sha1=claimed),
        lambda p: models.load("bvlc_alexnet", weights=p),
    )
    for load in loads:
        with pytest.raises(ValueError) as info:
            load(edited)
        message = str(info.value)
        assert f"{edited}: its recorded provenance does not match its bytes" in message and claimed in message
    out = tmp_path / "x.nc"
    code = main(["extract", "--model", "bvlc_alexnet", "--weights", str(edited), "--weights-sha1", claimed,
                 "--image", "skimage:cat", "--image-id", "cat", "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "its recorded provenance does not match its bytes" in err, err
    assert not out.exists()


def forged(bvlc: dict, folder: Path) -> Path:
    """A self-consistent forgery: one weight changed, BVLC's sha1 recorded, the content checksum computed anew (what
    only someone rewriting the file with ifmsan's own code would make); the digest beside the original catches it."""
    from ifmsan.models import converted as module

    with safe_open(str(bvlc["converted"]), framework="numpy") as handle:
        tensors = {name: handle.get_tensor(name) for name in expected_tensors()}
        metadata = dict(handle.metadata())
    tensors["fc8.bias"][0] += 1
    metadata["caffemodel_sha1"] = BVLC_SHA1
    parts = {name: (a.shape, a.reshape(-1).view(np.uint8)) for name, a in tensors.items()}
    metadata[CONTENT_KEY] = module._content_digest(metadata, parts)
    path = folder / "forged.safetensors"
    module._write_safetensors(path, tensors, metadata)
    return path


def test_the_digest_beside_the_file_catches_a_consistent_forgery(
    bvlc: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = forged(bvlc, tmp_path)
    assert load_converted(fake, sha1=BVLC_SHA1)[1]["caffemodel_sha1"] == BVLC_SHA1  # consistent in itself
    original_digest = digest_path(bvlc["converted"])
    with pytest.raises(ValueError) as info:
        check_digest_file(fake, original_digest)
    message = str(info.value)
    assert f"{fake} does not match its digest file {original_digest}" in message
    assert file_xxh3(fake)[0] in message and file_xxh3(bvlc["converted"])[0] in message
    monkeypatch.setattr(models, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("the model was loaded")))
    out = tmp_path / "x.nc"
    code = main(["extract", "--model", "bvlc_alexnet", "--weights", str(fake), "--weights-digest",
                 str(original_digest), "--weights-sha1", BVLC_SHA1, "--image", "skimage:cat", "--image-id", "cat",
                 "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "does not match its digest file" in err, err
    assert not out.exists()


def test_a_recorded_sum_must_come_with_its_published_partner(
    bvlc: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No public source states BVLC's sha256, so the table holds the sha1 alone; with a partner, a lone sum is refused."""
    from ifmsan.models import converted as module

    assert module.KNOWN_CAFFEMODELS == {"bvlc_alexnet.caffemodel": {"sha1": BVLC_SHA1}}
    fake = forged(bvlc, tmp_path)
    published = "e" * 64
    monkeypatch.setitem(module.KNOWN_CAFFEMODELS, "bvlc_alexnet.caffemodel", {"sha1": BVLC_SHA1, "sha256": published})
    with pytest.raises(ValueError) as info:
        load_converted(fake, sha1=BVLC_SHA1)
    message = str(info.value)
    assert f"{fake} records sums of which only some are bvlc_alexnet.caffemodel's" in message
    assert f"sha256 {bvlc['sha256']}, published {published}" in message
    assert read_converted_metadata(bvlc["converted"])["caffemodel_sha1"] == bvlc["sha1"]  # unknown sums: no claim


def test_conversion_writes_the_digest_that_jobs_check(bvlc: dict) -> None:
    import json

    digest = digest_path(bvlc["converted"])
    assert digest == bvlc["converted"].with_name("bvlc_alexnet.safetensors.xxh3")
    found, size = file_xxh3(bvlc["converted"])
    assert json.loads(digest.read_text()) == {
        "format": "ifmsan.xxh3_128", "file": "bvlc_alexnet.safetensors", "bytes": size, "xxh3_128": found,
    }  # fmt: skip
    assert size == bvlc["converted"].stat().st_size and check_digest_file(bvlc["converted"], digest) == found


DIGEST_BAD = {
    "missing": (None, ["digest file not found:", "absent.xxh3"]),
    "garbage": ("not json", ["is not a digest of 'ifmsan.xxh3_128'", "JSONDecodeError"]),
    "short_digest": ('{"format": "ifmsan.xxh3_128", "file": "w", "bytes": 1, "xxh3_128": "abc"}', ["malformed"]),
    "other_file": ('{"format": "ifmsan.xxh3_128", "file": "w", "bytes": 3, "xxh3_128": "' + "0" * 32 + '"}',
                   ["does not match its digest file", "the digest file records " + "0" * 32 + " (3 bytes)"]),
    "no_weights": ("", ["--weights-digest needs a --weights file, got None"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(DIGEST_BAD))
def test_cli_bad_weights_digest_exits_2_before_loading(
    bvlc: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    text, fragments = DIGEST_BAD[case]
    digest = tmp_path / ("absent.xxh3" if text is None else "w.xxh3")
    if text is not None:
        digest.write_text(text)
    monkeypatch.setattr(models, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("the model was loaded")))
    weights = [] if case == "no_weights" else ["--weights", str(bvlc["converted"])]
    code = main(["extract", "--model", "bvlc_alexnet", *weights, "--weights-digest", str(digest), "--image",
                 "skimage:cat", "--image-id", "cat", "--out", str(tmp_path / "x.nc")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("ifmsan extract: error: ") and err.count("\n") == 1, err
    assert all(fragment in err for fragment in fragments), err
    assert not (tmp_path / "x.nc").exists()


# --- bad files handed over as converted weights --------------------------------------------------------------------


CORRUPT = {
    "truncated_data": lambda data: data[: len(data) // 2],
    "truncated_header": lambda data: data[:300],
    "empty": lambda data: b"",
    "huge_header_length": lambda data: b"\xff" * 8 + data[8:4096],
    "garbage_header": lambda data: data[:8] + b"x" * 64 + data[72:4096],
}


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_a_truncated_or_corrupt_file_is_refused(bvlc: dict, tmp_path: Path, name: str) -> None:
    with bvlc["converted"].open("rb") as handle:
        data = handle.read() if name == "truncated_data" else handle.read(4096)
    bad = tmp_path / f"{name}.safetensors"
    bad.write_bytes(CORRUPT[name](data))
    for load in (read_converted_metadata, load_converted, lambda p: models.load("bvlc_alexnet", weights=p)):
        with pytest.raises(ValueError) as info:
            load(bad)
        message = str(info.value)
        assert f"{bad} is not a readable safetensors file" in message and "ifmsan convert-weights" in message, message


@pytest.mark.parametrize("size", ["whole", "first_64k"])
def test_a_caffemodel_named_safetensors_is_named_as_one_and_kept(bvlc: dict, tmp_path: Path, size: str) -> None:
    bad = tmp_path / "renamed.safetensors"
    if size == "whole":
        shutil.copyfile(bvlc["caffemodel"], bad)
    else:
        with bvlc["caffemodel"].open("rb") as handle:
            bad.write_bytes(handle.read(1 << 16))
    for load in (read_converted_metadata, lambda p: models.load("bvlc_alexnet", weights=p)):
        with pytest.raises(ValueError) as info:
            load(bad)
        message = str(info.value)
        assert f"{bad} is a Caffe caffemodel (protobuf), not converted weights" in message, message
        assert "keep it" in message and "delete" not in message, message
        assert f"ifmsan convert-weights {tmp_path / 'renamed.caffemodel'} --out {bad}" in message, message
    assert bad.exists()


def small(shape: tuple[int, ...] = (1,), dtype: str = "float32") -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


FULL_METADATA = {"format": FORMAT, "format_version": FORMAT_VERSION, "caffemodel": "w.caffemodel",
                 "caffemodel_sha1": "a" * 40, "caffemodel_sha256": "b" * 64, CONTENT_KEY: "c" * 32}  # fmt: skip


ELSEWHERE = {
    "no_metadata": ({"x": small()}, None, ["safetensors file with no ifmsan metadata", f"format {FORMAT!r}"]),
    "hf_metadata": ({"x": small()}, {"format": "pt"}, ["with metadata format 'pt'", "not converted BVLC AlexNet"]),
    "future_version": ({"x": small()}, {**FULL_METADATA, "format_version": "3"}, ["format_version '3'", "'2'"]),
    "version_1": ({"x": small()}, {**FULL_METADATA, "format_version": "1"}, ["format_version '1' (written by an older ifmsan, without a content checksum)", "convert the caffemodel again"]),
    "no_content_checksum": ({"x": small()}, {k: v for k, v in FULL_METADATA.items() if k != CONTENT_KEY}, [f"metadata {CONTENT_KEY} is None, expected 32"]),
    "bad_recorded_sha1": ({"x": small()}, {**FULL_METADATA, "caffemodel_sha1": "xyz"}, ["caffemodel_sha1 is 'xyz'"]),
    "missing_tensor": ({"x": small()}, FULL_METADATA, ["does not hold BVLC AlexNet's tensors", "missing ['conv1.weight'", "unexpected ['x']"]),
    "wrong_shape": ({n: small() for n in expected_tensors()}, FULL_METADATA, ["'conv1.weight' is F32 of shape (1,)", "(96, 3, 11, 11)"]),
    "wrong_dtype": ({**{n: small() for n in expected_tensors()}, "conv1.weight": small((96, 3, 11, 11), "float16")}, FULL_METADATA, ["'conv1.weight' is F16", "expected F32 (float32)"]),
}  # fmt: skip


@pytest.mark.parametrize("name", list(ELSEWHERE))
def test_a_safetensors_file_from_elsewhere_is_refused(tmp_path: Path, name: str) -> None:
    tensors, metadata, fragments = ELSEWHERE[name]
    path = tmp_path / f"{name}.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    for load in (read_converted_metadata, load_converted, lambda p: models.load("bvlc_alexnet", weights=p)):
        with pytest.raises(ValueError) as info:
            load(path)
        message = str(info.value)
        assert str(path) in message and all(fragment in message for fragment in fragments), message


# --- conversion refuses what is not BVLC AlexNet's caffemodel -----------------------------------------------------


def mini_blobs() -> dict[str, list[np.ndarray]]:
    """BVLC's layer names with alexnet_mini's widths: a real caffemodel, but not BVLC AlexNet."""
    shapes = {"conv1": (24, 3, 11, 11), "conv2": (64, 12, 5, 5), "conv3": (96, 64, 3, 3), "conv4": (96, 48, 3, 3),
              "conv5": (64, 48, 3, 3), "fc6": (512, 2304), "fc7": (512, 512), "fc8": (10, 512)}  # fmt: skip
    return {name: [np.zeros(shape, np.float32), np.zeros(shape[0], np.float32)] for name, shape in shapes.items()}


def test_a_caffemodel_that_is_not_bvlc_alexnet_is_refused(tmp_path: Path) -> None:
    other = write_caffemodel(tmp_path / "mini.caffemodel", mini_blobs())
    with pytest.raises(ValueError, match=r"mini.caffemodel: layer 'conv1' has blob shapes \[\(24, 3, 11, 11\).*BVLC"):
        convert_caffemodel(other, tmp_path / "mini.safetensors")
    fewer = write_caffemodel(tmp_path / "few.caffemodel", {"conv1": mini_blobs()["conv1"]})
    with pytest.raises(ValueError, match="is not BVLC AlexNet.*missing"):
        convert_caffemodel(fewer, tmp_path / "few.safetensors")
    (tmp_path / "text.caffemodel").write_text("name: 'CaffeNet'\n")
    with pytest.raises(ValueError, match="text.caffemodel"):
        convert_caffemodel(tmp_path / "text.caffemodel", tmp_path / "text.safetensors")
    assert leftovers(tmp_path) == []


# --- the command line ---------------------------------------------------------------------------------------------


def test_cli_converts_and_prints_what_it_recorded(
    bvlc: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sub" / "w.safetensors"
    assert main(["convert-weights", str(bvlc["caffemodel"]), "--out", str(out), "--sha1", bvlc["sha1"]]) == 0
    assert capsys.readouterr().out == (
        f"{out}\tconverted from bvlc_alexnet.caffemodel (sha1 {bvlc['sha1']})\n"
        f"{out}.xxh3\tdigest of w.safetensors (give it as --weights-digest)\n"
    )
    assert out.read_bytes() == bvlc["converted"].read_bytes()
    assert sorted(p.name for p in out.parent.iterdir()) == ["w.safetensors", "w.safetensors.xxh3"]


@pytest.mark.slow
def test_cli_in_a_fresh_process_writes_the_same_bytes(bvlc: dict, tmp_path: Path) -> None:
    out = tmp_path / "fresh.safetensors"
    result = subprocess.run(
        [str(BIN / "ifmsan"), "convert-weights", str(bvlc["caffemodel"]), "--out", str(out), "--sha256", bvlc["sha256"]],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == bvlc["converted"].read_bytes()


CLI_BAD = {
    "missing": ["caffemodel not found:", "absent.caffemodel"],
    "wrong_suffix": ["--out", "out.pt must end in .safetensors", "e.g.", "out.safetensors"],
    "out_is_dir": ["is a directory; expected the path of a file to write"],
    "wrong_sha1": ["is not the expected caffemodel: its sha1 is", "expected " + "0" * 40, "nothing was converted"],
    "malformed_sha1": ["sha1 must be 40 hexadecimal digits, got 'abc'"],
    "not_bvlc": ["mini.caffemodel: layer 'conv1' has blob shapes"],
}


@pytest.mark.parametrize("case", list(CLI_BAD))
def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(
    bvlc: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    fragments = CLI_BAD[case]
    caffemodel, out, extra = bvlc["caffemodel"], tmp_path / "out.safetensors", []
    if case == "missing":
        caffemodel = tmp_path / "absent.caffemodel"
    elif case == "wrong_suffix":
        out = tmp_path / "out.pt"
    elif case == "out_is_dir":
        out = tmp_path / "dir.safetensors"
        out.mkdir()
    elif case == "wrong_sha1":
        extra = ["--sha1", "0" * 40]
    elif case == "malformed_sha1":
        extra = ["--sha1", "abc"]
    elif case == "not_bvlc":
        caffemodel = write_caffemodel(tmp_path / "mini.caffemodel", mini_blobs())
    code = main(["convert-weights", str(caffemodel), "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("ifmsan convert-weights: error: ") and err.count("\n") == 1, err
    assert all(fragment in err for fragment in fragments), err
    assert leftovers(tmp_path) == (["dir.safetensors"] if case == "out_is_dir" else [])
    assert not (tmp_path / "out.pt").exists()


# --- the workflow -------------------------------------------------------------------------------------------------

PAPER = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_the_workflow_converts_bvlc_caffemodels_only() -> None:
    assert paths.converted_weights_path(PAPER["model"]) == "data/bvlc_alexnet.safetensors"
    local = {**PAPER["model"], "weights": {"path": "/models/zoo/alexnet.caffemodel", "sha1": "a" * 40}}
    assert paths.converted_weights_path(local) == "/models/zoo/alexnet.safetensors"
    assert converted_path("data/bvlc_alexnet.caffemodel") == Path("data/bvlc_alexnet.safetensors")
    for model in (
        {**PAPER["model"], "weights": None},
        {"name": "alexnet_mini", "weights": "train"},
        {"name": "alexnet_mini", "weights": {"path": "mine.pt", "sha256": "a" * 64}},
        {"name": "torchvision:alexnet", "weights": "IMAGENET1K_V1"},
    ):
        assert paths.converted_weights_path(model) is None, model


def test_a_safetensors_weights_entry_for_bvlc_is_refused_by_the_config_check() -> None:
    config = {**PAPER, "model": {**PAPER["model"], "weights": {"path": "w.safetensors", "sha1": "a" * 40}}}
    problems = configcheck.config_problems(config, files=False)
    assert any(
        p.startswith("model.weights: 'w.safetensors' is a converted .safetensors file; give the .caffemodel")
        for p in problems
    ), problems


@pytest.mark.slow
def test_paper_dry_run_converts_once_and_jobs_load_the_converted_file(tmp_path: Path) -> None:
    result = snakemake(tmp_path, "-n", "-p", "--configfile", str(REPO / "config" / "config.yaml"), timeout=300)
    sha1 = PAPER["model"]["weights"]["sha1"]
    convert = shell_commands(result.stdout, "convert-weights")
    assert convert == [
        ["convert-weights", "data/bvlc_alexnet.caffemodel", "--out", "data/bvlc_alexnet.safetensors", "--sha1", sha1]
    ]
    assert "output: data/bvlc_alexnet.safetensors, data/bvlc_alexnet.safetensors.xxh3" in result.stdout
    jobs = [" ".join(args) + " " for args in shell_commands(result.stdout, "image")]
    jobs = [c for c in jobs if " --model bvlc_alexnet " in f" {c}"]
    assert len(jobs) == 1  # the image's extract, sweeps, chain sweeps and gamma controller
    digest = "--weights-digest data/bvlc_alexnet.safetensors.xxh3"
    assert all(f"--weights data/bvlc_alexnet.safetensors {digest} --weights-sha1 {sha1} " in c for c in jobs)
    assert not any("bvlc_alexnet.caffemodel" in c for c in jobs)
