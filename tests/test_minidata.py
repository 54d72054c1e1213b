"""The synthetic alexnet_mini dataset: deterministic, balanced, and it draws the shape its label names."""

from __future__ import annotations

import hashlib
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import measure

from ifmsan.steps import minidata
from ifmsan.steps.minidata import CLASS_NAMES, make_dataset, render_sample, sample_spec, write_examples

ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def shape_pixels(image: Image.Image, colour: tuple[int, int, int]) -> np.ndarray:
    """Boolean mask of the pixels painted in exactly the shape's colour."""
    return np.all(np.asarray(image) == np.asarray(colour, dtype=np.uint8), axis=-1)


def test_class_names_are_at_least_eight_distinct_ids() -> None:
    assert isinstance(CLASS_NAMES, tuple) and len(CLASS_NAMES) >= 8
    assert len(set(CLASS_NAMES)) == len(CLASS_NAMES)
    assert all(ID.match(name) and ".." not in name for name in CLASS_NAMES)


def test_same_seed_same_bytes_other_split_or_seed_other_images() -> None:
    for index in range(12):
        a, label_a = render_sample(index, seed=5, split="train")
        b, label_b = render_sample(index, seed=5, split="train")
        assert a.tobytes() == b.tobytes() and label_a == label_b
        other_split, label_test = render_sample(index, seed=5, split="test")
        other_seed, _ = render_sample(index, seed=6, split="train")
        assert label_test == label_a  # labels are balanced by index, the pictures are not shared
        assert other_split.tobytes() != a.tobytes()
        assert other_seed.tobytes() != a.tobytes()
    x1, y1 = make_dataset(n_per_class=2, split="test", seed=1, progress=False)
    x2, y2 = make_dataset(n_per_class=2, split="test", seed=1, progress=False)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)


def test_train_and_test_share_no_image() -> None:
    train, _ = make_dataset(n_per_class=4, split="train", seed=0, progress=False)
    test, _ = make_dataset(n_per_class=4, split="test", seed=0, progress=False)
    train_hashes = {hashlib.sha256(image.tobytes()).hexdigest() for image in train}
    test_hashes = {hashlib.sha256(image.tobytes()).hexdigest() for image in test}
    assert len(train_hashes) == len(train) and len(test_hashes) == len(test)
    assert not train_hashes & test_hashes


def test_dataset_is_balanced_rgb_227_uint8() -> None:
    images, labels = make_dataset(n_per_class=3, split="train", seed=2, progress=False)
    assert images.shape == (3 * len(CLASS_NAMES), 227, 227, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64
    assert np.bincount(labels, minlength=len(CLASS_NAMES)).tolist() == [3] * len(CLASS_NAMES)
    image, _ = render_sample(7, seed=0, split="test")
    assert image.mode == "RGB" and image.size == (227, 227)


def test_samples_vary_in_position_scale_colour_and_background() -> None:
    specs = [sample_spec(i, seed=0, split="train") for i in range(200)]
    radii = [s.radius for s in specs]
    assert 40 <= min(radii) < 50 and 85 < max(radii) <= 95
    xs = [s.centre[0] for s in specs]
    assert max(xs) - min(xs) > 60
    assert len({s.colour for s in specs}) > 150
    assert len({s.background for s in specs}) >= 8
    angles = np.degrees([s.angle for s in specs])
    assert angles.min() < -15 and angles.max() > 15 and np.abs(angles).max() <= minidata.TILT_DEGREES


def test_shape_stands_out_from_the_background() -> None:
    """The painted colour is brighter than every background pixel, and the shape lies inside the frame."""
    for index in range(60):
        spec = sample_spec(index, seed=3, split="test")
        image, _ = render_sample(index, seed=3, split="test")
        mask = shape_pixels(image, spec.colour)
        assert mask.sum() > 300, spec
        rgb = np.asarray(image).astype(int)
        assert rgb[~mask].max() < max(spec.colour), spec  # background dimmed below the shape's brightest channel
        ys, xs = np.nonzero(mask)
        assert xs.min() > 0 and ys.min() > 0 and xs.max() < 226 and ys.max() < 226


def _samples(label: int, count: int) -> list[tuple[minidata.SampleSpec, np.ndarray]]:
    """The first `count` samples of one class with their painted masks."""
    found = []
    for index in range(label, count * len(CLASS_NAMES), len(CLASS_NAMES)):
        spec = sample_spec(index, seed=11, split="train")
        image, got = render_sample(index, seed=11, split="train")
        assert got == label == spec.label
        found.append((spec, shape_pixels(image, spec.colour)))
    return found


def _props(mask: np.ndarray) -> measure._regionprops.RegionProperties:
    """Region properties of the painted shape (a sharp tip may rasterise to a stray pixel or two beside it)."""
    labelled = measure.label(mask, connectivity=2)
    regions = sorted(measure.regionprops(labelled), key=lambda region: region.area, reverse=True)
    assert regions and sum(region.area for region in regions[1:]) <= 3, "expected one connected shape"
    return regions[0]


def _circumradius(mask: np.ndarray, centre: tuple[float, float]) -> float:
    """Largest distance of a painted pixel from the given centre."""
    ys, xs = np.nonzero(mask)
    return float(np.hypot(xs - centre[0], ys - centre[1]).max())


@pytest.mark.parametrize("name", CLASS_NAMES)
def test_shapes_have_the_geometry_of_their_class(name: str) -> None:
    """Hand-computed geometry: area over circumradius squared, holes, convexity, elongation."""
    label = CLASS_NAMES.index(name)
    for spec, mask in _samples(label, 6):
        props = _props(mask)
        radius = _circumradius(mask, spec.centre)
        assert abs(radius - spec.radius) < 3.0, (name, radius, spec.radius)
        area_ratio = props.area / radius**2
        holes = 1 - props.euler_number
        if name == "circle":
            assert abs(area_ratio - math.pi) < 0.2 and props.solidity > 0.97 and props.eccentricity < 0.3
        elif name == "square":
            assert abs(area_ratio - 2.0) < 0.12 and props.solidity > 0.95
        elif name == "triangle":
            assert abs(area_ratio - 3 * math.sqrt(3) / 4) < 0.1 and props.solidity > 0.95
        elif name == "ring":
            assert holes == 1 and props.eccentricity < 0.3 and props.solidity < 0.8
        elif name == "bar":
            assert props.axis_major_length / props.axis_minor_length > 3.0 and props.solidity > 0.95
        elif name == "star":  # five triangles (1, 0.42, 36 degrees) around the centre: 5 * 0.42 * sin 36deg = 1.234
            assert abs(area_ratio - 5 * 0.42 * math.sin(math.radians(36))) < 0.1 and props.solidity < 0.6
        elif name == "cross":  # two 2 x 0.6 bars minus their overlap, circumradius hypot(1, 0.3): 2.04 / 1.09 = 1.872
            assert abs(area_ratio - (2 * 2 * 0.6 - 0.36) / (1 + 0.3**2)) < 0.1 and 0.6 < props.solidity < 0.75
        elif name == "crescent":
            assert props.solidity < 0.6 and props.eccentricity > 0.7
        elif name == "arrow":
            assert props.solidity < 0.75 and props.eccentricity > 0.85
        else:  # heart: a rounded blob with a notch, longer one way than the other
            assert name == "heart" and 0.4 < props.eccentricity < 0.7 and props.solidity < 0.985
        if name != "ring":
            assert holes == 0, name
        if name in ("circle", "square", "triangle", "star", "cross", "ring"):  # centroid = centre for these
            cy, cx = props.centroid
            assert math.hypot(cx - spec.centre[0], cy - spec.centre[1]) < 2.5, name


def test_ring_centre_shows_the_background_circle_centre_is_painted() -> None:
    for index in range(40):
        spec = sample_spec(index, seed=4, split="train")
        if spec.class_name not in ("circle", "ring"):
            continue
        image, _ = render_sample(index, seed=4, split="train")
        centre = (round(spec.centre[1]), round(spec.centre[0]))
        assert shape_pixels(image, spec.colour)[centre] == (spec.class_name == "circle")


def test_shapes_are_placed_around_the_centre_and_fit_in_the_frame() -> None:
    for index in range(200):
        spec = sample_spec(index, seed=8, split="test")
        for coordinate in spec.centre:
            assert abs(coordinate - 113.5) <= minidata.POSITION_JITTER
            assert spec.radius < coordinate < 227 - spec.radius
        assert minidata.RADIUS_RANGE[0] <= spec.radius <= minidata.RADIUS_RANGE[1]


def test_render_is_fast() -> None:
    render_sample(0, seed=0, split="train")  # loads the background photos once
    started = time.perf_counter()
    for index in range(50):
        render_sample(index, seed=9, split="train")
    assert (time.perf_counter() - started) / 50 < 0.03


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="split"):
        render_sample(0, seed=0, split="validation")
    with pytest.raises(ValueError, match="seed"):
        render_sample(0, seed=-1, split="train")
    with pytest.raises(ValueError, match="index"):
        render_sample(-3, seed=0, split="train")
    with pytest.raises(ValueError, match="n_per_class"):
        make_dataset(n_per_class=0, split="train", seed=0)
    with pytest.raises(ValueError, match="n "):
        write_examples("/nonexistent-never-created", n=0, seed=0)


def test_write_examples_pngs_and_manifest(tmp_path: Path) -> None:
    written = write_examples(tmp_path / "ex", n=12, seed=0)
    assert [label for _, label in written] == [i % len(CLASS_NAMES) for i in range(12)]
    rows = (tmp_path / "ex" / "manifest.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["file", "class_index", "label", "sha256"]
    assert len(rows) == 13
    for index, (row, (path, label)) in enumerate(zip(rows[1:], written, strict=True)):
        name, class_index, class_name, digest = row.split("\t")
        assert path == tmp_path / "ex" / name and ID.match(name)
        assert int(class_index) == label and class_name == CLASS_NAMES[label]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
        expected, _ = render_sample(index, seed=0, split="test")  # held-out images, losslessly stored
        assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), np.asarray(expected))
    assert sorted(p.name for p in (tmp_path / "ex").iterdir()) == sorted(
        [r.split("\t")[0] for r in rows[1:]] + ["manifest.tsv"]
    )
