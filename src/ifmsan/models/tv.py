"""torchvision classifiers as LayeredNets, cut by torch.fx wherever one tensor carries all of the network's state.

The cutting is ifmsan.models.fxcut's: an IFM is named after the outermost module that starts at its cut, i.e. the
module it is fed into (`conv1`, `layer1` = the input of `layer1.0`, `layer1.1`, `avgpool`, `fc` for ResNet;
`features.N` and block internals for MobileNet/EfficientNet...). AlexNet and VGG get Caffe-style names instead
(see `caffe_style_names`).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ifmsan.models.files import existing_file, file_checksum, local_or_seeded
from ifmsan.models.fxcut import FxNet
from ifmsan.models.preprocess import RGBThen, imagenet_transform

PREFIX = "torchvision:"
ENUM_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
TorchvisionNet = FxNet
"""A torchvision classifier as a LayeredNet (the generic fx-cut net)."""


def classification_models() -> list[str]:
    """torchvision's ImageNet classification architectures (not detection, segmentation, video, quantized)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def caffe_style_names(model: nn.Module, *, vgg: bool) -> dict[str, str]:
    """Module path -> readable IFM name for AlexNet (conv1..conv5, pool1/2/5) and VGG (conv1_1.., pool1..5).

    The IFM of a layer is its input: `pool1` is relu1's output, `fc6` the flattened (avg)pool output; ReLU,
    dropout and batch-norm inputs are not exposed, as in the Caffe nets. `avgpool` (the adaptive pool before
    the classifier) keeps its name; at 224 input it is an identity on AlexNet's 6x6 and VGG's 7x7 maps.
    """
    names: dict[str, str] = {}
    conv = within = 0
    block = 1
    for index, module in enumerate(model.features):  # type: ignore[arg-type]
        if isinstance(module, nn.Conv2d):
            conv += 1
            within += 1
            names[f"features.{index}"] = f"conv{block}_{within}" if vgg else f"conv{conv}"
        elif isinstance(module, nn.MaxPool2d):
            names[f"features.{index}"] = f"pool{block}" if vgg else f"pool{conv}"
            block += 1
            within = 0
    names["avgpool"] = "avgpool"
    fc = 6
    for index, module in enumerate(model.classifier):  # type: ignore[arg-type]
        if isinstance(module, nn.Linear):
            names[f"classifier.{index}"] = f"fc{fc}"
            fc += 1
    return names


def _resolve_weights(arch: str, weights: str | os.PathLike[str] | None) -> tuple[str, Any]:
    """Classify the weights argument: ("random", None), ("enum", member) or ("file", Path)."""
    import torchvision

    if weights is None:
        return "random", None
    if isinstance(weights, str) and ENUM_NAME.match(weights):
        enum = torchvision.models.get_model_weights(arch)
        valid = ["DEFAULT", *enum.__members__]
        if weights not in valid:
            raise ValueError(
                f"weights {weights!r} is not a weights name of torchvision:{arch}; valid: {', '.join(valid)}, "
                "or a path to a local state-dict file"
            )
        return "enum", enum[weights]
    if isinstance(weights, (str, os.PathLike)):
        return "file", existing_file(weights, what=f"torchvision:{arch} weights (state-dict file)")
    raise ValueError(f"weights must be None, a torchvision weights name or a path, got {type(weights).__name__}")


def _download_weights(arch: str, value: Any, *, cached: Path) -> nn.Module:
    """torchvision's model with its named weights; a failed download or a bad cached file is a ValueError that says
    where torchvision keeps the file, so it can be placed there by hand on a machine without network."""
    import torchvision

    had_file = cached.is_file()
    try:
        return torchvision.models.get_model(arch, weights=value)
    except Exception as exc:  # URLError is an OSError, a hash mismatch a RuntimeError; torch.load raises many kinds
        what = f"torchvision:{arch} weights {type(value).__name__}.{value.name}"
        if not had_file and not isinstance(exc, (OSError, RuntimeError)):
            raise
        if had_file:
            raise ValueError(
                f"{what}: the cached file {cached} cannot be used ({type(exc).__name__}: {exc}); delete it to download "
                "it again, or put a good copy there"
            ) from None
        raise ValueError(
            f"{what}: the download of {value.url} failed ({type(exc).__name__}: {exc}); without network, download "
            f"it elsewhere and place it at {cached} (torchvision's cache: $TORCH_HOME/hub/checkpoints)"
        ) from None


def build_torchvision(arch: str, *, weights: str | os.PathLike[str] | None, seed: int) -> TorchvisionNet:
    """torchvision:<arch> with seeded random, torchvision-downloaded (hash-checked) or local state-dict weights."""
    import torchvision

    if arch not in classification_models():
        raise ValueError(
            f"unknown torchvision classification model {arch!r}; valid: {', '.join(classification_models())}"
        )
    kind, value = _resolve_weights(arch, weights)
    default = torchvision.models.get_model_weights(arch).DEFAULT
    crop, resize = (299, 342) if arch == "inception_v3" else (224, 256)
    preprocess: Callable[[Any], torch.Tensor] = RGBThen(imagenet_transform(crop=crop, resize=resize))
    class_names = tuple(default.meta["categories"])
    if kind == "enum":
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(value.url)
        model = _download_weights(arch, value, cached=cached)
        transform = value.transforms()
        crop = int(getattr(transform, "crop_size", [crop])[0])
        preprocess = RGBThen(transform)
        class_names = tuple(value.meta["categories"])
        info: dict[str, object] = {
            "source": value.url, "sha256": file_checksum(cached) if cached.is_file() else None, "trained": True,
            "stand_in": False, "note": f"torchvision {type(value).__name__}.{value.name}",
        }  # fmt: skip
    else:
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            torch.manual_seed(seed)
            warnings.filterwarnings("ignore", message="The default weight initialization", category=FutureWarning)
            model = torchvision.models.get_model(arch, weights=None)
        info = local_or_seeded(
            model, path=value if kind == "file" else None, family="torchvision", arch=arch, seed=seed
        )
    rename = None
    if arch == "alexnet" or arch.startswith("vgg"):
        rename = caffe_style_names(model, vgg=arch.startswith("vgg"))
    return TorchvisionNet(
        name=f"{PREFIX}{arch}", model=model, class_names=class_names, weights_info=info, input_shape=(3, crop, crop),
        preprocess=preprocess, rename=rename,
    )  # fmt: skip
