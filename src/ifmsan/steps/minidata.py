"""Deterministic, download-free labelled image dataset for training the alexnet_mini stand-in.

Each sample is one filled, saturated shape of random position, scale, tilt and hue drawn over a dimmed crop
of a photo or texture that scikit-image ships. The variation is sized so that alexnet_mini learns it to
>= 90 % held-out accuracy in a few CPU minutes: in a trial, full rotations, placement anywhere in the frame
and a mix of filled and outlined shapes together held it at 35 % after 190 steps of 32 images, against 70 %
with the settings below (no dropout, same optimiser). Training flips
the images, so mirrored and upside-down shapes are seen too. A sample is a pure function of
(seed, split, index): the train and test splits are disjoint random streams, and any image can be
regenerated on its own.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

CLASS_NAMES: tuple[str, ...] = (
    "circle",
    "triangle",
    "square",
    "star",
    "cross",
    "crescent",
    "ring",
    "arrow",
    "heart",
    "bar",
)
IMAGE_SIZE = 227
SPLITS: dict[str, int] = {"train": 0, "test": 1, "calibration": 2}
RADIUS_RANGE = (40.0, 95.0)
"""Circumradius of the shape in pixels."""
POSITION_JITTER = 35.0
"""Largest offset of the shape's centre from the image centre along x and along y (less where the frame is near)."""
TILT_DEGREES = 20.0
"""Largest rotation either way."""
BACKGROUNDS: tuple[str, ...] = (
    "astronaut",
    "brick",
    "camera",
    "chelsea",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "retina",
    "rocket",
    "text",
)
STAND_IN_NOTE = (
    "alexnet_mini is a small offline stand-in for BVLC AlexNet (same layer sequence and kernel geometry, "
    "narrower channels), trained on synthetic shapes drawn over scikit-image photos; it is not the paper's network."
)


@dataclass(frozen=True)
class SampleSpec:
    """Everything that determines one image, so tests and callers can check what was drawn."""

    index: int
    label: int
    centre: tuple[float, float]
    radius: float
    angle: float
    colour: tuple[int, int, int]
    background: str
    crop: tuple[int, int, int]
    dim: tuple[float, float]
    colour_background: bool

    @property
    def class_name(self) -> str:
        """The human-readable class of this sample."""
        return CLASS_NAMES[self.label]


def _circle(n: int, radius: float = 1.0, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    """Closed-polygon approximation of a circle (n points, counter-clockwise)."""
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    return np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], axis=1)


def _regular(n: int, phase: float = -math.pi / 2) -> np.ndarray:
    """Regular n-gon inscribed in the unit circle."""
    t = phase + np.arange(n) * 2.0 * math.pi / n
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _star(points: int = 5, inner: float = 0.42) -> np.ndarray:
    """Star polygon alternating between the unit circle and an inner radius."""
    t = -math.pi / 2 + np.arange(2 * points) * math.pi / points
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _crescent(inner_radius: float = 0.8, offset: float = 0.45, n: int = 48) -> np.ndarray:
    """Unit disk minus an offset disk, as one polygon (outer arc then inner arc back)."""
    x = (1.0 - inner_radius**2 + offset**2) / (2.0 * offset)
    y = math.sqrt(1.0 - x * x)
    outer_start = math.atan2(y, x)
    outer = np.linspace(outer_start, 2.0 * math.pi - outer_start, n)
    inner_start = math.atan2(y, x - offset)
    inner = np.linspace(2.0 * math.pi - inner_start, inner_start, n)
    return np.concatenate(
        [
            np.stack([np.cos(outer), np.sin(outer)], axis=1),
            np.stack([offset + inner_radius * np.cos(inner), inner_radius * np.sin(inner)], axis=1),
        ]
    )


def _heart(n: int = 24) -> np.ndarray:
    """A heart: a square standing on one corner with a half-disk on each upper side, scaled into the unit circle."""
    bottom, right, top, left = np.array([(0.0, 1.0), (1.0, 0.0), (0.0, -1.0), (-1.0, 0.0)])
    centre = np.zeros(2)

    def half_disk(start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Arc from start to end bulging away from the square's centre."""
        middle, radius = (start + end) / 2.0, np.linalg.norm(end - start) / 2.0
        along = (end - start) / (2.0 * radius)
        outward = middle - centre
        outward /= np.linalg.norm(outward)
        phi = np.linspace(math.pi, 0.0, n)[:, None]
        return middle + radius * (np.cos(phi) * along + np.sin(phi) * outward)

    points = np.concatenate([[bottom], half_disk(right, top), half_disk(top, left)])
    points -= (points.min(axis=0) + points.max(axis=0)) / 2.0
    return points / np.linalg.norm(points, axis=1).max()


def _shapes() -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    """Class name -> (solid polygons, hole polygons) in unit coordinates, all inside the unit disk."""
    arm = 0.3
    cross = np.array(
        [
            (arm, -1), (arm, -arm), (1, -arm), (1, arm), (arm, arm), (arm, 1),
            (-arm, 1), (-arm, arm), (-1, arm), (-1, -arm), (-arm, -arm), (-arm, -1),
        ],
        dtype=float,
    )  # fmt: skip
    arrow = np.array(
        [(-1, -0.22), (0.15, -0.22), (0.15, -0.62), (1, 0), (0.15, 0.62), (0.15, 0.22), (-1, 0.22)], dtype=float
    )
    bar = np.array([(-1, -0.27), (1, -0.27), (1, 0.27), (-1, 0.27)], dtype=float) * 0.97
    shapes = {
        "circle": ([_circle(64)], []),
        "triangle": ([_regular(3)], []),
        "square": ([_regular(4, phase=math.pi / 4)], []),
        "star": ([_star()], []),
        "cross": ([cross / math.hypot(1, arm)], []),
        "crescent": ([_crescent()], []),
        "ring": ([_circle(64)], [_circle(64, 0.55)]),
        "arrow": ([arrow / math.hypot(1, 0.22)], []),
        "heart": ([_heart()], []),
        "bar": ([bar / math.hypot(1, 0.27)], []),
    }
    assert tuple(shapes) == CLASS_NAMES
    return shapes


SHAPES = _shapes()


def _check_seed(seed: int) -> None:
    """Seeds feed numpy's SeedSequence, which needs non-negative integers."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def _check_split(split: str) -> int:
    """Map a split name to its stream number."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    return SPLITS[split]


def _check_count(name: str, value: int, *, minimum: int = 1) -> None:
    """Counts are plain integers of at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


@functools.cache
def _background(name: str) -> Image.Image:
    """One scikit-image sample image as RGB (loaded once; all ship inside the scikit-image wheel)."""
    import skimage.data

    array = np.asarray(getattr(skimage.data, name)())
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return Image.fromarray(np.ascontiguousarray(array[..., :3]).astype(np.uint8), "RGB")


def sample_spec(index: int, *, seed: int, split: str) -> SampleSpec:
    """Draw the parameters of sample `index` of `split` from a generator seeded by (seed, split, index)."""
    _check_seed(seed)
    stream = _check_split(split)
    _check_count("index", index, minimum=0)
    rng = np.random.default_rng([int(seed), stream, int(index)])
    label = int(index) % len(CLASS_NAMES)
    radius = float(rng.uniform(*RADIUS_RANGE))
    centre_of_frame = IMAGE_SIZE / 2.0
    reach = min(POSITION_JITTER, centre_of_frame - radius - 2.0)
    centre = (
        float(centre_of_frame + rng.uniform(-reach, reach)),
        float(centre_of_frame + rng.uniform(-reach, reach)),
    )
    angle = float(rng.uniform(-1.0, 1.0) * math.radians(TILT_DEGREES))
    hue = float(rng.random())
    saturation = float(rng.uniform(0.75, 1.0))
    value = float(rng.uniform(0.85, 1.0))
    colour = tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(hue, saturation, value))
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    width, height = _background(background).size
    side = int(rng.uniform(0.35, 1.0) * min(width, height))
    crop = (int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1)), side)
    dim = (float(rng.uniform(0.25, 0.5)), float(rng.uniform(0.0, 30.0)))
    colour_background = bool(rng.random() < 0.25)
    return SampleSpec(
        index=int(index),
        label=label,
        centre=centre,
        radius=radius,
        angle=angle,
        colour=colour,  # type: ignore[arg-type]
        background=background,
        crop=crop,
        dim=dim,
        colour_background=colour_background,
    )


def _place(points: np.ndarray, spec: SampleSpec) -> list[tuple[float, float]]:
    """Rotate, scale and move unit-coordinate points to image pixels."""
    c, s = math.cos(spec.angle), math.sin(spec.angle)
    rotated = points @ np.array([[c, s], [-s, c]])
    placed = rotated * spec.radius + np.asarray(spec.centre)
    return [(float(x), float(y)) for x, y in placed]


def shape_mask(spec: SampleSpec) -> Image.Image:
    """The 8-bit mask (255 = shape) of the shape that `spec` draws."""
    mask = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    draw = ImageDraw.Draw(mask)
    solids, holes = SHAPES[CLASS_NAMES[spec.label]]
    for polygon in solids:
        draw.polygon(_place(polygon, spec), fill=255)
    for polygon in holes:
        draw.polygon(_place(polygon, spec), fill=0)
    return mask


def render_spec(spec: SampleSpec) -> Image.Image:
    """Draw the image that `spec` describes (RGB, IMAGE_SIZE x IMAGE_SIZE)."""
    x0, y0, side = spec.crop
    photo = _background(spec.background)
    crop = photo.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR, box=(x0, y0, x0 + side, y0 + side))
    colour = spec.colour_background
    crop = ImageEnhance.Color(crop).enhance(0.5) if colour else crop.convert("L").convert("RGB")
    gain, offset = spec.dim
    lut = [min(255, int(round(v * gain + offset))) for v in range(256)]
    background = crop.point(lut * 3)
    paint = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), spec.colour)
    return Image.composite(paint, background, shape_mask(spec))


def render_sample(index: int, *, seed: int, split: str) -> tuple[Image.Image, int]:
    """Sample `index` of `split`: an RGB 227x227 image and its label (index mod the number of classes)."""
    spec = sample_spec(index, seed=seed, split=split)
    return render_spec(spec), spec.label


def make_dataset(
    *, n_per_class: int, split: str, seed: int, progress: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A balanced dataset: uint8 images (N, 227, 227, 3) and int64 labels, N = n_per_class * classes."""
    from tqdm import tqdm

    _check_count("n_per_class", n_per_class)
    _check_seed(seed)
    _check_split(split)
    total = n_per_class * len(CLASS_NAMES)
    images = np.empty((total, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    labels = np.empty(total, dtype=np.int64)
    disable = None if progress is None else not progress
    for index in tqdm(range(total), desc=f"render {split}", unit="img", disable=disable, leave=False):
        image, label = render_sample(index, seed=seed, split=split)
        images[index] = np.asarray(image)
        labels[index] = label
    return images, labels


def write_examples(out_dir: str | Path, *, n: int, seed: int) -> list[tuple[Path, int]]:
    """Write held-out samples 0..n-1 of the test split as PNG plus manifest.tsv (file, class_index, label, sha256)."""
    import io

    from ifmsan._shared.atomic import atomic_path

    _check_count("n", n)
    _check_seed(seed)
    out = Path(out_dir)
    written: list[tuple[Path, int]] = []
    rows = ["file\tclass_index\tlabel\tsha256"]
    for index in range(n):
        image, label = render_sample(index, seed=seed, split="test")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = buffer.getvalue()
        path = out / f"mini_{index:03d}_{CLASS_NAMES[label]}.png"
        with atomic_path(path, suffix=".part.png") as tmp:
            tmp.write_bytes(data)
        rows.append(f"{path.name}\t{label}\t{CLASS_NAMES[label]}\t{hashlib.sha256(data).hexdigest()}")
        written.append((path, label))
    with atomic_path(out / "manifest.tsv") as tmp:
        tmp.write_text("\n".join(rows) + "\n")
    return written
