"""ifmsan.models.caffe: caffemodels written byte by byte by tests/caffemodel_writer.py are read back exactly."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import numpy as np
import pytest
from caffemodel_writer import (
    BVLC_LAYERS,
    bvlc_random_blobs,
    encode_blob,
    encode_net,
    encode_v1_layer,
    encode_v2_layer,
    length_field,
    write_caffemodel,
    write_chunks,
)

from ifmsan.models.caffe import BVLC_ALEXNET_BLOB_SHAPES, read_caffemodel, validate_bvlc_alexnet

# BVLC AlexNet's parameter shapes from models/bvlc_alexnet/deploy.prototxt, written out by hand:
# conv (out, in/group, kh, kw), fc (out, in), bias (out,); groups of 2 on conv2, conv4, conv5.
PAPER_SHAPES = {
    "conv1": [(96, 3, 11, 11), (96,)],
    "conv2": [(256, 96 // 2, 5, 5), (256,)],
    "conv3": [(384, 256, 3, 3), (384,)],
    "conv4": [(384, 384 // 2, 3, 3), (384,)],
    "conv5": [(256, 384 // 2, 3, 3), (256,)],
    "fc6": [(4096, 256 * 6 * 6), (4096,)],
    "fc7": [(4096, 4096), (4096,)],
    "fc8": [(1000, 4096), (1000,)],
}


def small_bvlc_named_blobs(seed: int = 0) -> dict[str, list[np.ndarray]]:
    """BVLC layer names with tiny shapes (and edge cases: out = 1 fc, 1x1-channel conv, a layer without bias)."""
    rng = np.random.default_rng(seed)
    shapes = {
        "conv1": [(4, 3, 3, 3), (4,)],
        "conv2": [(1, 1, 3, 3), (1,)],
        "conv3": [(5, 2, 1, 1)],
        "fc6": [(7, 12), (7,)],
        "fc8": [(1, 7), (1,)],
    }
    return {name: [rng.standard_normal(s).astype(np.float32) for s in layer] for name, layer in shapes.items()}


def assert_same_blobs(got: dict[str, list[np.ndarray]], expected: dict[str, list[np.ndarray]]) -> None:
    assert list(got) == list(expected)
    for name, arrays in expected.items():
        assert len(got[name]) == len(arrays), name
        for g, e in zip(got[name], arrays, strict=True):
            assert g.dtype == np.float32 and g.shape == e.shape, (name, g.shape, e.shape)
            assert np.array_equal(g, e), name


def test_bvlc_shape_constant_matches_deploy_prototxt() -> None:
    assert BVLC_ALEXNET_BLOB_SHAPES == PAPER_SHAPES
    params = sum(int(np.prod(s)) for layer in PAPER_SHAPES.values() for s in layer)
    assert params == 60_965_224  # the parameter count of BVLC AlexNet (deploy.prototxt)


def test_full_size_bvlc_alexnet_v1_file_round_trips_exactly(tmp_path: Path) -> None:
    """The real file's form: V1 layers, old 4-D dims, packed floats, 61 M parameters (about 244 MB)."""
    blobs = bvlc_random_blobs(7)
    path = write_caffemodel(tmp_path / "bvlc_alexnet.caffemodel", blobs, form="v1", old_dims=True, packed=True)
    assert path.stat().st_size > 60_965_224 * 4
    start = time.perf_counter()
    got = read_caffemodel(path)
    seconds = time.perf_counter() - start
    assert_same_blobs(got, blobs)
    assert {name: [a.shape for a in arrays] for name, arrays in got.items()} == PAPER_SHAPES
    validate_bvlc_alexnet(got, path=path)
    assert seconds < 10, f"reading a 244 MB caffemodel took {seconds:.1f} s"


def test_random_blobs_are_seeded_and_small() -> None:
    a, b = bvlc_random_blobs(1), bvlc_random_blobs(1)
    assert all(np.array_equal(x, y) for n in a for x, y in zip(a[n], b[n], strict=True))
    assert 0.005 < float(a["fc7"][0].std()) < 0.02


@pytest.mark.parametrize("form", ["v1", "v2"])
@pytest.mark.parametrize("old_dims", [True, False], ids=["old_dims", "blobshape"])
@pytest.mark.parametrize("packed", [True, False], ids=["packed", "unpacked"])
@pytest.mark.parametrize("double", [False, True], ids=["float", "double"])
def test_every_form_round_trips(tmp_path: Path, form: str, old_dims: bool, packed: bool, double: bool) -> None:
    blobs = small_bvlc_named_blobs()
    path = write_caffemodel(
        tmp_path / "net.caffemodel", blobs, form=form, old_dims=old_dims, packed=packed, double=double
    )
    assert_same_blobs(read_caffemodel(path), blobs)


@pytest.mark.parametrize("form", ["v1", "v2"])
def test_tiny_non_alexnet_net(tmp_path: Path, form: str) -> None:
    rng = np.random.default_rng(3)
    blobs = {
        "stem": [rng.standard_normal((2, 1, 5, 5)).astype(np.float32), np.array([0.5, -0.25], np.float32)],
        "head": [rng.standard_normal((3, 8)).astype(np.float32)],
    }
    path = write_caffemodel(tmp_path / "tiny.caffemodel", blobs, form=form)
    got = read_caffemodel(path)
    assert_same_blobs(got, blobs)
    with pytest.raises(ValueError, match="not BVLC AlexNet"):
        validate_bvlc_alexnet(got, path=path)


def test_writer_blob_bytes_match_the_wire_format_by_hand() -> None:
    """The test writer itself checked against hand-assembled protobuf bytes (so it cannot share a reader bug)."""
    values = np.array([1.0, 2.0], np.float32)
    one, two = struct.pack("<f", 1.0), struct.pack("<f", 2.0)
    # num=1 (08 01), channels=1 (10 01), height=1 (18 01), width=2 (20 02), data packed: key 5<<3|2 = 0x2a, len 8
    assert b"".join(encode_blob(values)) == bytes([0x08, 1, 0x10, 1, 0x18, 1, 0x20, 2, 0x2A, 8]) + one + two
    # unpacked data: key 5<<3|5 = 0x2d per element; then BlobShape in field 7 (0x3a)
    assert b"".join(encode_blob(values, old_dims=False, packed=False)) == (
        bytes([0x2D]) + one + bytes([0x2D]) + two + bytes([0x3A, 2, 0x08, 2])  # unpacked dim: key 0x08
    )
    # double_data packed: key 8<<3|2 = 0x42, len 16
    assert b"".join(encode_blob(values, old_dims=False, double=True)) == (
        bytes([0x42, 16]) + struct.pack("<2d", 1.0, 2.0) + bytes([0x3A, 3, 0x0A, 1, 2])
    )
    # a V1 layer: name (field 4, 0x22), type enum (field 5, 0x28); NetParameter layers in field 2 (0x12)
    assert b"".join(encode_net([encode_v1_layer("r", 18)], name="n")) == bytes(
        [0x0A, 1, ord("n"), 0x12, 5, 0x22, 1, ord("r"), 0x28, 18]
    )
    # a V2 layer goes to field 100: key 100<<3|2 = 802 = varint a2 06; name field 1 (0x0a), type string field 2 (0x12)
    assert b"".join(encode_net([encode_v2_layer("r", "ReLU")], form="v2", name="n")) == bytes(
        [0x0A, 1, ord("n"), 0xA2, 0x06, 9, 0x0A, 1, ord("r"), 0x12, 4, *b"ReLU"]
    )


def test_writer_layer_list_is_bvlcs_full_train_net() -> None:
    names = [layer[0] for layer in BVLC_LAYERS]
    assert names[0] == "data" and names[-1] == "loss" and len(names) == 24
    assert {"norm1", "pool2", "drop6", "relu7"} <= set(names)


def test_legacy_blobs_of_other_layer_types_stay_4d(tmp_path: Path) -> None:
    """Caffe keeps old-dims blobs 4-D; only Convolution/InnerProduct blobs are brought to PyTorch's shapes."""
    scale = np.arange(5, dtype=np.float32)
    layers = [
        encode_v2_layer("sc", "Scale", blobs=[encode_blob(scale)]),
        encode_v2_layer("ip", "InnerProduct", blobs=[encode_blob(np.ones((2, 3), np.float32))]),
    ]
    got = read_caffemodel(write_chunks(tmp_path / "m.caffemodel", encode_net(layers, form="v2")))
    assert got["sc"][0].shape == (1, 1, 1, 5) and np.array_equal(got["sc"][0].ravel(), scale)
    assert got["ip"][0].shape == (2, 3)


def test_diff_and_unknown_fields_are_ignored(tmp_path: Path) -> None:
    weight = np.arange(6, dtype=np.float32).reshape(2, 3)
    blob = encode_blob(weight, old_dims=False) + length_field(6, np.full(6, 9.0, "<f4").tobytes())  # diff
    blob += length_field(15, b"future field")
    layer = encode_v1_layer("ip", 14, blobs=[blob], extra=length_field(77, b"\x01\x02"))
    got = read_caffemodel(write_chunks(tmp_path / "m.caffemodel", encode_net([layer])))
    assert np.array_equal(got["ip"][0], weight)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"not found: .*nowhere\.caffemodel"):
        read_caffemodel(tmp_path / "nowhere.caffemodel")
    with pytest.raises(ValueError, match="not a regular file"):
        read_caffemodel(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.caffemodel"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.caffemodel is empty"):
        read_caffemodel(path)


def test_truncated_file_names_the_file(tmp_path: Path) -> None:
    path = write_caffemodel(tmp_path / "net.caffemodel", small_bvlc_named_blobs())
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"cut\.caffemodel is truncated or corrupt"):
        read_caffemodel(cut)


def test_every_truncation_fails_or_gives_a_correct_prefix(tmp_path: Path) -> None:
    """A cut between two top-level layers parses; it must never yield wrong or partial arrays."""
    blobs = small_bvlc_named_blobs(5)
    data = write_caffemodel(tmp_path / "net.caffemodel", blobs).read_bytes()
    cut = tmp_path / "cut.caffemodel"
    for end in range(1, len(data), max(1, len(data) // 150)):
        cut.write_bytes(data[:end])
        try:
            got = read_caffemodel(cut)
        except ValueError as exc:
            assert "cut.caffemodel" in str(exc)
            continue
        names = list(got)
        assert names == list(blobs)[: len(names)]
        assert_same_blobs(got, {n: blobs[n] for n in names})


@pytest.mark.parametrize(
    "content",
    [
        np.random.default_rng(0).bytes(4096),
        b"\x89PNG\r\n\x1a\n" + bytes(200),
        b'name: "CaffeNet"\nlayers {\n  name: "conv1"\n  type: CONVOLUTION\n}\n',  # a prototxt, not weights
        bytes(50),
    ],
    ids=["random", "png", "prototxt", "zeros"],
)
def test_corrupt_or_foreign_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "weird.caffemodel"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"weird\.caffemodel"):
        read_caffemodel(path)


def test_blob_whose_data_does_not_match_its_shape(tmp_path: Path) -> None:
    bad = encode_blob(np.zeros(8, np.float32), shape=(3, 3), old_dims=False)
    layers = [
        encode_v1_layer("conv1", 4, blobs=[encode_blob(np.zeros((1, 1, 1, 1), np.float32))]),
        encode_v1_layer("fc_bad", 14, blobs=[bad]),
    ]
    path = write_chunks(tmp_path / "wrong.caffemodel", encode_net(layers))
    pattern = r"wrong\.caffemodel: layer 'fc_bad' .*\(3, 3\) needs 9 values but data holds 8"
    with pytest.raises(ValueError, match=pattern):
        read_caffemodel(path)


def test_blob_without_shape_and_bad_legacy_dims(tmp_path: Path) -> None:
    no_shape = length_field(5, np.zeros(3, "<f4").tobytes())
    path = write_chunks(tmp_path / "a.caffemodel", encode_net([encode_v1_layer("ip1", 14, blobs=[no_shape])]))
    with pytest.raises(ValueError, match=r"a\.caffemodel: layer 'ip1'.*neither a shape"):
        read_caffemodel(path)
    weight4d = encode_blob(np.zeros((2, 1, 3, 4), np.float32))  # old dims with num = 2 on an InnerProduct
    path = write_chunks(tmp_path / "b.caffemodel", encode_net([encode_v1_layer("ip2", 14, blobs=[weight4d])]))
    with pytest.raises(ValueError, match=r"b\.caffemodel: layer 'ip2'.*\(1, 1, out, in\)"):
        read_caffemodel(path)


def test_no_layers_with_parameters(tmp_path: Path) -> None:
    layers = [encode_v1_layer("relu1", 18, bottoms=["x"], tops=["x"]), encode_v1_layer("pool1", 17)]
    path = write_chunks(tmp_path / "empty_net.caffemodel", encode_net(layers))
    with pytest.raises(ValueError, match=r"empty_net\.caffemodel holds no layers with parameters"):
        read_caffemodel(path)


def test_duplicate_layer_names(tmp_path: Path) -> None:
    blob = encode_blob(np.ones(2, np.float32))
    layers = [encode_v1_layer("fc", 14, blobs=[blob]), encode_v1_layer("fc", 14, blobs=[blob])]
    with pytest.raises(ValueError, match="'fc' with parameters appears more than once"):
        read_caffemodel(write_chunks(tmp_path / "dup.caffemodel", encode_net(layers)))


def test_validate_names_layer_expected_and_found_shapes() -> None:
    shapes = {name: [s for s in layer] for name, layer in PAPER_SHAPES.items()}
    fake = {name: [np.empty(s, np.float32) for s in layer] for name, layer in shapes.items() if name != "fc6"}
    fake["fc6"] = [np.empty((4096, 10), np.float32), np.empty((4096,), np.float32)]
    validate_kwargs = {"path": "x.caffemodel"}
    with pytest.raises(
        ValueError,
        match=r"x\.caffemodel: layer 'fc6' has blob shapes \[\(4096, 10\), \(4096,\)\], "
        r"expected \[\(4096, 9216\), \(4096,\)\]",
    ):
        validate_bvlc_alexnet({n: fake[n] for n in PAPER_SHAPES}, **validate_kwargs)
    ungrouped = dict(fake, fc6=[np.empty(s, np.float32) for s in PAPER_SHAPES["fc6"]])
    ungrouped["conv2"] = [np.empty((256, 96, 5, 5), np.float32), np.empty((256,), np.float32)]
    with pytest.raises(ValueError, match=r"layer 'conv2' .*\(256, 96, 5, 5\).*expected \[\(256, 48, 5, 5\)"):
        validate_bvlc_alexnet(ungrouped, **validate_kwargs)
    no_bias = dict(ungrouped, conv2=[np.empty(PAPER_SHAPES["conv2"][0], np.float32)])
    with pytest.raises(ValueError, match="layer 'conv2'"):
        validate_bvlc_alexnet(no_bias, **validate_kwargs)
    missing = {n: a for n, a in ungrouped.items() if n != "fc8"}
    with pytest.raises(ValueError, match=r"missing \['fc8'\]"):
        validate_bvlc_alexnet(missing, **validate_kwargs)
