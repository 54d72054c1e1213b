"""Input preprocessing of the models: Caffe's test phase for BVLC AlexNet, [-1, 1] scaling for alexnet_mini."""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

CAFFE_RESIZE = 256
CAFFE_CROP = 227
CAFFE_OFFSET = (CAFFE_RESIZE - CAFFE_CROP) // 2  # 14, as in Caffe's data_transformer.cpp
CAFFE_CHANNEL_MEAN_BGR = (104.00699, 116.66877, 122.67891)
"""Per-channel means of ilsvrc_2012_mean.npy (B, G, R), used when no mean file is given."""
MEAN_FILE_SHAPE = (3, CAFFE_RESIZE, CAFFE_RESIZE)
CAFFE_PREPROCESSING: tuple[str, ...] = ("caffe_cpp", "pycaffe", "pil")
"""bvlc_alexnet's input pipelines (docs/preprocessing.md): C++ Caffe's test phase (OpenCV), pycaffe's tutorial
(skimage), and PIL's bilinear warp in place of OpenCV's."""
DEFAULT_CAFFE_PREPROCESSING = "caffe_cpp"
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


def caffe_channel_mean(mean: np.ndarray | None) -> np.ndarray:
    """pycaffe's (3,) float64 BGR mean: the mean image averaged over H and W (`mean.mean(1).mean(1)`), or the defaults."""
    if mean is None:
        return np.asarray(CAFFE_CHANNEL_MEAN_BGR, dtype=np.float64)
    return np.asarray(mean, dtype=np.float64).mean(1).mean(1)


def _bgr_crop_minus_mean(bgr: np.ndarray, mean_crop: np.ndarray) -> torch.Tensor:
    """Caffe's DataTransformer at test time on a 256x256 HWC BGR image: centre crop 227 at 14, float64 minus the mean."""
    end = CAFFE_OFFSET + CAFFE_CROP
    crop = np.asarray(bgr[CAFFE_OFFSET:end, CAFFE_OFFSET:end], dtype=np.float64).transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(crop - mean_crop, dtype=np.float32))


def _cv2() -> Any:
    """OpenCV, imported on first use (a heavy import), or an ImportError that names the package to install."""
    try:
        import cv2
    except ImportError as exc:
        raise ImportError(
            "bvlc_alexnet's preprocessing 'caffe_cpp' resizes with OpenCV like Caffe does, but cv2 is not importable "
            f"({exc}); install opencv-python-headless (pip install 'opencv-python-headless>=4.8'), or choose "
            "preprocess='pil' or 'pycaffe'"
        ) from exc
    return cv2


def caffe_cpp_preprocess(image: Image.Image, *, mean_crop: np.ndarray) -> torch.Tensor:
    """C++ Caffe's test-phase input: BGR uint8 warped by cv::resize INTER_LINEAR to 256x256, crop 227 at 14, minus mean.

    Follows Caffe's ReadImageToCVMat (cv::imread, cv::resize to 256x256: convert_imageset --resize_height=256
    --resize_width=256, i.e. create_imagenet.sh with RESIZE=true, or an ImageData layer with new_height/new_width 256)
    and DataTransformer::Transform in the TEST phase (crop at (256 - 227) / 2 = 14, the mean image subtracted at the
    same offset, or the channel means). The image is decoded by PIL, not by cv::imread (on the sample JPEGs the two
    decoders agree bit for bit: docs/preprocessing.md). Arithmetic is float64, the result float32 of (3, 227, 227).
    """
    cv2 = _cv2()
    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8)[:, :, ::-1])
    resized = cv2.resize(bgr, (CAFFE_RESIZE, CAFFE_RESIZE), interpolation=cv2.INTER_LINEAR)
    return _bgr_crop_minus_mean(resized, mean_crop)


def pycaffe_resize_image(im: np.ndarray, new_dims: tuple[int, int]) -> np.ndarray:
    """caffe.io.resize_image for a (H, W, 1 or 3) image: min-max scaled to [0, 1], skimage order-1 resize, scaled back.

    As with the skimage of Caffe's time (<= 0.14): mode 'constant' (cval 0: the border blends with black when
    upscaling), no anti-aliasing, float64 arithmetic inside (img_as_float promoted float32), float32 result; a
    constant image is returned as a constant, as caffe.io does.
    """
    from skimage.transform import resize

    im_min, im_max = im.min(), im.max()
    if not im_max > im_min:
        return np.full((new_dims[0], new_dims[1], im.shape[-1]), im_min, dtype=np.float32)
    im_std = (im - im_min) / (im_max - im_min)
    resized_std = resize(im_std.astype(np.float64), new_dims, order=1, mode="constant", anti_aliasing=False)
    return np.asarray(resized_std * (im_max - im_min) + im_min).astype(np.float32)


def pycaffe_preprocess(image: Image.Image, *, channel_mean: np.ndarray) -> torch.Tensor:
    """pycaffe's classification tutorial: caffe.io.load_image, then Transformer.preprocess of a 227x227 input blob.

    load_image: RGB float32 in [0, 1] (skimage.img_as_float); preprocess: resize_image of the whole image to
    227x227 (no 256 warp and no crop; skipped when the image is 227x227 already), transpose to CHW, channel swap
    RGB -> BGR, raw_scale 255, minus the (3,) channel mean; float32 throughout as in caffe.io.
    """
    from skimage.util import img_as_float

    data = img_as_float(np.asarray(image.convert("RGB"), dtype=np.uint8)).astype(np.float32)
    caffe_in = data.astype(np.float32, copy=False)
    if caffe_in.shape[:2] != (CAFFE_CROP, CAFFE_CROP):
        caffe_in = pycaffe_resize_image(caffe_in, (CAFFE_CROP, CAFFE_CROP))
    caffe_in = caffe_in.transpose(2, 0, 1)[[2, 1, 0], :, :]  # set_transpose (2, 0, 1), set_channel_swap (2, 1, 0)
    caffe_in *= 255  # set_raw_scale 255 (in place, float32)
    caffe_in -= np.asarray(channel_mean, dtype=np.float64)[:, np.newaxis, np.newaxis]  # set_mean(mu): float32 result
    return torch.from_numpy(np.ascontiguousarray(caffe_in, dtype=np.float32))


def caffe_preprocess(image: Image.Image, *, mean_crop: np.ndarray) -> torch.Tensor:
    """Preprocessing 'pil': Caffe's test-phase input with PIL's bilinear warp to 256x256 in place of OpenCV's.

    BGR, 0-255, warped to 256x256, centre crop 227, mean subtracted. PIL's bilinear filter antialiases when
    shrinking, so pixel values differ from Caffe's (OpenCV INTER_LINEAR, 'caffe_cpp') for large images: the
    measured gap is in docs/preprocessing.md. Arithmetic is float64, the result float32 of shape (3, 227, 227).
    """
    resized = image.convert("RGB").resize((CAFFE_RESIZE, CAFFE_RESIZE), Image.Resampling.BILINEAR)
    return _bgr_crop_minus_mean(np.asarray(resized)[:, :, ::-1], mean_crop)


pil_preprocess = caffe_preprocess
"""The 'pil' mode under the name of its mode."""


def check_caffe_preprocessing(mode: object) -> str:
    """The mode itself, or a ValueError naming it and the allowed modes (before any file is read)."""
    if not isinstance(mode, str) or mode not in CAFFE_PREPROCESSING:
        raise ValueError(
            f"unknown bvlc_alexnet preprocessing {mode!r}; allowed: {', '.join(CAFFE_PREPROCESSING)} "
            f"(default {DEFAULT_CAFFE_PREPROCESSING})"
        )
    return mode


def caffe_preprocessor(mode: str, *, mean: np.ndarray | None) -> functools.partial[torch.Tensor]:
    """bvlc_alexnet's preprocessing callable for `mode`, a partial of a module-level function so that nets pickle.

    `mean` is the validated 3x256x256 mean image (load_mean_file) or None for the channel means. 'caffe_cpp' checks
    here that OpenCV is installed, so that a missing cv2 fails when the model is built, not at its first image.
    """
    check_caffe_preprocessing(mode)
    if mode == "caffe_cpp":
        if importlib.util.find_spec("cv2") is None:
            _cv2()
        return functools.partial(caffe_cpp_preprocess, mean_crop=caffe_mean_crop(mean))
    if mode == "pycaffe":
        return functools.partial(pycaffe_preprocess, channel_mean=caffe_channel_mean(mean))
    return functools.partial(caffe_preprocess, mean_crop=caffe_mean_crop(mean))


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
