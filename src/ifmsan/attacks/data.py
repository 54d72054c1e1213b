"""The adversaries' images: generated offline, disjoint train and held-out splits, with labels and a private attribute.

Every image is a sample of ifmsan.steps.minidata (a shape drawn over a scikit-image photo): the attacker trains on the
generator's train split and is scored on its test split, so no image is in both. The private attribute is the
background photo (15 of them, ifmsan.steps.minidata.BACKGROUNDS); the task never uses it. For alexnet_mini the label is
the drawn shape; for any other network (no labelled data offline) it is the unsanitized network's own top-1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ifmsan.steps.minidata import BACKGROUNDS, render_spec, sample_spec

SPLIT_IDS: dict[str, int] = {"train": 0, "test": 1, "calibration": 2}


@dataclass(frozen=True)
class AttackImages:
    """One split of the adversaries' data: uint8 images (N, H, W, 3), shape labels, background ids, sample indices."""

    split: str
    images: np.ndarray
    shape_labels: np.ndarray
    attributes: np.ndarray
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)


def attack_images(*, split: str, n: int, seed: int, progress: bool | None = None) -> AttackImages:
    """Samples 0..n-1 of the minidata split `split` drawn with `seed`, with their shape label and background id."""
    from tqdm import tqdm

    if split not in SPLIT_IDS:
        raise ValueError(f"split must be one of {sorted(SPLIT_IDS)}, got {split!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"the number of {split} images must be an integer >= 2, got {n!r}")
    images, labels, attributes = [], np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    disable = None if progress is None else not progress
    for index in tqdm(range(n), desc=f"attack data ({split})", unit="img", disable=disable, leave=False):
        spec = sample_spec(index, seed=seed, split=split)
        images.append(np.asarray(render_spec(spec)))
        labels[index] = spec.label
        attributes[index] = BACKGROUNDS.index(spec.background)
    return AttackImages(split, np.stack(images), labels, attributes, np.arange(n))


def image_seed(seed: int, split: str, index: int) -> int:
    """The sanitizer's seed for one image (random picks, noise draws): fresh per image, as for fresh queries."""
    return int(np.random.SeedSequence([int(seed), SPLIT_IDS[split], int(index)]).generate_state(1)[0])


def downsample(images: np.ndarray, *, size: int) -> np.ndarray:
    """uint8 images (N, H, W, 3) resized to size x size (PIL bilinear with antialiasing), as float in [0, 1]."""
    from PIL import Image

    out = np.empty((len(images), size, size, 3), dtype=np.float32)
    for i, image in enumerate(images):
        resized = Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
        out[i] = np.asarray(resized, dtype=np.float32) / 255.0
    return out


N_ATTRIBUTES = len(BACKGROUNDS)
