"""One loader for the images a run classifies: checksummed URLs, local files, scikit-image photos, mini samples."""

from __future__ import annotations

import hashlib
import os
import re
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

from ifmsan._shared.ids import SAFE_ID_PATTERN, is_safe_id
from ifmsan.steps.fetch import URL_SCHEMES

if TYPE_CHECKING:
    from PIL import Image

DEFAULT_CACHE_DIR = Path("data/images")
SKIMAGE_PREFIX = "skimage:"

# skimage:<name> -> the file in skimage.data.data_dir that skimage.data.<name>() reads (pixel-identical, tested).
# Photos and grey-level images only: no random, boolean, float or transparent ones.
SKIMAGE_IMAGES: dict[str, str] = {
    "astronaut": "astronaut.png",
    "brick": "brick.png",
    "camera": "camera.png",
    "cat": "chelsea.png",
    "cell": "cell.png",
    "checkerboard": "chessboard_GRAY.png",
    "chelsea": "chelsea.png",
    "clock": "clock_motion.png",
    "coffee": "coffee.png",
    "coins": "coins.png",
    "colorwheel": "color.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png",
    "microaneurysms": "microaneurysms.png",
    "moon": "moon.png",
    "motorcycle_left": "motorcycle_left.png",
    "motorcycle_right": "motorcycle_right.png",
    "page": "page.png",
    "retina": "retina.jpg",
    "rocket": "rocket.jpg",
    "text": "text.png",
}


def _check_name(name: str, *, what: str) -> str:
    """A file name that is safe to join onto the cache folder: a safe id, as the config's file names are."""
    if not is_safe_id(name):
        raise ValueError(f"{what} must match {SAFE_ID_PATTERN} without '..', got {name!r}")
    return name


def resolve_image(
    source: str,
    *,
    sha256: str | None = None,
    cache_dir: str | os.PathLike[str] = DEFAULT_CACHE_DIR,
    name: str | None = None,
) -> Path:
    """The local file that holds `source`'s bytes: fetched into `cache_dir` for URLs, checked against `sha256`.

    source: an http(s):// or file:// URL (sha256 required; cached as `name`, default the URL's file name),
    "skimage:<name>" (one of SKIMAGE_IMAGES), or a local path. sha256, when given, is verified for every kind.
    """
    from ifmsan._shared.hashing import file_checksum
    from ifmsan.steps.fetch import fetch

    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"image source must be a URL, a local path or 'skimage:<name>', got {source!r}")
    if sha256 is not None and not (isinstance(sha256, str) and re.fullmatch(r"[0-9a-fA-F]{64}", sha256)):
        raise ValueError(f"image {source}: sha256 must be 64 hexadecimal digits, got {sha256!r}")
    expected = None if sha256 is None else sha256.lower()
    try:
        scheme = urllib.parse.urlsplit(source).scheme.lower()
    except ValueError as exc:
        raise ValueError(f"image {source!r} is not a valid URL or path: {exc}") from exc
    if scheme in URL_SCHEMES:
        if expected is None:
            raise ValueError(f"image {source}: a URL needs its sha256 (give sha256=...)")
        if name is None:
            basename = urllib.parse.unquote(Path(urllib.parse.urlsplit(source).path).name)
            name = basename if is_safe_id(basename) else f"{expected}.img"
        _check_name(name, what=f"image {source}: cache file name")
        return fetch(source, Path(cache_dir) / name, sha256=expected)
    if source.startswith(SKIMAGE_PREFIX):
        key = source[len(SKIMAGE_PREFIX) :]
        if key not in SKIMAGE_IMAGES:
            raise ValueError(f"image {source}: unknown scikit-image image; known: {', '.join(sorted(SKIMAGE_IMAGES))}")
        import skimage.data

        path = Path(skimage.data.data_dir) / SKIMAGE_IMAGES[key]
        if not path.is_file():
            raise ValueError(f"image {source}: {path} is missing from the installed scikit-image")
    elif "://" in source or (len(scheme) > 1 and not Path(source).exists()):
        raise ValueError(f"image {source}: unsupported scheme {scheme!r}; use http(s)://, file://, a path or skimage:")
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"image not found: {source}")
        if not path.is_file():
            raise ValueError(f"image {source} is not a regular file")
    if expected is not None:
        found = file_checksum(path)
        if found != expected:
            raise ValueError(f"image {source}: sha256 is {found}, expected {expected}")
    return path


# Modes whose pixels convert to RGB as PIL documents; 16-bit grey is scaled, not clipped (see _to_rgb).
_PIL_TO_RGB = frozenset({"RGB", "RGBA", "RGBX", "RGBa", "L", "LA", "La", "1", "P", "PA", "CMYK", "YCbCr"})


def _to_rgb(image: Image.Image, *, source: str) -> Image.Image:
    """RGB pixels for the modes that have an unambiguous 8-bit RGB form; a ValueError naming the image otherwise."""
    import numpy as np
    from PIL import Image

    if image.mode in _PIL_TO_RGB:
        return image.convert("RGB")  # grey and palette expanded, alpha dropped (as torchvision's loader does)
    if image.mode.startswith("I;16"):
        grey = np.asarray(image).astype(np.float64)
        if grey.min(initial=0) < 0:
            raise ValueError(f"image {source}: signed 16-bit pixels (mode {image.mode}); expected unsigned 8/16-bit")
        return Image.fromarray(np.rint(grey / 257.0).astype(np.uint8), mode="L").convert("RGB")  # 65535 -> 255
    raise ValueError(
        f"image {source}: pixel mode {image.mode} has no unambiguous 8-bit RGB form; expected 8- or 16-bit "
        "grey, RGB(A), palette or CMYK (convert it to an 8-bit RGB PNG first)"
    )


def _open_rgb(path: Path, *, source: str) -> Image.Image:
    """Decode a file fully into an RGB image, refusing corrupt, truncated and oversized (decompression bomb) files."""
    import warnings

    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below: an error, not a warning
            with Image.open(path) as image:
                width, height = image.size
                if limit is not None and width * height > limit:
                    raise Image.DecompressionBombError(f"{width}x{height} = {width * height} pixels")
                image.load()
                return _to_rgb(image, source=source)
    except Image.DecompressionBombError as exc:
        raise ValueError(
            f"image {source} ({path}) is too large to decode: {exc}; the limit is {limit} pixels "
            "(PIL.Image.MAX_IMAGE_PIXELS), a guard against decompression bombs"
        ) from exc
    except ValueError as exc:
        if str(exc).startswith(f"image {source}:"):
            raise
        raise ValueError(f"image {source} ({path}) is not a readable image: {exc}") from exc
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 -- PIL's decoders raise many kinds (OSError, SyntaxError, struct.error...)
        raise ValueError(f"image {source} ({path}) is not a readable image: {type(exc).__name__}: {exc}") from exc


MINIDATA_PREFIX = "minidata:"
MINIDATA_SOURCE = re.compile(r"^minidata:(?P<split>train|test):(?P<index>[0-9]{1,9})(?::(?P<seed>[0-9]{1,9}))?$")


def minidata_image(source: str) -> Image.Image:
    """A generated alexnet_mini sample, 'minidata:<split>:<index>[:<seed>]' (seed 0 by default).

    Its checksum is the sha256 of its pixels."""
    from ifmsan.steps.minidata import render_sample

    match = MINIDATA_SOURCE.match(source)
    if not match:
        raise ValueError(
            f"image source {source!r} must look like minidata:test:<index> or minidata:test:<index>:<seed>"
        )
    image, _ = render_sample(int(match["index"]), seed=int(match["seed"] or 0), split=match["split"])
    return image


def load_image_with_checksum(
    source: str,
    *,
    sha256: str | None = None,
    cache_dir: str | os.PathLike[str] = DEFAULT_CACHE_DIR,
    name: str | None = None,
) -> tuple[Image.Image, str]:
    """The RGB image and the sha256 of the file bytes it was decoded from (for provenance attributes)."""
    from ifmsan._shared.hashing import file_checksum

    if source.startswith(MINIDATA_PREFIX):
        image = minidata_image(source)
        checksum = hashlib.sha256(image.tobytes()).hexdigest()
        if sha256 is not None and sha256.lower() != checksum:
            raise ValueError(f"image {source}: sha256 of its pixels is {checksum}, expected {sha256}")
        return image, checksum
    path = resolve_image(source, sha256=sha256, cache_dir=cache_dir, name=name)
    image = _open_rgb(path, source=source)
    return image, sha256.lower() if sha256 is not None else file_checksum(path)


def load_image(
    source: str,
    *,
    sha256: str | None = None,
    cache_dir: str | os.PathLike[str] = DEFAULT_CACHE_DIR,
    name: str | None = None,
) -> Image.Image:
    """An RGB PIL image from a checksummed URL, a local path or 'skimage:<name>' (see resolve_image)."""
    return load_image_with_checksum(source, sha256=sha256, cache_dir=cache_dir, name=name)[0]


def image_checksum(
    source: str,
    *,
    sha256: str | None = None,
    cache_dir: str | os.PathLike[str] = DEFAULT_CACHE_DIR,
    name: str | None = None,
) -> str:
    """sha256 of the bytes an image is read from (fetching it first if needed), for provenance."""
    from ifmsan._shared.hashing import file_checksum

    return file_checksum(resolve_image(source, sha256=sha256, cache_dir=cache_dir, name=name))
