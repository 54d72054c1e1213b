"""bvlc_alexnet and alexnet_mini against independent expectations: the paper's sizes, Caffe's LRN, raw blobs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from caffemodel_writer import bvlc_random_blobs, write_caffemodel  # tests/ is on sys.path: pytest's rootdir conftest
from PIL import Image

import ifmsan.models as models
from ifmsan.models.fused import CaffeLRN, CaffeMaxPool, lrn_reference

# The IFM sizes of the paper's Table 1.
BVLC_IFM_SHAPES = {
    "conv1": (3, 227, 227), "norm1": (96, 55, 55), "pool1": (96, 55, 55), "conv2": (96, 27, 27),
    "norm2": (256, 27, 27), "pool2": (256, 27, 27), "conv3": (256, 13, 13), "conv4": (384, 13, 13),
    "conv5": (384, 13, 13), "pool5": (256, 13, 13), "fc6": (9216,), "fc7": (4096,), "fc8": (4096,),
}  # fmt: skip
TABLE1_SIZES = [154587, 290400, 290400, 69984, 186624, 186624, 43264, 64896, 64896, 43264, 9216, 4096, 4096]


def naive_caffe_lrn(x: torch.Tensor, *, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
    """Caffe's ACROSS_CHANNELS LRN, channel by channel: x / (k + alpha/size * sum of squares in the window)^beta."""
    out = torch.empty_like(x)
    channels = x.shape[1]
    for c in range(channels):
        lo, hi = max(0, c - size // 2), min(channels, c + size // 2 + 1)  # zero padding = leaving channels out
        scale = k + alpha / size * (x[:, lo:hi] ** 2).sum(dim=1)
        out[:, c] = x[:, c] / scale**beta
    return out


def reference_forward(
    blobs: dict[str, list[np.ndarray]], x: torch.Tensor
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """BVLC deploy.prototxt written out with torch.nn.functional from the raw Caffe blobs: (IFMs, logits)."""
    w = {name: [torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in arrays] for name, arrays in blobs.items()}
    ifms = {"conv1": x}
    ifms["norm1"] = F.relu(F.conv2d(x, *w["conv1"], stride=4))
    ifms["pool1"] = naive_caffe_lrn(ifms["norm1"])
    ifms["conv2"] = F.max_pool2d(ifms["pool1"], 3, 2, ceil_mode=True)
    ifms["norm2"] = F.relu(F.conv2d(ifms["conv2"], *w["conv2"], padding=2, groups=2))
    ifms["pool2"] = naive_caffe_lrn(ifms["norm2"])
    ifms["conv3"] = F.max_pool2d(ifms["pool2"], 3, 2, ceil_mode=True)
    ifms["conv4"] = F.relu(F.conv2d(ifms["conv3"], *w["conv3"], padding=1))
    ifms["conv5"] = F.relu(F.conv2d(ifms["conv4"], *w["conv4"], padding=1, groups=2))
    ifms["pool5"] = F.relu(F.conv2d(ifms["conv5"], *w["conv5"], padding=1, groups=2))
    ifms["fc6"] = F.max_pool2d(ifms["pool5"], 3, 2, ceil_mode=True).reshape(x.shape[0], -1)
    ifms["fc7"] = F.relu(F.linear(ifms["fc6"], *w["fc6"]))
    ifms["fc8"] = F.relu(F.linear(ifms["fc7"], *w["fc7"]))
    return ifms, F.linear(ifms["fc8"], *w["fc8"])


def assert_matches_reference(net: models.LayeredNet, blobs: dict[str, list[np.ndarray]], x: torch.Tensor) -> None:
    """Every IFM and the logits of the net equal the functional reference's."""
    with torch.no_grad():
        expected_ifms, expected_logits = reference_forward(blobs, x)
        got = net.ifms(x)
        logits = net(x)
    assert list(got) == list(expected_ifms)
    for name, expected in expected_ifms.items():
        scale = float(expected.abs().max()) or 1.0
        torch.testing.assert_close(got[name], expected, rtol=1e-4, atol=1e-5 * scale, msg=f"IFM {name}")
    torch.testing.assert_close(logits, expected_logits, rtol=1e-4, atol=1e-5 * float(expected_logits.abs().max()))


@pytest.fixture(scope="module")
def bvlc() -> models.LayeredNet:
    """One randomly initialised bvlc_alexnet for the read-only tests."""
    return models.load("bvlc_alexnet")


@pytest.fixture(scope="module")
def mini() -> models.LayeredNet:
    """One randomly initialised alexnet_mini for the read-only tests."""
    return models.load("alexnet_mini")


def test_torch_lrn_equals_caffe_lrn() -> None:
    x = torch.randn(2, 11, 4, 3, dtype=torch.float64) * 150  # large, so the scale term is far from k
    torch.testing.assert_close(
        torch.nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0)(x), naive_caffe_lrn(x), rtol=1e-12, atol=0
    )
    assert not torch.allclose(naive_caffe_lrn(x), x, rtol=1e-2)
    # the model's formulation (sqrt instead of pow) is the same function: float64 agrees to rounding
    torch.testing.assert_close(lrn_reference(x, size=5, alpha=1e-4, k=1.0), naive_caffe_lrn(x), rtol=1e-12, atol=0)
    for size in (1, 2, 3, 4, 7):  # even sizes pad size//2 before and (size-1)//2 after, as nn.LocalResponseNorm
        expected = torch.nn.LocalResponseNorm(size, 1e-4, 0.75, 1.0)(x)
        torch.testing.assert_close(lrn_reference(x, size=size, alpha=1e-4, k=1.0), expected, rtol=1e-12, atol=0)


@pytest.fixture()
def fused_kernels() -> bool:
    """Load the fused kernels (where numba is installed) so that calls of any size take the fused path."""
    from ifmsan.models import fused

    return fused._compiled_lrn() is not None and fused._compiled_pool() is not None


@pytest.mark.slow
def test_small_calls_do_not_load_numba_until_a_large_one_does() -> None:
    code = (
        "import sys, torch; from ifmsan.models.fused import CaffeLRN, CaffeMaxPool, FUSED_MIN_ELEMENTS;"
        "lrn, pool = CaffeLRN(5, alpha=1e-4, beta=0.75, k=1.0), CaffeMaxPool(3, 2, ceil_mode=True);"
        "small = torch.rand(1, 8, 13, 13); torch.inference_mode().__enter__(); lrn(small); pool(small);"
        "print('numba' in sys.modules);"
        "lrn(torch.rand(FUSED_MIN_ELEMENTS // (8 * 13 * 13) + 1, 8, 13, 13)); print('numba' in sys.modules)"
    )
    import subprocess
    import sys as _sys

    env = {k: v for k, v in __import__("os").environ.items() if k != "IFMSAN_NO_NUMBA"}
    lines = subprocess.run(
        [_sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    assert lines[0] == "False"
    pytest.importorskip("numba")
    assert lines[1] == "True"


def activation_like(shape: tuple[int, ...], *, scale: float, seed: int) -> torch.Tensor:
    """Post-ReLU float32 maps: about half zeros, the rest spread over a few binades, one negative sample."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(*shape, generator=generator) * scale)
    x.view(-1)[0] = -scale  # LRN does not require non-negative inputs
    return x


@pytest.mark.parametrize(
    ("shape", "scale"),
    [
        ((3, 96, 55, 55), 50.0),
        ((2, 256, 27, 27), 1.0),
        ((4, 7, 5, 4), 1e4),
        ((2, 3, 2, 2), 1e-20),
        ((5, 1, 3, 3), 300.0),
    ],
)
def test_model_lrn_is_bit_identical_to_its_reference_and_close_to_torch(
    shape: tuple[int, ...], scale: float, fused_kernels: bool
) -> None:
    x = activation_like(shape, scale=scale, seed=len(shape) + int(scale))
    lrn = CaffeLRN(5, alpha=1e-4, beta=0.75, k=1.0)
    with torch.inference_mode():
        got = lrn(x)  # the fused CPU kernel when numba is installed
    expected = lrn_reference(x, size=5, alpha=1e-4, k=1.0)
    assert got.dtype == torch.float32 and got.shape == x.shape
    assert torch.equal(got.view(torch.int32), expected.view(torch.int32))
    torch.testing.assert_close(got, torch.nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0)(x), rtol=1e-6, atol=0)
    torch.testing.assert_close(got.double(), naive_caffe_lrn(x.double()), rtol=1e-6, atol=0)


def test_model_lrn_does_not_depend_on_threads_or_grad_mode(fused_kernels: bool) -> None:
    x = activation_like((6, 16, 9, 9), scale=80.0, seed=3)
    lrn = CaffeLRN(5, alpha=1e-4, beta=0.75, k=1.0)
    threads = torch.get_num_threads()
    outputs = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            with torch.no_grad():
                outputs.append(lrn(x))
    finally:
        torch.set_num_threads(threads)
    leaf = x.clone().requires_grad_(True)
    trained = lrn(leaf)  # the torch reference, with autograd
    trained.sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0
    for out in outputs[1:] + [trained.detach()]:
        assert torch.equal(out, outputs[0])


def test_model_lrn_gradient_matches_finite_differences() -> None:
    x = activation_like((1, 6, 2, 2), scale=200.0, seed=5).double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: lrn_reference(t, size=5, alpha=1e-4, k=1.0), (x,))


def test_model_lrn_refuses_other_betas() -> None:
    with pytest.raises(ValueError, match="beta=0.5"):
        CaffeLRN(5, alpha=1e-4, beta=0.5, k=1.0)


def test_bvlc_layers_sizes_and_parameters(bvlc: models.LayeredNet) -> None:
    assert bvlc.name == "bvlc_alexnet"
    assert bvlc.ifm_layers == tuple(BVLC_IFM_SHAPES)
    assert bvlc.input_shape == (3, 227, 227)
    assert {name: bvlc.ifm_shape(name) for name in bvlc.ifm_layers} == BVLC_IFM_SHAPES
    assert [int(np.prod(bvlc.ifm_shape(name))) for name in bvlc.ifm_layers] == TABLE1_SIZES
    assert sum(p.numel() for p in bvlc.parameters()) == 60_965_224
    assert not bvlc.training
    with torch.no_grad():
        ifms = bvlc.ifms(torch.randn(1, 3, 227, 227))
    assert {name: tuple(t.shape[1:]) for name, t in ifms.items()} == BVLC_IFM_SHAPES


def test_pools_round_up_like_caffe_and_sizes_stay(bvlc: models.LayeredNet) -> None:
    pools = [bvlc.pool1, bvlc.pool2, bvlc.pool5]
    assert all(pool.ceil_mode and pool.kernel_size == 3 and pool.stride == 2 for pool in pools)
    # Caffe: out = ceil((in - 3) / 2) + 1 -> 55 -> 27 -> 13 -> 6, the sizes the paper's Table 1 lists.
    assert [int(np.ceil((n - 3) / 2)) + 1 for n in (55, 27, 13)] == [27, 13, 6]
    assert bvlc.ifm_shape("conv2")[1:] == (27, 27) and bvlc.ifm_shape("conv3")[1:] == (13, 13)
    assert bvlc.ifm_shape("fc6") == (256 * 6 * 6,)


def test_imagenet_class_names(bvlc: models.LayeredNet) -> None:
    assert len(bvlc.class_names) == 1000
    assert bvlc.class_names[145] == "king penguin"
    assert bvlc.class_names[144] == "pelican" and bvlc.class_names[146] == "albatross"
    assert bvlc.class_names[281] == "tabby"


def test_shipped_class_names_are_torchvisions() -> None:
    """The class-name file the package ships (so jobs need not import torchvision.models) is torchvision's list."""
    from torchvision.models import AlexNet_Weights

    from ifmsan.models.caffe_alexnet import imagenet_class_names

    assert imagenet_class_names() == tuple(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])


@pytest.mark.slow
def test_sweep_command_imports_neither_torchvision_models_nor_other_verbs() -> None:
    """A DAG job pays only for what it uses: parsing `ifmsan sweep` and building bvlc_alexnet load no torchvision
    models, no attack code and no plotting library."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from ifmsan.cli import build_parser, chosen_verb\n"
        "build_parser(chosen_verb(['sweep', '--help']))\n"
        "from ifmsan import models\n"
        "models.load('bvlc_alexnet', weights=None, seed=0)\n"
        "heavy = [m for m in ('torchvision.models', 'ifmsan.attacks', 'matplotlib', 'seaborn', 'torch._dynamo')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_default_init_is_seeded_kaiming_and_ignores_global_rng() -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = models.load("alexnet_mini", seed=0)
    assert torch.equal(torch.get_rng_state(), state), "loading must not consume the global RNG"
    torch.manual_seed(999)
    b = models.load("alexnet_mini")
    c = models.load("alexnet_mini", seed=1)
    for (name, pa), pb, pc in zip(
        a.state_dict().items(), b.state_dict().values(), c.state_dict().values(), strict=False
    ):
        assert torch.equal(pa, pb), name
        if name.endswith("weight"):
            assert not torch.equal(pa, pc), name
    for name in ("conv1", "conv2", "fc6"):
        layer = getattr(a, name)
        fan_in = layer.weight[0].numel()
        assert abs(float(layer.weight.detach().std()) / np.sqrt(2.0 / fan_in) - 1) < 0.05, name
        assert float(layer.weight.detach().mean()) == pytest.approx(0.0, abs=0.05 * np.sqrt(2.0 / fan_in))
        assert not layer.bias.any()
    assert a.weights_info["trained"] is False and a.weights_info["stand_in"] is True


def test_alexnet_mini_geometry(mini: models.LayeredNet) -> None:
    from ifmsan.steps.minidata import CLASS_NAMES

    assert mini.ifm_layers == tuple(BVLC_IFM_SHAPES)
    assert mini.class_names == tuple(CLASS_NAMES)
    widths = {"conv1": 3, "norm1": 24, "pool1": 24, "conv2": 24, "norm2": 64, "pool2": 64, "conv3": 64,
              "conv4": 96, "conv5": 96, "pool5": 64}  # fmt: skip
    for name, channels in widths.items():
        assert mini.ifm_shape(name) == (channels, *BVLC_IFM_SHAPES[name][1:]), name
    assert mini.ifm_shape("fc6") == (64 * 36,) and mini.ifm_shape("fc7") == (512,) and mini.ifm_shape("fc8") == (512,)
    assert mini.conv2.groups == mini.conv4.groups == mini.conv5.groups == 2
    with torch.no_grad():
        assert mini(torch.zeros(3, 3, 227, 227)).shape == (3, len(CLASS_NAMES))
    assert "stand-in" in str(mini.weights_info["note"])


def mini_blobs(seed: int) -> dict[str, list[np.ndarray]]:
    """Random Caffe-shaped blobs for alexnet_mini's widths (grouped convs store in/2 input channels)."""
    rng = np.random.default_rng(seed)
    shapes = {"conv1": (24, 3, 11, 11), "conv2": (64, 12, 5, 5), "conv3": (96, 64, 3, 3), "conv4": (96, 48, 3, 3),
              "conv5": (64, 48, 3, 3), "fc6": (512, 2304), "fc7": (512, 512), "fc8": (10, 512)}  # fmt: skip
    return {
        name: [rng.standard_normal(shape).astype(np.float32) * 0.05, rng.standard_normal(shape[0]).astype(np.float32)]
        for name, shape in shapes.items()
    }


@pytest.mark.parametrize("form", ["v1", "v2"])
def test_caffe_blobs_copy_into_grouped_layers(tmp_path: Path, form: str) -> None:
    from ifmsan.models.caffe import read_caffemodel

    blobs = mini_blobs(4)
    path = write_caffemodel(tmp_path / "mini.caffemodel", blobs, form=form, old_dims=form == "v1", packed=form == "v2")
    net = models.load("alexnet_mini")
    net.load_caffe_blobs(read_caffemodel(path), path=path)
    x = torch.randn(2, 3, 227, 227, generator=torch.Generator().manual_seed(0)) * 50
    assert_matches_reference(net, blobs, x)


@pytest.mark.slow
@pytest.mark.parametrize("form", ["v1", "v2"])
def test_bvlc_caffemodel_matches_functional_reference(tmp_path: Path, form: str) -> None:
    blobs = bvlc_random_blobs(7)
    path = write_caffemodel(tmp_path / "bvlc.caffemodel", blobs, form=form, old_dims=form == "v1", packed=form == "v1")
    net = models.load("bvlc_alexnet", weights=path)
    info = net.weights_info
    assert info["trained"] is True and info["stand_in"] is False and info["source"] == str(path)
    assert info["sha1"] == hashlib.sha1(path.read_bytes()).hexdigest()
    x = torch.randn(2, 3, 227, 227, generator=torch.Generator().manual_seed(1)) * 60
    assert_matches_reference(net, blobs, x)


def test_bvlc_rejects_caffemodels_of_other_shapes(tmp_path: Path) -> None:
    path = write_caffemodel(tmp_path / "mini.caffemodel", mini_blobs(0))
    with pytest.raises(ValueError, match=r"conv1.*\(24, 3, 11, 11\)"):
        models.load("bvlc_alexnet", weights=path)
    with pytest.raises(FileNotFoundError, match="absent.caffemodel"):
        models.load("bvlc_alexnet", weights=tmp_path / "absent.caffemodel")


def rgb_image(height: int, width: int, seed: int) -> tuple[Image.Image, np.ndarray]:
    """A random RGB PIL image and its uint8 array."""
    array = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(array, "RGB"), array


def test_bvlc_preprocess_with_mean_file_by_hand(tmp_path: Path) -> None:
    image, array = rgb_image(256, 256, 0)  # already 256x256: the warp leaves it as it is
    mean = np.random.default_rng(1).uniform(90, 130, size=(3, 256, 256))
    np.save(tmp_path / "mean.npy", mean)
    net = models.load("bvlc_alexnet", mean_file=tmp_path / "mean.npy")
    x = net.preprocess(image)
    assert x.dtype == torch.float32 and tuple(x.shape) == (3, 227, 227)
    # BGR: channel 0 is blue (RGB index 2); crop starts at 14; the mean is cropped the same way.
    for c, y, xx in [(0, 0, 0), (1, 5, 200), (2, 226, 226), (0, 113, 7)]:
        expected = float(array[14 + y, 14 + xx, 2 - c]) - mean[c, 14 + y, 14 + xx]
        assert float(x[c, y, xx]) == pytest.approx(expected, abs=1e-4)
    whole = np.stack([array[14:241, 14:241, 2 - c] - mean[c, 14:241, 14:241] for c in range(3)])
    np.testing.assert_allclose(x.numpy(), whole, atol=1e-4)


def test_bvlc_preprocess_channel_means_and_warp(bvlc: models.LayeredNet) -> None:
    image = Image.new("RGB", (500, 333), (200, 100, 50))  # constant colour: any bilinear warp keeps it
    x = bvlc.preprocess(image)
    assert tuple(x.shape) == (3, 227, 227)
    expected = [50 - 104.00699, 100 - 116.66877, 200 - 122.67891]  # B, G, R
    for c in range(3):
        np.testing.assert_allclose(x[c].numpy(), expected[c], atol=1e-4)
    grey = bvlc.preprocess(Image.new("L", (300, 300), 128))
    np.testing.assert_allclose(grey[2].numpy(), 128 - 122.67891, atol=1e-4)


def test_mean_file_validation(tmp_path: Path) -> None:
    np.save(tmp_path / "small.npy", np.zeros((3, 224, 224)))
    with pytest.raises(ValueError, match=r"small\.npy.*\(3, 256, 256\)"):
        models.load("bvlc_alexnet", mean_file=tmp_path / "small.npy")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="objects.npy"):
        models.load("bvlc_alexnet", mean_file=tmp_path / "objects.npy")
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        models.load("bvlc_alexnet", mean_file=tmp_path / "missing.npy")


def test_alexnet_mini_preprocess_by_hand(mini: models.LayeredNet) -> None:
    image, array = rgb_image(227, 227, 3)
    x = mini.preprocess(image)
    assert x.dtype == torch.float32 and tuple(x.shape) == (3, 227, 227)
    for c, y, xx in [(0, 0, 0), (1, 100, 3), (2, 226, 226)]:
        assert float(x[c, y, xx]) == pytest.approx(array[y, xx, c] / 127.5 - 1, abs=1e-6)  # RGB order kept
    extremes = mini.preprocess(Image.new("RGB", (400, 90), (0, 255, 0)))
    assert tuple(extremes.shape) == (3, 227, 227)
    assert float(extremes[0].max()) == -1.0 and float(extremes[1].min()) == 1.0


def test_alexnet_mini_state_dict_round_trip(tmp_path: Path) -> None:
    source = models.load("alexnet_mini", seed=5)
    path = tmp_path / "alexnet_mini.pt"
    torch.save(source.state_dict(), path)
    net = models.load("alexnet_mini", weights=path)
    x = torch.randn(2, 3, 227, 227)
    with torch.no_grad():
        assert torch.equal(net(x), source(x))
    info = net.weights_info
    assert info["trained"] is True and info["stand_in"] is True and info["source"] == str(path)
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "stand-in" in str(info["note"]) and "synthetic shapes" in str(info["note"])


def test_alexnet_mini_rejects_mismatched_state_dicts(tmp_path: Path) -> None:
    state = models.load("alexnet_mini").state_dict()
    missing = {k: v for k, v in state.items() if k != "fc7.bias"}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match=r"missing\.pt.*fc7\.bias"):
        models.load("alexnet_mini", weights=tmp_path / "missing.pt")
    torch.save({**state, "fc8.weight": torch.zeros(3, 512)}, tmp_path / "shape.pt")
    with pytest.raises(ValueError, match=r"shape\.pt.*fc8\.weight"):
        models.load("alexnet_mini", weights=tmp_path / "shape.pt")
    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp_path / "extra.pt")
    with pytest.raises(ValueError, match=r"extra\.pt.*extra\.weight"):
        models.load("alexnet_mini", weights=tmp_path / "extra.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"junk\.pt"):
        models.load("alexnet_mini", weights=tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match=r"nothing\.pt"):
        models.load("alexnet_mini", weights=tmp_path / "nothing.pt")


@pytest.mark.parametrize("ceil_mode", [True, False])
@pytest.mark.parametrize(("kernel", "stride"), [(3, 2), (2, 2), (3, 1), (3, 3), (1, 1)])
def test_model_max_pool_equals_torch_bit_for_bit(
    kernel: int, stride: int, ceil_mode: bool, fused_kernels: bool
) -> None:
    pool = CaffeMaxPool(kernel_size=kernel, stride=stride, ceil_mode=ceil_mode)
    generator = torch.Generator().manual_seed(kernel * 10 + stride)
    for shape in [(2, 5, 55, 55), (3, 4, 13, 13), (1, 2, 6, 7), (2, 3, 3, 4), (1, 1, kernel, kernel + 5)]:
        x = torch.randn(*shape, generator=generator)  # negatives too: the max of an all-negative window
        x.view(-1)[1] = float("nan")  # torch propagates NaN; so must the kernel
        with torch.inference_mode():
            got = pool(x)
        expected = F.max_pool2d(x, kernel, stride, ceil_mode=ceil_mode)
        assert got.shape == expected.shape, (shape, kernel, stride, ceil_mode)
        assert torch.equal(got.view(torch.int32), expected.view(torch.int32)), (shape, kernel, stride, ceil_mode)


def test_model_max_pool_keeps_autograd_and_torch_semantics_elsewhere() -> None:
    pool = CaffeMaxPool(kernel_size=3, stride=2, ceil_mode=True)
    leaf = torch.randn(1, 2, 7, 7, requires_grad=True)
    pool(leaf).sum().backward()  # torch's pooling: one gradient per output, at its window's maximum
    assert leaf.grad is not None and float(leaf.grad.sum()) == 2 * 3 * 3
    x = torch.randn(1, 2, 7, 7, dtype=torch.float64)
    with torch.inference_mode():
        assert torch.equal(pool(x), F.max_pool2d(x, 3, 2, ceil_mode=True))
