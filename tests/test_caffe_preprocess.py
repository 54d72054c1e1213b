"""bvlc_alexnet's three input pipelines against independent expectations: OpenCV's bilinear warp written out in numpy
(C++ Caffe), pycaffe's caffe.io steps with skimage called directly, PIL's warp, and hand-computed pixels."""

from __future__ import annotations

import itertools
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ifmsan.models.caffe_alexnet import build_bvlc_alexnet
from ifmsan.models.preprocess import (
    CAFFE_CHANNEL_MEAN_BGR,
    CAFFE_PREPROCESSING,
    DEFAULT_CAFFE_PREPROCESSING,
    caffe_cpp_preprocess,
    caffe_mean_crop,
    caffe_preprocess,
    caffe_preprocessor,
    pycaffe_preprocess,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PENGUIN = SHARED / "imagenet-samples" / "n02056570_king_penguin.JPEG"
MEAN_BGR = np.asarray(CAFFE_CHANNEL_MEAN_BGR)
CROP = slice(14, 14 + 227)  # (256 - 227) // 2 = 14: Caffe's test-phase centre crop


def random_rgb(height: int, width: int, seed: int) -> np.ndarray:
    """A random (H, W, 3) uint8 RGB array."""
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def pil(array: np.ndarray) -> Image.Image:
    """An RGB PIL image of a (H, W, 3) uint8 array."""
    return Image.fromarray(array, "RGB")


def chw_bgr(hwc_rgb: np.ndarray) -> np.ndarray:
    """(H, W, RGB) -> (BGR, H, W) as float64."""
    return np.asarray(hwc_rgb, dtype=np.float64)[:, :, ::-1].transpose(2, 0, 1)


# --- OpenCV's INTER_LINEAR for uint8, written out from imgproc/src/resize.cpp (resizeGeneric_, HResizeLinear,
# --- VResizeLinearVec_32s8u) without calling OpenCV.


def float_bilinear(src: np.ndarray, height: int, width: int) -> np.ndarray:
    """Real-valued bilinear warp with half-pixel centres, sample positions clamped to the edge pixels: (H, W, C) f64."""

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.minimum(np.floor(pos).astype(np.int64), n_in - 1)
        return lo, np.minimum(lo + 1, n_in - 1), pos - lo

    y0, y1, fy = axis(src.shape[0], height)
    x0, x1, fx = axis(src.shape[1], width)
    s = src.astype(np.float64)
    rows = s[y0] * (1 - fy)[:, None, None] + s[y1] * fy[:, None, None]
    return rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]


def opencv_fixed_point(src: np.ndarray, height: int, width: int) -> np.ndarray:
    """OpenCV's uint8 INTER_LINEAR: 11-bit weights from float32 offsets, integer row sums, SIMD vertical rounding.

    x offsets are clamped to the edge (fx = 0); y offsets are not, the row index is (both weights then fall on the
    edge row and are rounded separately). Vertical pass as VResizeLinearVec_32s8u: ((b0*(S0>>4))>>16) +
    ((b1*(S1>>4))>>16), then (+2)>>2; OpenCV's scalar fallback rounds the exact sum once instead (<= 1 LSB apart).
    """

    def coefficients(n_in: int, n_out: int, *, clamp: bool) -> tuple[np.ndarray, ...]:
        scale = 1.0 / (n_out / n_in)
        f = ((np.arange(n_out) + 0.5) * scale - 0.5).astype(np.float32)
        s = np.floor(f).astype(np.int64)
        f = (f - s.astype(np.float32)).astype(np.float32)
        if clamp:
            f[s < 0], s[s < 0] = 0, 0
            f[s >= n_in - 1], s[s >= n_in - 1] = 0, n_in - 1
        w0 = np.rint((np.float32(1) - f) * np.float32(2048)).astype(np.int64)
        w1 = np.rint(f * np.float32(2048)).astype(np.int64)
        return np.clip(s, 0, n_in - 1), np.clip(s + 1, 0, n_in - 1), w0, w1

    s = src.astype(np.int64)
    y0, y1, a0, a1 = coefficients(src.shape[0], height, clamp=False)
    x0, x1, b0, b1 = coefficients(src.shape[1], width, clamp=True)
    rows = s[:, x0] * b0[None, :, None] + s[:, x1] * b1[None, :, None]
    out = ((a0[:, None, None] * (rows[y0] >> 4)) >> 16) + ((a1[:, None, None] * (rows[y1] >> 4)) >> 16)
    return np.clip((out + 2) >> 2, 0, 255).astype(np.uint8)


def cpp_pixels(image: Image.Image) -> np.ndarray:
    """caffe_cpp's 227x227 BGR uint8 crop before mean subtraction (channel means added back), (3, 227, 227) float64."""
    pixels = caffe_cpp_preprocess(image, mean_crop=caffe_mean_crop(None)).double().numpy() + MEAN_BGR[:, None, None]
    assert np.abs(pixels - np.round(pixels)).max() < 1e-4  # whole numbers up to float32 rounding of the difference
    return np.round(pixels)


def test_mode_names_and_default() -> None:
    assert CAFFE_PREPROCESSING == ("caffe_cpp", "pycaffe", "pil")
    assert DEFAULT_CAFFE_PREPROCESSING == "caffe_cpp"


@pytest.mark.parametrize("mode", CAFFE_PREPROCESSING)
@pytest.mark.parametrize("size", [(500, 375), (64, 40), (227, 227), (256, 256)])
def test_every_mode_gives_float32_3x227x227(mode: str, size: tuple[int, int]) -> None:
    x = caffe_preprocessor(mode, mean=None)(pil(random_rgb(size[1], size[0], 0)))
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and tuple(x.shape) == (3, 227, 227)
    assert x.is_contiguous() and torch.isfinite(x).all()


def test_caffe_cpp_2x_upscale_equals_the_hand_written_bilinear_formula() -> None:
    # 128 -> 256: output j samples input j/2 - 1/4, so out[2i] = in[i-1]/4 + 3 in[i]/4, out[2i+1] = 3 in[i]/4 +
    # in[i+1]/4, with the edge pixel repeated; products of quarters of multiples of 16 are integers: no rounding.
    src = (np.random.default_rng(3).integers(0, 16, size=(128, 128, 3)) * 16 + 15).astype(np.uint8)
    padded = np.pad(src.astype(np.float64), ((1, 1), (1, 1), (0, 0)), mode="edge")
    rows = np.empty((256, 130, 3))
    rows[0::2] = padded[:-2] / 4 + 3 * padded[1:-1] / 4
    rows[1::2] = 3 * padded[1:-1] / 4 + padded[2:] / 4
    warped = np.empty((256, 256, 3))
    warped[:, 0::2] = rows[:, :-2] / 4 + 3 * rows[:, 1:-1] / 4
    warped[:, 1::2] = 3 * rows[:, 1:-1] / 4 + rows[:, 2:] / 4
    assert np.array_equal(warped, np.round(warped))  # the expectation is exact
    x = caffe_cpp_preprocess(pil(src), mean_crop=caffe_mean_crop(None))
    expected = (chw_bgr(warped[CROP, CROP]) - MEAN_BGR[:, None, None]).astype(np.float32)
    assert np.array_equal(x.numpy(), expected)


@pytest.mark.parametrize("size", [(375, 500), (333, 500), (300, 257), (100, 80), (37, 1000), (1024, 700)])
def test_caffe_cpp_is_opencvs_bilinear_warp_to_256_then_the_centre_crop(size: tuple[int, int]) -> None:
    src = random_rgb(*size, seed=sum(size))
    got = cpp_pixels(pil(src))
    # Within 1 LSB of the real-valued formula (OpenCV rounds 11-bit fixed-point weights and sums) ...
    exact = chw_bgr(float_bilinear(src, 256, 256)[CROP, CROP])
    assert np.abs(got - exact).max() <= 1.0 + 1e-9
    assert np.abs(got - np.round(exact)).mean() < 0.2
    # ... and bit for bit OpenCV's own integer arithmetic, re-implemented above.
    assert np.array_equal(got, chw_bgr(opencv_fixed_point(src, 256, 256)[CROP, CROP]))


def test_caffe_cpp_leaves_a_256x256_image_unwarped_and_subtracts_the_mean_image_at_the_crop() -> None:
    src = random_rgb(256, 256, 4)
    mean = np.random.default_rng(5).uniform(90, 130, size=(3, 256, 256))
    x = caffe_preprocessor("caffe_cpp", mean=mean)(pil(src))
    expected = np.stack([src[CROP, CROP, 2 - c] - mean[c, CROP, CROP] for c in range(3)]).astype(np.float32)
    assert np.array_equal(x.numpy(), expected)
    assert float(x[0, 0, 0]) == pytest.approx(float(src[14, 14, 2]) - mean[0, 14, 14], abs=1e-4)  # B at (14, 14)


@pytest.mark.parametrize("mode", CAFFE_PREPROCESSING)
def test_channel_order_of_a_pure_red_image(mode: str) -> None:
    x = caffe_preprocessor(mode, mean=None)(Image.new("RGB", (400, 300), (255, 0, 0)))  # downscaled: no border
    np.testing.assert_allclose(x[0].numpy(), 0 - 104.00699, atol=1e-4)  # B
    np.testing.assert_allclose(x[1].numpy(), 0 - 116.66877, atol=1e-4)  # G
    np.testing.assert_allclose(x[2].numpy(), 255 - 122.67891, atol=1e-4)  # R


@pytest.mark.parametrize("mode", CAFFE_PREPROCESSING)
def test_grey_images_give_three_equal_channels(mode: str) -> None:
    x = caffe_preprocessor(mode, mean=None)(Image.new("L", (300, 280), 77))
    for c in range(3):
        np.testing.assert_allclose(x[c].numpy(), 77 - CAFFE_CHANNEL_MEAN_BGR[c], atol=1e-4)


def test_mean_file_against_channel_means() -> None:
    src = random_rgb(256, 256, 6)
    mean = np.random.default_rng(7).uniform(80, 140, size=(3, 256, 256))
    mu = mean.mean(axis=(1, 2))  # pycaffe's tutorial: mu = mean.mean(1).mean(1)
    for mode in ("caffe_cpp", "pil"):  # the mean image, cropped like the picture
        with_file = caffe_preprocessor(mode, mean=mean)(pil(src)).double().numpy()
        without = caffe_preprocessor(mode, mean=None)(pil(src)).double().numpy()
        np.testing.assert_allclose(without - with_file, mean[:, CROP, CROP] - MEAN_BGR[:, None, None], atol=1e-4)
    with_file = caffe_preprocessor("pycaffe", mean=mean)(pil(src)).double().numpy()  # per-channel averages only
    without = caffe_preprocessor("pycaffe", mean=None)(pil(src)).double().numpy()
    np.testing.assert_allclose(without - with_file, np.broadcast_to((mu - MEAN_BGR)[:, None, None], without.shape),
                               atol=1e-4)  # fmt: skip


def test_the_default_channel_means_are_those_of_caffes_mean_file() -> None:
    path = SHARED / "caffe" / "ilsvrc_2012_mean.npy"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    np.testing.assert_allclose(np.load(path).mean(1).mean(1), CAFFE_CHANNEL_MEAN_BGR, atol=5e-6)


def test_pycaffe_equals_skimage_resize_with_manual_mean_subtraction() -> None:
    from skimage.transform import resize

    src = random_rgb(300, 451, 8)
    mu = np.array([100.0, 110.0, 120.0])
    x = pycaffe_preprocess(pil(src), channel_mean=mu)
    warped = resize(src / 255.0, (227, 227), order=1, mode="constant", anti_aliasing=False)  # old skimage defaults
    expected = warped[:, :, ::-1].transpose(2, 0, 1) * 255 - mu[:, None, None]
    np.testing.assert_allclose(x.double().numpy(), expected, atol=1e-4)  # float32 arithmetic as in caffe.io


def test_pycaffe_keeps_a_227x227_image_and_scales_it_through_float32() -> None:
    src = random_rgb(227, 227, 9)
    mu = np.array([104.0, 117.0, 123.0])
    x = pycaffe_preprocess(pil(src), channel_mean=mu)
    unit = (src / 255.0).astype(np.float32)  # caffe.io.load_image
    expected = (unit[:, :, ::-1].transpose(2, 0, 1) * np.float32(255)).astype(np.float64) - mu[:, None, None]
    assert np.array_equal(x.numpy(), expected.astype(np.float32))
    np.testing.assert_allclose(x.double().numpy(), chw_bgr(src) - mu[:, None, None], atol=1e-4)


def test_pycaffe_upscaling_blends_the_border_with_black_but_caffe_cpp_does_not() -> None:
    src = np.full((100, 100, 3), 255, dtype=np.uint8)
    src[99, 99] = 0  # not constant: caffe.io's constant-image shortcut does not apply
    x = caffe_preprocessor("pycaffe", mean=None)(pil(src))
    # Output pixel 0 samples input 0.5 * 100/227 - 0.5 < 0: weight 1 + that on pixel 0, the rest on black (cval 0).
    w = 0.5 + 50 / 227
    for c in range(3):
        assert float(x[c, 0, 0]) == pytest.approx(255 * w * w - CAFFE_CHANNEL_MEAN_BGR[c], abs=1e-3)
        assert float(x[c, 0, 113]) == pytest.approx(255 * w - CAFFE_CHANNEL_MEAN_BGR[c], abs=1e-3)
        assert float(x[c, 113, 113]) == pytest.approx(255 - CAFFE_CHANNEL_MEAN_BGR[c], abs=1e-3)
    assert np.array_equal(cpp_pixels(pil(src))[:, 0, 0], [255.0, 255.0, 255.0])  # OpenCV repeats the edge


def test_pycaffe_returns_a_constant_image_as_it_is() -> None:
    x = caffe_preprocessor("pycaffe", mean=None)(Image.new("RGB", (50, 60), (255, 255, 255)))
    for c in range(3):  # caffe.io.resize_image: "the image is a constant -- avoid divide by 0": no black border
        np.testing.assert_allclose(x[c].numpy(), 255 - CAFFE_CHANNEL_MEAN_BGR[c], atol=1e-4)


def test_pil_mode_is_pils_bilinear_warp_then_the_centre_crop() -> None:
    src = random_rgb(375, 500, 10)
    x = caffe_preprocessor("pil", mean=None)(pil(src))
    warped = np.asarray(pil(src).resize((256, 256), Image.Resampling.BILINEAR))
    expected = (chw_bgr(warped[CROP, CROP]) - MEAN_BGR[:, None, None]).astype(np.float32)
    assert np.array_equal(x.numpy(), expected)
    assert np.array_equal(caffe_preprocess(pil(src), mean_crop=caffe_mean_crop(None)).numpy(), expected)


def test_the_three_modes_differ_on_a_real_photo() -> None:
    import skimage.data

    photo = Image.fromarray(skimage.data.chelsea())  # 451x300
    x = {mode: caffe_preprocessor(mode, mean=None)(photo).double() for mode in CAFFE_PREPROCESSING}
    for a, b in itertools.combinations(CAFFE_PREPROCESSING, 2):
        assert float((x[a] - x[b]).abs().mean()) > 0.5, (a, b)
    # caffe_cpp and pil see the same field of view (warp to 256, crop 227) and differ by filtering only; pycaffe
    # warps the whole photo to 227 with no crop, so its pixels sit elsewhere.
    assert float((x["caffe_cpp"] - x["pil"]).abs().mean()) < 3
    assert float((x["caffe_cpp"] - x["pycaffe"]).abs().mean()) > 10


def test_caffe_cpp_on_the_king_penguin_matches_the_whole_opencv_pipeline() -> None:
    if not PENGUIN.is_file():
        pytest.skip(f"{PENGUIN} is absent")
    import cv2

    from ifmsan.steps.images import load_image

    bgr = cv2.imdecode(np.frombuffer(PENGUIN.read_bytes(), dtype=np.uint8), cv2.IMREAD_COLOR)  # as cv::imread
    assert bgr is not None
    warped = opencv_fixed_point(bgr, 256, 256)[CROP, CROP].astype(np.float64).transpose(2, 0, 1)
    x = caffe_preprocessor("caffe_cpp", mean=None)(load_image(str(PENGUIN))).double().numpy()
    # PIL and OpenCV both decode with libjpeg-turbo (bit-identical here); allow one decoder LSB elsewhere.
    assert np.abs(x - (warped - MEAN_BGR[:, None, None])).max() <= 1 + 1e-4


@pytest.mark.parametrize("mode", CAFFE_PREPROCESSING)
def test_preprocessors_pickle_and_give_the_same_tensor(mode: str) -> None:
    mean = np.random.default_rng(11).uniform(90, 130, size=(3, 256, 256))
    transform = caffe_preprocessor(mode, mean=mean)
    image = pil(random_rgb(240, 320, 12))
    assert torch.equal(pickle.loads(pickle.dumps(transform))(image), transform(image))


def test_unknown_mode_is_a_value_error_naming_it_and_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'opencv'.*caffe_cpp, pycaffe, pil"):
        caffe_preprocessor("opencv", mean=None)
    # checked before the mean file is read: a missing file does not hide the bad option
    with pytest.raises(ValueError, match=r"'PIL'.*allowed: caffe_cpp, pycaffe, pil"):
        build_bvlc_alexnet(weights=None, seed=0, mean_file=tmp_path / "absent.npy", preprocess="PIL")
    with pytest.raises(ValueError, match=r"None.*caffe_cpp"):
        build_bvlc_alexnet(weights=None, seed=0, mean_file=None, preprocess=None)  # type: ignore[arg-type]


def test_missing_opencv_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` now raises ImportError
    with pytest.raises(ImportError, match="opencv-python-headless"):
        caffe_preprocessor("caffe_cpp", mean=None)
    with pytest.raises(ImportError, match="opencv-python-headless"):
        caffe_cpp_preprocess(Image.new("RGB", (64, 64)), mean_crop=caffe_mean_crop(None))
    assert caffe_preprocessor("pil", mean=None)(Image.new("RGB", (64, 64))).shape == (3, 227, 227)


def test_default_net_uses_caffe_cpp_records_it_and_pickles() -> None:
    net = build_bvlc_alexnet(weights=None, seed=0, mean_file=None)
    image = pil(random_rgb(300, 400, 13))
    expected = caffe_preprocessor("caffe_cpp", mean=None)(image)
    assert net.weights_info["preprocess"] == "caffe_cpp"
    assert torch.equal(net.preprocess(image), expected)
    clone = pickle.loads(pickle.dumps(net))
    assert clone.weights_info["preprocess"] == "caffe_cpp"
    assert torch.equal(clone.preprocess(image), expected)


@pytest.mark.parametrize("mode", ["pycaffe", "pil"])
def test_net_records_and_applies_the_chosen_mode(tmp_path: Path, mode: str) -> None:
    mean = np.random.default_rng(14).uniform(90, 130, size=(3, 256, 256))
    np.save(tmp_path / "mean.npy", mean)
    net = build_bvlc_alexnet(weights=None, seed=0, mean_file=tmp_path / "mean.npy", preprocess=mode)
    assert net.weights_info["preprocess"] == mode and net.weights_info["mean_file"] == str(tmp_path / "mean.npy")
    image = pil(random_rgb(300, 400, 15))
    assert torch.equal(net.preprocess(image), caffe_preprocessor(mode, mean=mean)(image))
