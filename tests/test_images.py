"""ifmsan.steps.images: local files, scikit-image's photos and checksummed URLs load as RGB; bad input fails clearly."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from ifmsan.steps.fetch import FetchError
from ifmsan.steps.images import (
    SKIMAGE_IMAGES,
    image_checksum,
    load_image,
    load_image_with_checksum,
    resolve_image,
)


def gradient(height: int = 24, width: int = 32) -> np.ndarray:
    """A deterministic colour picture with distinct channels."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // (width - 1), y * 255 // (height - 1), (x + y) % 256], axis=-1).astype(np.uint8)


def write(path: Path, array: np.ndarray, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def test_local_png_is_lossless_rgb_with_checksum(tmp_path: Path) -> None:
    pixels = gradient()
    data = write(tmp_path / "g.png", pixels, "PNG")
    image, sha = load_image_with_checksum(str(tmp_path / "g.png"))
    assert image.mode == "RGB" and image.size == (32, 24)
    assert np.array_equal(np.asarray(image), pixels)
    assert sha == hashlib.sha256(data).hexdigest() == image_checksum(str(tmp_path / "g.png"))


def test_local_jpeg_and_grey_and_palette_images_become_rgb(tmp_path: Path) -> None:
    write(tmp_path / "g.jpg", gradient(), "JPEG", quality=95)
    jpeg = np.asarray(load_image(str(tmp_path / "g.jpg")), dtype=int)
    assert jpeg.shape == (24, 32, 3) and np.abs(jpeg - gradient()).mean() < 4
    grey = gradient()[..., 0]
    write(tmp_path / "grey.png", grey, "PNG")
    rgb = np.asarray(load_image(str(tmp_path / "grey.png")))
    assert rgb.shape == (24, 32, 3) and all(np.array_equal(rgb[..., c], grey) for c in range(3))
    Image.fromarray(gradient()).convert("P").save(tmp_path / "p.gif")
    assert load_image(str(tmp_path / "p.gif")).mode == "RGB"


def test_local_path_checksum_verified_when_given(tmp_path: Path) -> None:
    data = write(tmp_path / "g.png", gradient(), "PNG")
    right = hashlib.sha256(data).hexdigest()
    assert load_image_with_checksum(str(tmp_path / "g.png"), sha256=right.upper())[1] == right
    wrong = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(ValueError, match=rf"g\.png: sha256 is {right}, expected {wrong}"):
        load_image(str(tmp_path / "g.png"), sha256=wrong)


@pytest.mark.parametrize("name", sorted(SKIMAGE_IMAGES))
def test_skimage_sources_equal_skimage_data(name: str) -> None:
    if name.startswith("motorcycle_"):
        left, right, _ = skimage.data.stereo_motorcycle()
        expected = left if name.endswith("left") else right
    else:
        expected = getattr(skimage.data, name)()
    got = np.asarray(load_image(f"skimage:{name}"))
    if expected.ndim == 2:
        expected = np.repeat(expected[..., None], 3, axis=-1)
    assert got.shape == expected.shape and np.array_equal(got, expected)


def test_skimage_checksum_is_of_the_shipped_file() -> None:
    path = Path(skimage.data.data_dir) / "chelsea.png"
    assert image_checksum("skimage:chelsea") == hashlib.sha256(path.read_bytes()).hexdigest()
    assert resolve_image("skimage:cat") == path


def test_file_url_is_fetched_into_the_cache(tmp_path: Path) -> None:
    source = tmp_path / "src" / "penguin.png"
    source.parent.mkdir()
    data = write(source, gradient(), "PNG")
    sha = hashlib.sha256(data).hexdigest()
    cache = tmp_path / "cache"
    image, got_sha = load_image_with_checksum(source.as_uri(), sha256=sha, cache_dir=cache)
    assert got_sha == sha and np.array_equal(np.asarray(image), gradient())
    assert (cache / "penguin.png").read_bytes() == data
    assert load_image(source.as_uri(), sha256=sha, cache_dir=cache, name="king_penguin.png").size == (32, 24)
    assert (cache / "king_penguin.png").is_file()


def test_file_url_with_wrong_checksum(tmp_path: Path) -> None:
    source = tmp_path / "a.png"
    write(source, gradient(), "PNG")
    wrong = hashlib.sha256(b"no").hexdigest()
    with pytest.raises(FetchError, match=rf"{wrong}.*place it by hand at .*cache.*a\.png"):
        load_image(source.as_uri(), sha256=wrong, cache_dir=tmp_path / "cache")
    assert not any((tmp_path / "cache").iterdir())


def test_url_needs_a_checksum(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a URL needs its sha256"):
        load_image("https://example.org/penguin.jpg", cache_dir=tmp_path)


@pytest.mark.parametrize(
    "content",
    [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + bytes(40), "truncated-jpeg"],
    ids=["empty", "text", "png-header-only", "truncated-jpeg"],
)
def test_corrupt_files_name_the_source(tmp_path: Path, content: bytes | str) -> None:
    path = tmp_path / "bad.jpg"
    if content == "truncated-jpeg":
        data = write(path, gradient(64, 64), "JPEG")
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(content)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"image .*bad\.jpg .*is not a readable image"):
        load_image(str(path))


def test_corrupt_download_names_the_url(tmp_path: Path) -> None:
    source = tmp_path / "fake.jpg"
    source.write_bytes(b"<html>404</html>")
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match=rf"image {source.as_uri()} .*is not a readable image"):
        load_image(source.as_uri(), sha256=sha, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize(
    ("source", "kwargs", "error", "pattern"),
    [
        ("skimage:horse", {}, ValueError, "unknown scikit-image image"),
        ("skimage:../../etc/passwd", {}, ValueError, "unknown scikit-image image"),
        ("skimage:", {}, ValueError, "unknown scikit-image image"),
        ("skimage:data_dir", {}, ValueError, "known: astronaut"),
        ("", {}, ValueError, "image source must be"),
        ("ftp://example.org/a.jpg", {}, ValueError, "unsupported scheme 'ftp'"),
        ("s3:bucket/a.jpg", {}, ValueError, "unsupported scheme 's3'"),
        ("http://[::1/a.jpg", {"sha256": "0" * 64}, ValueError, "not a valid URL"),
        ("https://example.org/a.jpg", {"sha256": "0" * 64, "name": "../a.jpg"}, ValueError, "cache file name"),
        ("https://example.org/a.jpg", {"sha256": "0" * 64, "name": "sub/a.jpg"}, ValueError, "cache file name"),
        ("https://example.org/a.jpg", {"sha256": "xyz"}, ValueError, "64 hexadecimal digits"),
        ("no/such/file.png", {}, FileNotFoundError, "image not found: no/such/file.png"),
    ],
)
def test_unsafe_or_odd_sources(
    tmp_path: Path, source: str, kwargs: dict[str, str], error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern.replace("[", r"\[").replace("?", r"\?")):
        load_image(source, cache_dir=tmp_path / "cache", **kwargs)
    assert not (tmp_path / "cache").exists()


def test_directory_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a regular file"):
        load_image(str(tmp_path))


def test_url_cache_name_defaults_to_a_safe_file_name(tmp_path: Path) -> None:
    source = tmp_path / "x.png"
    data = write(source, gradient(), "PNG")
    sha = hashlib.sha256(data).hexdigest()
    uri = source.parent.as_uri() + "/x.png"  # same file; the cache name comes from the URL's last segment
    assert resolve_image(uri, sha256=sha, cache_dir=tmp_path / "c1") == tmp_path / "c1" / "x.png"
    odd = source.with_name("x y.png")
    odd.write_bytes(data)
    assert resolve_image(odd.as_uri(), sha256=sha, cache_dir=tmp_path / "c2") == tmp_path / "c2" / f"{sha}.img"


def test_minidata_source_renders_the_generator_sample() -> None:
    from ifmsan.steps.images import load_image_with_checksum
    from ifmsan.steps.minidata import render_sample

    image, checksum = load_image_with_checksum("minidata:test:3")
    expected, _ = render_sample(3, seed=0, split="test")
    assert image.tobytes() == expected.tobytes()
    assert load_image_with_checksum("minidata:test:3", sha256=checksum)[1] == checksum
    seeded, _ = load_image_with_checksum("minidata:test:3:7")
    assert seeded.tobytes() == render_sample(3, seed=7, split="test")[0].tobytes()
    with pytest.raises(ValueError, match="sha256 of its pixels"):
        load_image_with_checksum("minidata:test:3", sha256="0" * 64)
    for bad in ("minidata:valid:1", "minidata:test:-1", "minidata:test:x", "minidata:test:1:2:3"):
        with pytest.raises(ValueError, match="minidata:test:<index>"):
            load_image_with_checksum(bad)
