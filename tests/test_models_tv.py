"""torchvision models as LayeredNets: cuts are exact, IFMs are what the original modules receive, weights resolve."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn

import ifmsan.models as models
from ifmsan.models.tv import TorchvisionNet


def original(arch: str, seed: int = 0) -> nn.Module:
    """The plain torchvision model built the way the test expects load() to build it (same seed)."""
    torch.manual_seed(seed)
    return torchvision.models.get_model(arch, weights=None).eval()


def module_inputs(
    model: nn.Module, paths: dict[str, str], x: torch.Tensor
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """What each named module of an untouched model receives (cloned before any in-place op), and its logits."""
    seen: dict[str, torch.Tensor] = {}

    def hook_for(name: str):
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:  # returns None: input left as it is
            seen.setdefault(name, args[0].detach().clone())

        return hook

    handles = [model.get_submodule(path).register_forward_pre_hook(hook_for(name)) for name, path in paths.items()]
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return seen, logits


def check_cuts(
    net: models.LayeredNet, x: torch.Tensor, *, all_pairs: bool | tuple[str, ...]
) -> dict[str, torch.Tensor]:
    """forward_from(L, ifms[L]) == forward(x) for every L, ifms_from(L) for every (or the named) L; returns the IFMs."""
    with torch.no_grad():
        ifms = net.ifms(x)
        logits = net(x)
        assert list(ifms) == list(net.ifm_layers)
        for i, layer in enumerate(net.ifm_layers):
            assert tuple(ifms[layer].shape[1:]) == net.ifm_shape(layer), layer
            given = ifms[layer].clone()
            assert torch.equal(net.forward_from(layer, given), logits), layer
            assert torch.equal(given, ifms[layer]), f"forward_from modified the IFM of {layer}"
            if all_pairs is True or (all_pairs and layer in all_pairs):
                later = net.ifms_from(layer, ifms[layer])
                assert list(later) == list(net.ifm_layers[i:])
                for name, value in later.items():
                    assert torch.equal(value, ifms[name]), (layer, name)
    return ifms


@pytest.fixture(scope="module")
def alexnet() -> models.LayeredNet:
    """torchvision:alexnet with seeded random weights."""
    return models.load("torchvision:alexnet")


def test_alexnet_names_cuts_and_module_inputs(alexnet: models.LayeredNet) -> None:
    assert alexnet.ifm_layers == (
        "conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5", "avgpool", "fc6", "fc7", "fc8",
    )  # fmt: skip
    assert alexnet.input_shape == (3, 224, 224)
    assert alexnet.ifm_shape("fc6") == (9216,) and alexnet.ifm_shape("avgpool") == (256, 6, 6)
    assert alexnet.class_names[145] == "king penguin"
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    ifms = check_cuts(alexnet, x, all_pairs=True)
    paths = {"conv1": "features.0", "pool1": "features.2", "conv2": "features.3", "pool2": "features.5",
             "conv3": "features.6", "conv4": "features.8", "conv5": "features.10", "pool5": "features.12",
             "avgpool": "avgpool", "fc6": "classifier.1", "fc7": "classifier.4", "fc8": "classifier.6"}  # fmt: skip
    expected, logits = module_inputs(original("alexnet"), paths, x)
    for name in paths:
        assert torch.equal(ifms[name], expected[name]), name
    with torch.no_grad():
        assert torch.equal(alexnet(x), logits)
    assert alexnet.weights_info["trained"] is False and alexnet.weights_info["sha256"] is None


def test_alexnet_default_preprocessing(alexnet: models.LayeredNet) -> None:
    array = np.random.default_rng(0).integers(0, 256, size=(224, 224, 3), dtype=np.uint8)
    x = alexnet.preprocess(Image.fromarray(array))  # 224x224: resize 256 then crop 224 of the upscaled image
    assert x.dtype == torch.float32 and tuple(x.shape) == (3, 224, 224)
    flat = alexnet.preprocess(Image.new("RGB", (300, 260), (255, 0, 128)))
    expected = [(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225]
    for c in range(3):
        np.testing.assert_allclose(flat[c].numpy(), expected[c], atol=1e-5)


def test_resnet18_blocks_are_exact_cuts() -> None:
    net = models.load("torchvision:resnet18", seed=2)
    expected_layers = ["conv1", "bn1", "relu", "maxpool"]
    for stage in (1, 2, 3, 4):
        expected_layers += [f"layer{stage}", f"layer{stage}.1"]
    assert list(net.ifm_layers) == [*expected_layers, "avgpool", "fc"]
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    ifms = check_cuts(net, x, all_pairs=("relu", "layer2.1", "avgpool"))
    paths = {name: name for name in net.ifm_layers if name != "conv1"}
    expected, logits = module_inputs(original("resnet18", seed=2), paths, x)
    for name in paths:
        assert torch.equal(ifms[name], expected[name]), name  # relu is in-place in torchvision: cloned in the hook
    with torch.no_grad():
        assert torch.equal(net(x), logits)
    assert net.ifm_shape("layer4.1") == (512, 7, 7) and net.ifm_shape("fc") == (512,)


@pytest.mark.slow
def test_vgg11_caffe_style_names_and_cuts() -> None:
    net = models.load("torchvision:vgg11")
    assert net.ifm_layers == (
        "conv1_1", "pool1", "conv2_1", "pool2", "conv3_1", "conv3_2", "pool3", "conv4_1", "conv4_2", "pool4",
        "conv5_1", "conv5_2", "pool5", "avgpool", "fc6", "fc7", "fc8",
    )  # fmt: skip
    assert net.ifm_shape("fc6") == (512 * 7 * 7,)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    ifms = check_cuts(net, x, all_pairs=False)
    expected, _ = module_inputs(
        original("vgg11"), {"conv3_2": "features.8", "pool4": "features.15", "fc7": "classifier.3"}, x
    )
    for name, value in expected.items():
        assert torch.equal(ifms[name], value), name


def test_mobilenet_v3_small_cuts_match_the_original() -> None:
    net = models.load("torchvision:mobilenet_v3_small", seed=1)
    assert net.ifm_layers[0] == "features" and "avgpool" in net.ifm_layers and "classifier" in net.ifm_layers
    assert {f"features.{i}" for i in range(1, 13)} <= set(net.ifm_layers)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    ifms = check_cuts(net, x, all_pairs=False)
    paths = {name: name for name in ("features.4", "features.9", "avgpool", "classifier")}
    expected, logits = module_inputs(original("mobilenet_v3_small", seed=1), paths, x)
    for name in paths:
        assert torch.equal(ifms[name], expected[name]), name
    with torch.no_grad():
        assert torch.equal(net(x), logits)


class Toy(nn.Module):
    """In-place operations of every kind right at cut points, a residual, a shape-dependent reshape, a buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Hardtanh(inplace=True))
        self.head = nn.Linear(4 * 8 * 8, 5)
        self.register_buffer("offset", torch.full((4, 1, 1), 0.25))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.act(x)
        y = self.block(x)
        x = F.relu(x + y, inplace=True)
        x = F.hardtanh(x, -0.5, 0.5, True)
        x.add_(self.offset)
        return self.head(x.reshape(x.shape[0], -1))


def test_in_place_operations_never_touch_ifms() -> None:
    torch.manual_seed(0)
    toy = Toy().eval()
    reference = Toy().eval()
    reference.load_state_dict(toy.state_dict())
    net = TorchvisionNet(name="toy", model=toy, class_names=tuple("abcde"), weights_info={}, input_shape=(3, 8, 8),
                         preprocess=lambda image: torch.zeros(3, 8, 8), rename=None)  # fmt: skip
    assert net.ifm_layers == (
        "stem",
        "act",
        "block",
        "head",
    )  # the residual hides block.1; relu/hardtanh are functional
    x = torch.randn(2, 3, 8, 8)
    ifms = check_cuts(net, x, all_pairs=True)
    expected, logits = module_inputs(reference, {"act": "act", "block": "block", "head": "head"}, x.clone())
    for name, value in expected.items():
        assert torch.equal(ifms[name], value), name
    with torch.no_grad():
        assert torch.equal(net(x), logits)


def test_to_rebinds_buffers_read_by_the_graph() -> None:
    torch.manual_seed(0)
    net = TorchvisionNet(name="toy", model=Toy().eval(), class_names=tuple("abcde"), weights_info={},
                         input_shape=(3, 8, 8), preprocess=lambda image: torch.zeros(3, 8, 8), rename=None)  # fmt: skip
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = net.model(x.clone())
        net.double()
        net.model.offset.fill_(0.25)  # the model's (new, float64) buffer is the one the stages must read
        out = net(x.double())
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, expected.double(), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        net.model.offset.fill_(1.0)
        moved = net(x.double())
        assert not torch.allclose(moved, out)


def test_weights_names_are_passed_to_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    build = torchvision.models.get_model

    def fake_get_model(arch: str, *, weights: object = None) -> nn.Module:
        calls.append(weights)
        return build(arch, weights=None)  # no download here: the weights object is what is checked

    monkeypatch.setattr(torchvision.models, "get_model", fake_get_model)
    enum = torchvision.models.MobileNet_V3_Large_Weights
    net = models.load("torchvision:mobilenet_v3_large", weights="DEFAULT")
    assert calls[-1] is enum.IMAGENET1K_V2 is enum.DEFAULT
    assert net.weights_info["source"] == enum.IMAGENET1K_V2.url and net.weights_info["trained"] is True
    assert net.class_names == tuple(enum.IMAGENET1K_V2.meta["categories"])
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, size=(300, 280, 3), dtype=np.uint8))
    assert torch.equal(net.preprocess(image), enum.IMAGENET1K_V2.transforms()(image))  # resize 232, crop 224
    models.load("torchvision:mobilenet_v3_large", weights="IMAGENET1K_V1")
    assert calls[-1] is enum.IMAGENET1K_V1
    with pytest.raises(ValueError, match=r"IMAGENET1K_V9.*DEFAULT, IMAGENET1K_V1, IMAGENET1K_V2"):
        models.load("torchvision:mobilenet_v3_large", weights="IMAGENET1K_V9")
    assert len(calls) == 2


def test_local_state_dict_weights(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(original("resnet18", seed=9).state_dict(), path)
    net = models.load("torchvision:resnet18", weights=path)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(net(x), original("resnet18", seed=9)(x))
    assert net.weights_info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert net.weights_info["trained"] is True and net.weights_info["source"] == str(path)
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"bad\.pth"):
        models.load("torchvision:resnet18", weights=tmp_path / "bad.pth")
    with pytest.raises(FileNotFoundError, match=r"absent\.pth"):
        models.load("torchvision:resnet18", weights=str(tmp_path / "absent.pth"))


def test_random_weights_are_seeded_and_leave_global_rng_alone() -> None:
    state = torch.get_rng_state()
    a = models.load("torchvision:squeezenet1_1", seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    b = models.load("torchvision:squeezenet1_1", seed=4)
    c = models.load("torchvision:squeezenet1_1", seed=5)
    weights = [net.model.features[0].weight for net in (a, b, c)]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])
    torch.testing.assert_close(weights[0], original("squeezenet1_1", seed=4).features[0].weight, rtol=0, atol=0)


def test_inception_v3_uses_299_input(monkeypatch: pytest.MonkeyPatch) -> None:
    build = torchvision.models.get_model
    # squeezenet (adaptive pooling, cheap) stands in for the slow-to-build Inception network itself
    monkeypatch.setattr(
        torchvision.models, "get_model", lambda arch, *, weights=None: build("squeezenet1_1", weights=None)
    )
    net = models.load("torchvision:inception_v3")
    assert net.input_shape == (3, 299, 299) and net.ifm_shape(net.ifm_layers[0]) == (3, 299, 299)
    assert tuple(net.preprocess(Image.new("RGB", (400, 350), (10, 20, 30))).shape) == (3, 299, 299)
