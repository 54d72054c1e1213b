"""timm models as LayeredNets: block-level IFMs, exact cuts, what the original modules receive, weights resolve."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from test_models_tv import check_cuts, module_inputs
from torch import nn

import ifmsan.models as models
from ifmsan.models import timm_net


def original(arch: str, seed: int = 0) -> nn.Module:
    """The plain timm model built the way load() should build it (same seed), untouched by ifmsan."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return timm.create_model(arch, pretrained=False).eval()


def blocks(counts: list[int], prefix: str = "blocks") -> list[str]:
    """Block paths of a timm net whose stage i has counts[i] blocks: blocks.0.0, blocks.1.0, blocks.1.1, ..."""
    return [f"{prefix}.{stage}.{block}" for stage, count in enumerate(counts) for block in range(count)]


CASES = {
    # EfficientNet-Lite0 stages (1, 2, 2, 3, 3, 4, 1) blocks (Tan & Le 2019, Table 1 without SE)
    "tf_efficientnet_lite0": [
        "conv_stem", "bn1", *blocks([1, 2, 2, 3, 3, 4, 1]), "conv_head", "bn2", "global_pool", "classifier",
    ],
    "resnet18": [
        "conv1", "bn1", "act1", "maxpool", *[f"layer{s}.{b}" for s in (1, 2, 3, 4) for b in (0, 1)], "global_pool", "fc",
    ],
    # MobileNetV3-Small: stages of (1, 2, 3, 2, 3, 1) blocks (Howard et al. 2019, Table 2), then the conv head
    "mobilenetv3_small_100": [
        "conv_stem", "bn1", *blocks([1, 2, 3, 2, 3, 1]), "global_pool", "conv_head", "norm_head", "act2", "flatten",
        "classifier",
    ],
}  # fmt: skip


@pytest.mark.parametrize("arch", list(CASES))
@pytest.mark.slow
def test_block_inputs_are_exact_cuts_and_what_the_modules_receive(arch: str) -> None:
    net = models.load(f"timm:{arch}", seed=3)
    assert list(net.ifm_layers) == CASES[arch]
    assert net.input_shape == (3, 224, 224) and len(net.class_names) == 1000
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    ifms = check_cuts(net, x, all_pairs=(net.ifm_layers[1], net.ifm_layers[len(net.ifm_layers) // 2]))
    reference = original(arch, seed=3)
    paths = {name: name for name in net.ifm_layers[1:]}
    expected, logits = module_inputs(reference, paths, x)
    for name in paths:
        assert torch.equal(ifms[name], expected[name]), name
    with torch.no_grad():
        assert torch.equal(net(x), logits)  # the chain of stages is timm's own forward, bit for bit
    assert net.weights_info["trained"] is False and net.weights_info["sha256"] is None


def test_shapes_follow_the_architecture() -> None:
    net = models.load("timm:tf_efficientnet_lite0")
    # stem stride 2: 32 x 112 x 112; stage strides (1, 2, 2, 2, 1, 2, 1) -> 7 x 7 at the head; 1280 features
    assert net.ifm_shape("bn1") == (32, 112, 112)
    assert net.ifm_shape("blocks.1.0") == (16, 112, 112) and net.ifm_shape("blocks.2.0") == (24, 56, 56)
    assert net.ifm_shape("conv_head") == (320, 7, 7) and net.ifm_shape("classifier") == (1280,)


def test_seed_decides_the_random_weights() -> None:
    a, b, c = (models.load("timm:resnet18", seed=s) for s in (1, 1, 2))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not torch.equal(a.state_dict()["model.conv1.weight"], c.state_dict()["model.conv1.weight"])


def test_local_state_dict_loads_and_is_checked(tmp_path) -> None:
    source = original("resnet18", seed=7)
    path = tmp_path / "resnet18.pt"
    torch.save(source.state_dict(), path)
    net = models.load("timm:resnet18", weights=path)
    for key, value in source.state_dict().items():
        assert torch.equal(net.model.state_dict()[key], value), key
    assert net.weights_info["trained"] is True and net.weights_info["source"] == str(path)
    state = source.state_dict()
    state["fc.weight"] = state["fc.weight"][:10]
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"'fc\.weight' has shape \(10, 512\), the network expects \(1000, 512\)"):
        models.load("timm:resnet18", weights=tmp_path / "bad.pt")


class RunsCode:
    """Pickles as a call to os.getcwd: what a malicious "state dict" holds instead of tensors."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        import os

        return (os.getcwd, ())


def test_a_pickle_with_code_is_refused_without_relaying_torchs_advice(tmp_path, capsys) -> None:
    from ifmsan.cli import main

    path = tmp_path / "evil.pt"
    torch.save({"fc.weight": RunsCode()}, path)
    with pytest.raises(ValueError) as info:
        models.load("timm:resnet18", weights=path)
    message = str(info.value)
    assert f"timm:resnet18 weights {path} holds non-tensor objects (posix.getcwd) and is refused" in message, message
    assert "weights_only" not in message and "trusted source" not in message, message
    code = main(["extract", "--model", "timm:resnet18", "--weights", str(path), "--image", "skimage:cat",
                 "--image-id", "cat", "--out", str(tmp_path / "x.nc")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "holds non-tensor objects (posix.getcwd)" in err, err
    assert "weights_only" not in err and not (tmp_path / "x.nc").exists()


def test_an_unknown_pretrained_tag_is_named_with_the_models_tags(tmp_path, capsys) -> None:
    from ifmsan.cli import main

    for weights in (None, "DEFAULT"):
        with pytest.raises(ValueError) as info:
            models.load("timm:resnet18.bogus_tag", weights=weights)
        message = str(info.value)
        assert "timm model timm:resnet18.bogus_tag: unknown pretrained tag 'bogus_tag' for resnet18" in message
        assert "a1_in1k" in message and "timm:resnet18 without a tag" in message
    code = main(["extract", "--model", "timm:resnet18.bogus_tag", "--image", "skimage:cat", "--image-id", "cat",
                 "--out", str(tmp_path / "x.nc")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "unknown pretrained tag 'bogus_tag'" in err, err
    assert timm_net.check_arch("resnet18.a1_in1k") == "resnet18.a1_in1k"


def test_pretrained_without_network_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(name: str, *, pretrained: bool = False, **kwargs: object) -> nn.Module:
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        raise AssertionError("only the pretrained path is expected here")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ValueError, match="without network") as info:
        models.load("timm:resnet18.a1_in1k", weights="DEFAULT")
    assert "OSError" in str(info.value) and "{path, sha256}" in str(info.value)


def test_unknown_names_are_refused_with_close_matches() -> None:
    with pytest.raises(ValueError, match="did you mean timm:resnet18"):
        models.load("timm:resnet181")
    with pytest.raises(ValueError, match="unknown model"):
        models.load("tim:resnet18")
    with pytest.raises(ValueError, match="unknown option"):
        models.load("timm:resnet18", mean_file="x.npy")


def test_preprocessing_is_timms_eval_transform() -> None:
    net = models.load("timm:resnet18")
    # a flat colour survives resize and crop: the output is (value/255 - mean) / std, per channel
    flat = net.preprocess(Image.new("RGB", (300, 260), (255, 0, 128)))
    assert tuple(flat.shape) == (3, 224, 224) and flat.dtype == torch.float32
    config = timm.data.resolve_data_config({}, model=net.model)
    for c, value in enumerate((255, 0, 128)):
        np.testing.assert_allclose(flat[c].numpy(), (value / 255 - config["mean"][c]) / config["std"][c], atol=1e-5)


def test_naming_policy_descends_through_containers_only() -> None:
    model = nn.Module()
    model.stem = nn.Conv2d(3, 3, 1)
    model.stages = nn.Sequential(nn.Sequential(nn.Identity(), nn.Identity()))
    name = timm_net.block_names(model)
    assert name(["stem"]) == "stem"
    assert name(["stages", "stages.0", "stages.0.1"]) == "stages.0.1"
    assert name([]) is None
    inner = nn.Module()
    inner.conv = nn.Conv2d(3, 3, 1)
    model.block = inner
    assert name(["block.conv"]) is None  # inside a block: not exposed
