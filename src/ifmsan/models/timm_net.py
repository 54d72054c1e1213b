"""timm classifiers as LayeredNets: IFMs at the inputs of the stem, of every block, of the head and the classifier.

A timm model is traced with timm's own list of untraceable helpers kept whole (e.g. the dynamic "same" padding
of the tf_* ports) and cut by ifmsan.models.fxcut. Of the cuts, those that enter a module whose every ancestor is
a plain container (Sequential, ModuleList, ModuleDict) are exposed, named by that module's path: `conv_stem`,
`bn1`, `blocks.0.0` .. `blocks.6.0`, `conv_head`, `bn2`, `global_pool`, `classifier` for EfficientNet;
`conv1` .. `maxpool`, `layer1.0` .. `layer4.1`, `global_pool`, `fc` for ResNet. Points inside a block are not
exposed (the paper sanitizes layer inputs; a block's insides are one layer here).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ifmsan.models.files import existing_file, local_or_seeded
from ifmsan.models.fxcut import FxNet

if TYPE_CHECKING:
    import torch.fx as fx

PREFIX = "timm:"
CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
PRETRAINED = "DEFAULT"
"""The weights name that asks timm for the model's pretrained weights (its Hugging Face hub download)."""

__all__ = ["PREFIX", "PRETRAINED", "block_names", "build_timm", "check_arch", "timm_tracer"]


def check_arch(arch: str) -> str:
    """The timm model name `arch` (optionally `<arch>.<pretrained tag>`), or a ValueError with close matches or the
    model's known tags."""
    import difflib

    import timm

    if not isinstance(arch, str) or not arch or not timm.is_model(arch):
        close = difflib.get_close_matches(str(arch), timm.list_models(), 3)
        hint = f"; did you mean {', '.join(PREFIX + c for c in close)}?" if close else ""
        raise ValueError(f"unknown timm model {arch!r}{hint} (any name in timm.list_models(), e.g. timm:resnet18)")
    base, dot, tag = arch.partition(".")
    if dot:  # timm.is_model ignores the tag; create_model would fail on an unknown one with a traceback
        tags = [name.partition(".")[2] for name in timm.list_pretrained(f"{base}.*")]
        if tag not in tags:
            known = f"its tags: {', '.join(tags[:8])}{', ...' if len(tags) > 8 else ''}" if tags else "it has none"
            raise ValueError(
                f"timm model {PREFIX}{arch}: unknown pretrained tag {tag!r} for {base} ({known}; "
                f"timm.list_pretrained('{base}.*')), or give {PREFIX}{base} without a tag"
            )
    return arch


def timm_tracer() -> fx.Tracer:
    """A torch.fx tracer that keeps timm's registered untraceable functions and modules as single graph nodes."""
    import torch.fx as fx
    from timm.layers import get_notrace_functions, get_notrace_modules

    leaves = tuple(get_notrace_modules())

    class TimmTracer(fx.Tracer):
        """fx.Tracer that treats timm's notrace modules as leaves."""

        def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
            """timm's notrace modules are leaves, as are torch.nn's."""
            return isinstance(m, leaves) or super().is_leaf_module(m, module_qualified_name)

    return TimmTracer(autowrap_functions=tuple(get_notrace_functions()))


def block_names(model: nn.Module) -> Callable[[Sequence[str]], str | None]:
    """The naming policy: the first non-container module a cut enters, if only containers lie above it."""

    def name(entered: Sequence[str]) -> str | None:
        """`blocks.1.0` for a cut that enters blocks, blocks.1 and blocks.1.0; None inside a block."""
        for path in entered:
            if isinstance(model.get_submodule(path), CONTAINERS):
                continue
            parts = path.split(".")
            above = (".".join(parts[:i]) for i in range(1, len(parts)))
            return path if all(isinstance(model.get_submodule(p), CONTAINERS) for p in above) else None
        return None

    return name


def class_names(count: int) -> tuple[str, ...]:
    """ImageNet's names for a 1000-class head (torchvision's list, as every model here uses), else class_<i>."""
    if count == 1000:
        from ifmsan.models.caffe_alexnet import imagenet_class_names

        return imagenet_class_names()
    return tuple(f"class_{i}" for i in range(count))


def eval_transform(model: nn.Module) -> Callable[[Any], torch.Tensor]:
    """timm's evaluation transform for the model's pretrained config (resize by crop_pct, centre crop, normalize)."""
    from timm.data import create_transform, resolve_data_config

    from ifmsan.models.preprocess import RGBThen

    config = resolve_data_config({}, model=model)
    return RGBThen(create_transform(**config, is_training=False))


def _pretrained(arch: str) -> nn.Module:
    """timm's model with its pretrained weights; a failed download is a ValueError that says how to work offline."""
    import timm

    try:
        return timm.create_model(arch, pretrained=True)
    except Exception as exc:  # hub and network errors come in many types
        raise ValueError(
            f"timm:{arch} weights {PRETRAINED}: timm could not get its pretrained weights ({type(exc).__name__}: "
            f"{exc}); without network, download the state dict elsewhere and give it as weights "
            "{path, sha256} (a local file), or fill the Hugging Face cache ($HF_HOME) there"
        ) from None


def build_timm(arch: str, *, weights: str | os.PathLike[str] | None, seed: int) -> FxNet:
    """timm:<arch> with seeded random, timm-downloaded (weights="DEFAULT") or local state-dict weights."""
    import timm

    check_arch(arch)
    if weights == PRETRAINED:
        model = _pretrained(arch)
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        info: dict[str, object] = {
            "source": cfg.get("hf_hub_id") or cfg.get("url") or f"timm pretrained {arch}", "sha256": None,
            "trained": True, "stand_in": False, "note": f"timm {arch} with its pretrained weights",
        }  # fmt: skip
    else:
        path: Path | None = None
        if weights is not None:
            if not isinstance(weights, (str, os.PathLike)):
                raise ValueError(f"weights must be None, {PRETRAINED!r} or a path, got {type(weights).__name__}")
            path = existing_file(weights, what=f"timm:{arch} weights (state-dict file)")
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            torch.manual_seed(seed)
            warnings.simplefilter("ignore", UserWarning)
            model = timm.create_model(arch, pretrained=False)
        info = local_or_seeded(model, path=path, family="timm", arch=arch, seed=seed)
    return timm_layered(model, name=f"{PREFIX}{arch}", weights_info=info, preprocess=eval_transform(model))


def timm_layered(
    model: nn.Module,
    *,
    name: str,
    weights_info: dict[str, object],
    preprocess: Callable[[Any], torch.Tensor],
    input_size: int | None = None,
) -> FxNet:
    """Cut a built timm model into a LayeredNet named `name` (input side: `input_size`, else its pretrained config)."""
    size = input_size or int((getattr(model, "pretrained_cfg", {}) or {}).get("input_size", (3, 224, 224))[-1])
    num_classes = int(getattr(model, "num_classes", 0) or 0)
    if num_classes < 1:
        raise ValueError(f"{name} has no classifier head (num_classes = {num_classes}); expected an image classifier")
    return FxNet(
        name=name, model=model, class_names=class_names(num_classes), weights_info=weights_info,
        input_shape=(3, size, size), preprocess=preprocess, tracer=timm_tracer(), name_cut=block_names(model),
    )  # fmt: skip
