"""Input preprocessing of the models: Caffe's test phase for BVLC AlexNet, [-1, 1] scaling for alexnet_mini."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CAFFE_RESIZE = 256
CAFFE_CROP = 227
CAFFE_OFFSET = (CAFFE_RESIZE - CAFFE_CROP) // 2  # 14, as in Caffe's data_transformer.cpp
CAFFE_CHANNEL_MEAN_BGR = (104.00699, 116.66877, 122.67891)
"""Per-channel means of ilsvrc_2012_mean.npy (B, G, R), used when no mean file is given."""
MEAN_FILE_SHAPE = (3, CAFFE_RESIZE, CAFFE_RESIZE)
MIN_IMAGE_SIDE = 32
"""Images whose shorter side is below this many pixels are refused: blown up to the network's input (224-299 px),
they are a few flat blocks, and a trained net still names a class with high confidence (a 1x1 image: 92 %)."""

log = logging.getLogger(__name__)


def check_image_size(image: Image.Image, *, source: str, crop: int) -> None:
    """Refuse an image below MIN_IMAGE_SIDE on its shorter side; warn when it is smaller than the network's input crop."""
    width, height = image.size
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ValueError(
            f"image {source} is {width}x{height} px; its shorter side must be at least {MIN_IMAGE_SIDE} px "
            f"(the network sees {crop}x{crop} px: a smaller image would be blown up into a few flat blocks)"
        )
    if min(width, height) < crop:
        log.warning(
            "image %s is %dx%d px, smaller than the network's %d px input: it is upscaled", source, width, height, crop
        )


def load_mean_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Read and validate Caffe's ImageNet mean image (3x256x256, BGR, 0-255) as float64."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"mean_file not found: {path}; expected ilsvrc_2012_mean.npy (3x256x256 float64, BGR) from BVLC/caffe "
            "python/caffe/imagenet/"
        )
    try:
        mean = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"mean_file {path} is not a readable .npy array: {exc}") from exc
    if not isinstance(mean, np.ndarray) or mean.shape != MEAN_FILE_SHAPE:
        shape = getattr(mean, "shape", None)
        raise ValueError(f"mean_file {path} must hold an array of shape {MEAN_FILE_SHAPE} (C, H, W, BGR), got {shape}")
    if not np.issubdtype(mean.dtype, np.number) or np.issubdtype(mean.dtype, np.complexfloating):
        raise ValueError(f"mean_file {path} must hold real numbers, got dtype {mean.dtype}")
    mean = mean.astype(np.float64)
    if not np.isfinite(mean).all():
        raise ValueError(f"mean_file {path} contains NaN or infinite values")
    return mean


def caffe_mean_crop(mean: np.ndarray | None) -> np.ndarray:
    """The (3, 227, 227) float64 BGR mean to subtract: the centre crop of a mean image, or the channel means."""
    if mean is None:
        return np.broadcast_to(
            np.asarray(CAFFE_CHANNEL_MEAN_BGR, dtype=np.float64)[:, None, None], (3, CAFFE_CROP, CAFFE_CROP)
        )
    end = CAFFE_OFFSET + CAFFE_CROP
    return mean[:, CAFFE_OFFSET:end, CAFFE_OFFSET:end]


def caffe_preprocess(image: Image.Image, *, mean_crop: np.ndarray) -> torch.Tensor:
    """BVLC AlexNet's test-phase input: BGR, 0-255, warped to 256x256, centre crop 227, mean subtracted.

    Caffe's C++ transformer resizes with OpenCV's INTER_LINEAR (and pycaffe with skimage's order-1 resize);
    this uses PIL's bilinear filter, which antialiases when shrinking, so pixel values can differ slightly
    from Caffe's for large images. Arithmetic is float64, the result float32 of shape (3, 227, 227).
    """
    resized = image.convert("RGB").resize((CAFFE_RESIZE, CAFFE_RESIZE), Image.Resampling.BILINEAR)
    rgb = np.asarray(resized, dtype=np.float64)  # (H, W, RGB), 0-255
    end = CAFFE_OFFSET + CAFFE_CROP
    bgr = rgb[CAFFE_OFFSET:end, CAFFE_OFFSET:end, ::-1].transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(bgr - mean_crop, dtype=np.float32))


def unit_range_preprocess(image: Image.Image, *, size: int) -> torch.Tensor:
    """alexnet_mini's input: RGB warped to size x size (PIL bilinear), scaled to [-1, 1] as x/127.5 - 1, CHW float32."""
    resized = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    rgb = np.asarray(resized, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray((rgb / np.float32(127.5) - np.float32(1.0)).transpose(2, 0, 1)))


def imagenet_transform(*, crop: int, resize: int) -> torch.nn.Module:
    """torchvision's standard ImageNet evaluation transform (resize shorter side, centre crop, RGB in [0, 1], normalize)."""
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize(resize, interpolation=transforms.InterpolationMode.BILINEAR, antialias=True),
            transforms.CenterCrop(crop),
            transforms.PILToTensor(),
            transforms.ConvertImageDtype(torch.float32),
            transforms.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
        ]
    )


class RGBThen:
    """Convert a PIL image to RGB, then apply a torchvision transform; a class so that nets stay picklable."""

    def __init__(self, transform: torch.nn.Module) -> None:
        """Wrap `transform` (e.g. a weights enum's own `transforms()`)."""
        self.transform = transform

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """The transformed image as float32 CHW."""
        return self.transform(image.convert("RGB")).to(torch.float32)
