"""Fuzzing the readers of untrusted files: caffemodels, images and NetCDF files give a result or the project's own
ValueError naming the file; nothing hangs, and no length field or declared shape inflates an allocation.

Hypothesis mutates small valid seeds (flips, truncations, insertions, huge varints); the parametrized cases pin
each class of bad input that a fuzz run found or that tests/README.md lists.
"""

from __future__ import annotations

import io
import pickle
import re
import struct
import tracemalloc
import zlib
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import torch
import xarray as xr
from caffemodel_writer import (
    encode_blob,
    encode_net,
    encode_v1_layer,
    encode_v2_layer,
    key,
    length_field,
    varint,
    write_caffemodel,
    write_chunks,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_examples import examples
from PIL import Image

from ifmsan.models.caffe import _message_classes, read_caffemodel
from ifmsan.steps.images import load_image
from ifmsan.steps.io import netcdf_memory_limit, read_ifms, read_netcdf, read_sweep, write_netcdf

FUZZ = settings(
    max_examples=examples(300),
    deadline=3000,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
"""Seeded (derandomized) runs of a few seconds each; a file that hangs a reader fails the 3 s deadline."""
TINY_BLOBS = {
    "conv1": [np.arange(8, dtype=np.float32).reshape(2, 1, 2, 2), np.ones(2, np.float32)],
    "fc": [np.full((3, 4), 0.5, np.float32), np.arange(3, dtype=np.float32)],
}


def _seed_caffemodels(folder: Path) -> list[bytes]:
    """Tiny valid caffemodels in every protobuf form the writer knows (V1/V2, 4-D dims/BlobShape, packed or not)."""
    seeds = []
    for form in ("v1", "v2"):
        for old_dims in (True, False):
            for packed in (True, False):
                path = write_caffemodel(
                    folder / "seed.caffemodel",
                    TINY_BLOBS,
                    form=form,
                    old_dims=old_dims,
                    packed=packed,
                    double=not packed and old_dims,
                )
                seeds.append(path.read_bytes())
    return seeds


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def caffe_seeds(folder: Path) -> list[bytes]:
    _message_classes()  # built once, outside any traced allocation
    return _seed_caffemodels(folder)


# One mutation: (kind, position as a fraction of the length, payload).
MUTATION = st.tuples(
    st.sampled_from(["flip", "truncate", "insert", "huge_varint", "wire_type", "overwrite"]),
    st.floats(min_value=0, max_value=1, exclude_max=True),
    st.binary(min_size=1, max_size=6),
)


def mutate(data: bytes, mutations: list[tuple[str, float, bytes]]) -> bytes:
    """Apply the mutations in order: bit flips, cuts, inserted bytes, 10-byte varints, changed wire types."""
    out = bytearray(data)
    for kind, where, payload in mutations:
        if not out:
            break
        at = int(where * len(out))
        if kind == "flip":
            out[at] ^= 1 << (payload[0] % 8)
        elif kind == "truncate":
            del out[at:]
        elif kind == "insert":
            out[at:at] = payload
        elif kind == "huge_varint":  # a length or value field near 2**63
            out[at:at] = b"\xff" * 9 + b"\x7f"
        elif kind == "wire_type":
            out[at] = (out[at] & ~0x07) | (payload[0] % 8)
        else:
            out[at : at + len(payload)] = payload
    return bytes(out)


def assert_caffe_result_or_clear_error(path: Path) -> None:
    """read_caffemodel returns consistent float32 arrays, or a ValueError naming the file; memory stays bounded."""
    size = path.stat().st_size
    tracemalloc.start()
    try:
        blobs = read_caffemodel(path)
    except ValueError as exc:
        assert path.name in str(exc), exc
        blobs = None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    # Python-side allocations (the bytes read, the arrays): at most twice the file plus a constant, whatever it declares.
    assert peak <= 2 * size + 64 * 1024, (peak, size)
    if blobs is not None:
        for arrays in blobs.values():
            assert all(a.dtype == np.float32 and a.nbytes <= size for a in arrays)


@settings(FUZZ, max_examples=examples(1000))
@given(seed=st.integers(min_value=0, max_value=7), mutations=st.lists(MUTATION, min_size=1, max_size=4))
def test_fuzz_caffemodel_reader(
    folder: Path, caffe_seeds: list[bytes], seed: int, mutations: list[tuple[str, float, bytes]]
) -> None:
    path = folder / "fuzzed.caffemodel"
    path.write_bytes(mutate(caffe_seeds[seed], mutations))
    assert_caffe_result_or_clear_error(path)


@FUZZ
@given(
    dims=st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), min_size=0, max_size=40),
    values=st.integers(min_value=0, max_value=64),
    form=st.sampled_from(["v1", "v2"]),
)
def test_fuzz_caffemodel_declared_shapes(
    folder: Path, caffe_seeds: list[bytes], dims: list[int], values: int, form: str
) -> None:
    """Any BlobShape (negative, huge, 0-d, too many axes) over any number of values: a match or a clear error."""
    blob = encode_blob(np.ones(values, np.float32), shape=dims, old_dims=False)
    layer = (
        encode_v1_layer("ip", 14, blobs=[blob]) if form == "v1" else encode_v2_layer("ip", "InnerProduct", blobs=[blob])
    )
    path = write_chunks(folder / "shapes.caffemodel", encode_net([layer], form=form))
    try:
        blobs = read_caffemodel(path)
    except ValueError as exc:
        assert "shapes.caffemodel" in str(exc)
        return
    assert blobs["ip"][0].shape == tuple(dims) and all(d >= 0 for d in dims) and len(dims) <= 32


def _net(*layers: list) -> list:
    return encode_net(list(layers))


_ONE = encode_blob(np.ones(2, np.float32))
STRUCTURAL = {
    "length_field_2**40": ([b"\x0a" + varint(2**40) + b"CaffeNet"], "is truncated or corrupt"),
    "layer_longer_than_file": ([key(2, 2) + varint(5000) + b"\x22\x02fc"], "is truncated or corrupt"),
    "packed_floats_longer_than_file": (
        _net(encode_v1_layer("fc", 14, blobs=[[key(5, 2) + varint(2**31)]])),
        "is truncated or corrupt",
    ),
    "layers_as_varint": ([key(2, 0) + varint(7)], "holds no layers with parameters"),
    "data_as_varint": (
        _net(encode_v1_layer("fc", 14, blobs=[[key(5, 0) + varint(3)] + length_field(7, length_field(1, varint(1)))])),
        "needs 1 values but data holds 0",
    ),
    "group_wire_type": ([key(2, 3) + b"\x00"], "is truncated or corrupt"),
    "shape_product_mismatch": (
        _net(encode_v1_layer("fc", 14, blobs=[encode_blob(np.ones(8, np.float32), shape=(3, 3), old_dims=False)])),
        r"shape \(3, 3\) needs 9 values but data holds 8",
    ),
    "negative_dim": (
        _net(encode_v1_layer("fc", 14, blobs=[encode_blob(np.ones(2, np.float32), shape=(-1, -2), old_dims=False)])),
        "negative dimension",
    ),
    "negative_legacy_dim": (
        _net(encode_v1_layer("fc", 14, blobs=[encode_blob(np.ones(2, np.float32), shape=(1, 1, -1, 2))])),
        "negative dimension",
    ),
    "huge_dims": (
        _net(
            encode_v1_layer("fc", 14, blobs=[encode_blob(np.ones(4, np.float32), shape=(2**40, 2**40), old_dims=False)])
        ),
        "needs 1208925819614629174706176",
    ),
    "33_axes": (
        _net(encode_v1_layer("fc", 14, blobs=[encode_blob(np.ones(1, np.float32), shape=(1,) * 33, old_dims=False)])),
        "33 axes, Caffe allows at most 32",
    ),
    "invalid_utf8_name": (
        length_field(100, length_field(1, b"fc\xff\xfe") + length_field(2, b"InnerProduct") + length_field(7, _ONE)),
        "not valid UTF-8",
    ),
    "nameless_layer": (_net(encode_v1_layer("", 14, blobs=[_ONE])), "layer with parameters has no name"),
    "double_data_mismatch": (
        _net(encode_v1_layer("fc", 14, blobs=[encode_blob(np.ones(3), shape=(1, 1, 1, 2), double=True)])),
        "needs 2 values but double_data holds 3",
    ),
    "groups_nested_1000_deep": ([key(9, 3) * 1000 + key(9, 4) * 1000], "is truncated or corrupt"),
    "100k_empty_layers": (
        encode_net([encode_v1_layer("relu", 18) for _ in range(100_000)]),
        "holds no layers with parameters",
    ),
}


@pytest.mark.parametrize("case", list(STRUCTURAL))
def test_structural_corruption_is_named(folder: Path, caffe_seeds: list[bytes], case: str) -> None:
    chunks, message = STRUCTURAL[case]
    path = write_chunks(folder / f"{case}.caffemodel", chunks)
    with pytest.raises(ValueError, match=rf"{re.escape(case)}\.caffemodel.*{message}"):
        read_caffemodel(path)
    assert_caffe_result_or_clear_error(path)


def _torch_checkpoint() -> bytes:
    buffer = io.BytesIO()
    torch.save({"conv1.weight": torch.ones(2, 2)}, buffer)
    return buffer.getvalue()


def _npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ones(3, np.float32))
    return buffer.getvalue()


def _zip() -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("bvlc_alexnet.caffemodel", b"\x0a\x03net")
    return buffer.getvalue()


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "PNG")
    return buffer.getvalue()


FOREIGN = {
    "pytorch_pt": (_torch_checkpoint, "a PyTorch checkpoint"),
    "legacy_pickle": (lambda: pickle.dumps({"w": [1.0, 2.0]}, protocol=2), "a Python pickle"),
    "npy": (_npy, r"a NumPy \.npy array"),
    "html_error_page": (
        lambda: b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head></html>\n",
        "an HTML/XML page",
    ),
    "html_after_blank_lines": (lambda: b"\n\n  <html><body>Access denied</body></html>", "an HTML/XML page"),
    "empty": (lambda: b"", r"empty \(0 bytes; download it again\)"),
    "prototxt": (
        lambda: b'name: "CaffeNet"\nlayers {\n  name: "conv1"\n  type: CONVOLUTION\n}\n' * 3,
        r"a text file starting 'name: \"CaffeNet\"",
    ),
    "json": (lambda: b'{"conv1": [1, 2, 3]}\n', "a JSON/text file"),
    "zip_archive": (_zip, "a zip archive"),
    "gzip": (lambda: zlib.compress(b"x") and b"\x1f\x8b\x08\x00" + bytes(20), "a gzip-compressed file"),
    "hdf5": (lambda: b"\x89HDF\r\n\x1a\n" + bytes(100), "an HDF5 file"),
    "png": (_png, "a PNG image"),
}


@pytest.mark.parametrize("case", list(FOREIGN))
def test_foreign_file_given_as_caffemodel_says_what_it_is(folder: Path, case: str) -> None:
    make, what = FOREIGN[case]
    path = folder / f"{case}.caffemodel"
    path.write_bytes(make())
    with pytest.raises(ValueError, match=rf"caffemodel .*{case}\.caffemodel is {what}.*expected a Caffe \.caffemodel"):
        read_caffemodel(path)


# --- images --------------------------------------------------------------------------------------------------


def _image_bytes(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def image_seeds() -> list[bytes]:
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    return [
        _image_bytes(rgb, "PNG"),
        _image_bytes(rgb, "JPEG"),
        _image_bytes(rgb.convert("P"), "GIF"),
        _image_bytes(rgb.convert("RGBA"), "PNG"),
        _image_bytes(rgb, "TIFF"),
        _image_bytes(rgb, "BMP"),
        _image_bytes(rgb.convert("CMYK"), "JPEG"),
        _image_bytes(rgb, "WEBP"),
    ]


@settings(FUZZ, max_examples=examples(600))
@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL warns about corrupt TIFF tags it skips
@given(seed=st.integers(min_value=0, max_value=7), mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_fuzz_image_loader(
    folder: Path, image_seeds: list[bytes], seed: int, mutations: list[tuple[str, float, bytes]]
) -> None:
    path = folder / "fuzzed.img"
    path.write_bytes(mutate(image_seeds[seed], mutations))
    try:
        image = load_image(str(path))
    except ValueError as exc:
        assert f"image {path}" in str(exc), exc
        return
    assert image.mode == "RGB" and image.width * image.height <= Image.MAX_IMAGE_PIXELS


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height, with one empty IDAT: a decompression bomb's first bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))  # noqa: E731
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


BAD_IMAGES = {
    "truncated_png": (lambda seeds: seeds[0][: len(seeds[0]) // 2], "not a readable image"),
    "truncated_jpeg": (lambda seeds: seeds[1][: len(seeds[1]) // 2], "not a readable image"),
    "png_bad_crc": (lambda seeds: seeds[0][:29] + bytes([seeds[0][29] ^ 0xFF]) + seeds[0][30:], "not a readable image"),
    "declares_40000x40000": (lambda seeds: _png_header_only(40000, 40000), r"too large to decode.*decompression bombs"),
    "declares_10000x10000": (lambda seeds: _png_header_only(10000, 10000), r"10000x10000 = 100000000 pixels"),
    "text_file": (lambda seeds: b"just some text, not pixels\n", "not a readable image"),
    "html_page": (lambda seeds: b"<html><body>404</body></html>", "not a readable image"),
    "npy_file": (lambda seeds: _npy(), "not a readable image"),
    "empty_file": (lambda seeds: b"", "not a readable image"),
    "float_tiff": (
        lambda seeds: _image_bytes(Image.fromarray(np.ones((4, 4), np.float32)), "TIFF"),
        "pixel mode F has no unambiguous 8-bit RGB form",
    ),
    "int32_tiff": (
        lambda seeds: _image_bytes(Image.fromarray(np.ones((4, 4), np.int32)), "TIFF"),
        "pixel mode I has no unambiguous 8-bit RGB form",
    ),
    "lab_tiff": (
        lambda seeds: _image_bytes(Image.new("LAB", (4, 4), (50, 10, 10)), "TIFF"),
        "pixel mode LAB has no unambiguous 8-bit RGB form",
    ),
}


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_bad_image_is_a_clear_error(folder: Path, image_seeds: list[bytes], case: str) -> None:
    make, message = BAD_IMAGES[case]
    path = folder / f"{case}.img"
    path.write_bytes(make(image_seeds))
    with pytest.raises(ValueError, match=rf"image {path}.*{message}"):
        load_image(str(path))


def test_decompression_bomb_warning_range_is_an_error(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between MAX_IMAGE_PIXELS and twice that PIL only warns; the loader refuses, naming the size and the limit."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    path = folder / "bomb_warning.png"
    path.write_bytes(_image_bytes(Image.new("RGB", (40, 40)), "PNG"))  # 1600 pixels: PIL's warning range
    with pytest.raises(ValueError, match=rf"image {path}.*40x40 = 1600 pixels; the limit is 1000 pixels"):
        load_image(str(path))


GREY16 = np.array([[0, 256, 257, 32767], [32768, 65000, 65534, 65535]], dtype=np.uint16)
MODES = {
    "grey16_png": (
        lambda: _image_bytes(Image.fromarray(GREY16), "PNG"),
        np.rint(GREY16 / 257.0)[..., None].repeat(3, 2),
    ),
    "grey16_tiff": (
        lambda: _image_bytes(Image.fromarray(GREY16), "TIFF"),
        np.rint(GREY16 / 257.0)[..., None].repeat(3, 2),
    ),
    "cmyk_tiff": (
        lambda: _image_bytes(Image.new("CMYK", (2, 2), (10, 20, 30, 40)), "TIFF"),
        np.array([255 - 10, 255 - 20, 255 - 30]) * (255 - 40) / 255,
    ),
    "palette_png": (lambda: _image_bytes(_palette(), "PNG"), np.array([[[255, 0, 0], [0, 0, 255]]])),
    "palette_transparent": (
        lambda: _image_bytes(_palette(), "PNG", transparency=0),
        np.array([[[255, 0, 0], [0, 0, 255]]]),
    ),
    "rgba_png": (lambda: _image_bytes(Image.new("RGBA", (2, 2), (10, 20, 30, 0)), "PNG"), np.array([10, 20, 30])),
    "grey_alpha_png": (lambda: _image_bytes(Image.new("LA", (2, 2), (77, 128)), "PNG"), np.array([77, 77, 77])),
    "bilevel_png": (lambda: _image_bytes(Image.new("1", (2, 2), 1), "PNG"), np.array([255, 255, 255])),
}


def _palette() -> Image.Image:
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putpixel((1, 0), 1)
    return image


@pytest.mark.parametrize("case", list(MODES))
def test_image_modes_convert_to_the_right_rgb(folder: Path, case: str) -> None:
    make, expected = MODES[case]
    path = folder / f"{case}.img"
    path.write_bytes(make())
    image = load_image(str(path))
    assert image.mode == "RGB"
    got = np.asarray(image).astype(float)
    np.testing.assert_allclose(got, np.broadcast_to(expected, got.shape), atol=1.0)


# --- NetCDF --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep_file(folder: Path) -> Path:
    dataset = xr.Dataset(
        {"probability": ("window", np.linspace(0.1, 0.9, 6))},
        coords={"window": np.arange(2, 8)},
        attrs={"layer": "pool5", "knob": "first", "p0": 0.5, "target": 3},
    )
    return write_netcdf(dataset, folder / "sweep.nc")


@FUZZ
@given(mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_fuzz_netcdf_readers(folder: Path, sweep_file: Path, mutations: list[tuple[str, float, bytes]]) -> None:
    path = folder / "fuzzed.nc"
    path.write_bytes(mutate(sweep_file.read_bytes(), mutations))
    for reader in (read_netcdf, read_sweep, read_ifms):
        try:
            dataset = reader(path)
        except ValueError as exc:
            assert str(path) in str(exc), exc
            continue
        assert isinstance(dataset, xr.Dataset) and dataset.nbytes <= netcdf_memory_limit(path.stat().st_size)


def _declared_only(path: Path, *, dims: dict[str, int], coordinate: bool) -> Path:
    """A NetCDF-4 file that declares big variables but stores no data (a few KB on disk)."""
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        for name, size in dims.items():
            nc.createDimension(name, size)
            if coordinate:
                nc.createVariable(name, "f8", (name,), zlib=True, chunksizes=(min(size, 1 << 20),))
        nc.createVariable(
            "probability", "f4", tuple(dims), zlib=True, chunksizes=tuple(min(s, 256) for s in dims.values())
        )
    return path


def test_netcdf_with_huge_declared_shapes_is_refused_before_loading(folder: Path) -> None:
    path = _declared_only(folder / "huge.nc", dims={"window": 50_000, "image": 50_000}, coordinate=False)
    assert path.stat().st_size < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(
            ValueError,
            match=r"huge\.nc: its variables would need 10000000000 bytes in memory, more "
            r"than the 67108864 allowed .*probability \(50000, 50000\)",
        ):
            read_netcdf(path)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 4 * 2**20


def test_netcdf_huge_coordinate_is_refused_before_xarray_indexes_it(folder: Path) -> None:
    """xarray loads a dimension coordinate while opening: the check must come before it opens the file."""
    path = _declared_only(folder / "huge_coord.nc", dims={"window": 200_000_000}, coordinate=True)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"huge_coord\.nc: its variables would need 2400000000 bytes"):
            read_netcdf(path)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 4 * 2**20


def test_netcdf_limit_can_be_raised_explicitly(folder: Path) -> None:
    path = _declared_only(folder / "wide.nc", dims={"window": 3_000_000}, coordinate=False)  # 12 MB of fill values
    with pytest.raises(ValueError, match="would need 12000000 bytes"):
        read_netcdf(path, max_bytes=10_000_000)
    assert read_netcdf(path)["probability"].shape == (3_000_000,)  # under the 64 MiB floor


def _netcdf3(folder: Path) -> bytes:
    path = folder / "classic.nc"
    xr.Dataset({"probability": ("window", np.ones(3))}).to_netcdf(path, format="NETCDF3_CLASSIC", engine="netcdf4")
    return path.read_bytes()


BAD_NETCDF = {
    "netcdf3_classic": (_netcdf3, "is a NetCDF-3 \\(classic\\) file; expected a NetCDF-4 file"),
    "hdf5_garbage": (
        lambda folder: b"\x89HDF\r\n\x1a\n" + np.random.default_rng(1).bytes(2000),
        "is not a readable NetCDF file",
    ),
    "truncated_netcdf4": (lambda folder: (folder / "sweep.nc").read_bytes()[:3000], "is not a readable NetCDF file"),
    "empty": (lambda folder: b"", r"is not a NetCDF file \(it starts with b''\)"),
    "text": (lambda folder: b"window,probability\n2,0.5\n", "is not a NetCDF file"),
    "npy": (lambda folder: _npy(), "is not a NetCDF file"),
    "caffemodel": (lambda folder: b"\x0a\x08CaffeNet", "is not a NetCDF file"),
}


@pytest.mark.parametrize("case", list(BAD_NETCDF))
def test_bad_netcdf_is_a_clear_error(folder: Path, sweep_file: Path, case: str) -> None:
    make, message = BAD_NETCDF[case]
    path = folder / f"{case}.nc"
    path.write_bytes(make(folder))
    with pytest.raises(ValueError, match=rf"{path}.*{message}"):
        read_netcdf(path)


def test_a_shape_with_a_zero_whose_other_sizes_overflow_is_refused_by_name(folder: Path) -> None:
    """Found by hypothesis: numpy refuses to reshape 0 values to (0, 1206, 123939, 124116, 124293) ("array is too big")."""
    dims = [0, 1206, 123939, 124116, 124293]
    blob = encode_blob(np.ones(0, np.float32), shape=dims, old_dims=False)
    path = write_chunks(
        folder / "zero.caffemodel", encode_net([encode_v2_layer("ip", "InnerProduct", blobs=[blob])], form="v2")
    )
    with pytest.raises(ValueError, match=r"zero\.caffemodel.*too large for a float32 array"):
        read_caffemodel(path)
