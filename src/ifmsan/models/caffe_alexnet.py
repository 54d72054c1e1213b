"""BVLC AlexNet's layer sequence (Caffe deploy.prototxt) at any channel widths: bvlc_alexnet and alexnet_mini."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ifmsan.models.base import LayeredNet
from ifmsan.models.files import existing_file, file_checksum, load_state_dict_file
from ifmsan.models.fused import CaffeLRN, CaffeMaxPool
from ifmsan.models.preprocess import (
    CAFFE_CROP,
    DEFAULT_CAFFE_PREPROCESSING,
    caffe_preprocessor,
    check_caffe_preprocessing,
    load_mean_file,
    unit_range_preprocess,
)

IFM_LAYERS: tuple[str, ...] = (
    "conv1", "norm1", "pool1", "conv2", "norm2", "pool2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7", "fc8",
)  # fmt: skip
"""The 13 IFMs of the paper's Table 1, in network order (each names the layer the IFM is fed into)."""
PARAMETER_LAYERS: tuple[str, ...] = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
BVLC_WIDTHS = (96, 256, 384, 384, 256)
BVLC_FC = 4096
MINI_WIDTHS = (24, 64, 96, 96, 64)
MINI_FC = 512
DROPOUT = 0.5


def _bias(layer: nn.Conv2d | nn.Linear) -> torch.Tensor:
    """The layer's bias (every layer of these nets has one)."""
    assert layer.bias is not None, f"{layer} has no bias"
    return layer.bias


class ConvReLU(nn.Conv2d):
    """A Caffe convolution followed by its in-place ReLU: maps a conv IFM to the next layer's IFM."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """relu(conv(x)), never touching x (the ReLU runs in place on the fresh convolution output)."""
        return F.relu(super().forward(x), inplace=True)


class LinearReLUDropout(nn.Linear):
    """A Caffe fully connected layer with its in-place ReLU and dropout (identity in eval mode)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """dropout(relu(linear(x))), with dropout active only in training."""
        return F.dropout(F.relu(super().forward(x), inplace=True), p=DROPOUT, training=self.training)


class MaxPoolFlatten(CaffeMaxPool):
    """pool5, whose output is flattened in C order (channel, height, width) into fc6's 1-D IFM."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """flatten(maxpool(x)) per image."""
        return torch.flatten(super().forward(x), 1)


def _materialize(module: nn.Module) -> None:
    """Give every meta parameter and buffer uninitialised CPU storage of its shape and dtype (what to_empty does, but
    without torch's Python meta kernels: to_empty imports sympy and the decompositions, which lengthen a job's start-up)."""
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is not None:
                sub._parameters[name] = nn.Parameter(
                    torch.empty(param.shape, dtype=param.dtype), requires_grad=param.requires_grad
                )
        for name, buffer in list(sub._buffers.items()):
            if buffer is not None:
                sub._buffers[name] = torch.empty(buffer.shape, dtype=buffer.dtype)


class CaffeAlexNet(LayeredNet):
    """BVLC AlexNet's layers, named after the IFMs they consume, so the state dict reads conv1.weight ... fc8.bias.

    conv1 k11 s4 -> relu -> LRN(5, 1e-4, 0.75, 1) -> maxpool 3/2 -> conv2 k5 p2 g2 -> relu -> LRN -> maxpool 3/2
    -> conv3 k3 p1 -> relu -> conv4 k3 p1 g2 -> relu -> conv5 k3 p1 g2 -> relu -> maxpool 3/2 -> fc6 -> relu
    -> fc7 -> relu -> fc8. Pools round up like Caffe (ceil_mode); at 227 input that gives 55/27/13/6 as floor would.
    """

    def __init__(
        self,
        *,
        name: str,
        widths: Sequence[int],
        fc_width: int,
        num_classes: int,
        class_names: Sequence[str],
        weights_info: dict[str, object],
        preprocess: functools.partial[torch.Tensor],
    ) -> None:
        """Build the layers with uninitialised storage (no global RNG use); callers initialise or load weights."""
        super().__init__(
            name=name, class_names=class_names, weights_info=weights_info, input_shape=(3, CAFFE_CROP, CAFFE_CROP),
            preprocess=preprocess,
        )  # fmt: skip
        c1, c2, c3, c4, c5 = (int(w) for w in widths)
        with torch.device("meta"):
            self.conv1 = ConvReLU(3, c1, kernel_size=11, stride=4)
            self.norm1 = CaffeLRN(5, alpha=1e-4, beta=0.75, k=1.0)
            self.pool1 = CaffeMaxPool(kernel_size=3, stride=2, ceil_mode=True)
            self.conv2 = ConvReLU(c1, c2, kernel_size=5, padding=2, groups=2)
            self.norm2 = CaffeLRN(5, alpha=1e-4, beta=0.75, k=1.0)
            self.pool2 = CaffeMaxPool(kernel_size=3, stride=2, ceil_mode=True)
            self.conv3 = ConvReLU(c2, c3, kernel_size=3, padding=1)
            self.conv4 = ConvReLU(c3, c4, kernel_size=3, padding=1, groups=2)
            self.conv5 = ConvReLU(c4, c5, kernel_size=3, padding=1, groups=2)
            self.pool5 = MaxPoolFlatten(kernel_size=3, stride=2, ceil_mode=True)
            self.fc6 = LinearReLUDropout(c5 * 6 * 6, fc_width)
            self.fc7 = LinearReLUDropout(fc_width, fc_width)
            self.fc8 = nn.Linear(fc_width, num_classes)
        _materialize(self)
        self._set_stages([(layer, getattr(self, layer)) for layer in IFM_LAYERS])
        self.eval()

    def parameter_layers(self) -> dict[str, nn.Conv2d | nn.Linear]:
        """The layers that carry weights, by Caffe layer name."""
        return {layer: getattr(self, layer) for layer in PARAMETER_LAYERS}

    @torch.no_grad()
    def init_weights(self, *, seed: int) -> None:
        """Kaiming-normal weights (fan_in, relu) and zero biases from a private generator: independent of global RNG."""
        generator = torch.Generator(device="cpu").manual_seed(seed)
        for layer in self.parameter_layers().values():
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu", generator=generator)
            nn.init.zeros_(_bias(layer))

    @torch.no_grad()
    def load_caffe_blobs(self, blobs: dict[str, list], *, path: os.PathLike[str] | str) -> None:
        """Copy [weight, bias] per Caffe layer; grouped conv weights (out, in/group, kh, kw) fit groups=2 as they are."""
        layers = self.parameter_layers()
        missing = [name for name in layers if name not in blobs]
        extra = [name for name in blobs if name not in layers]
        if missing or extra:
            raise ValueError(
                f"caffemodel {path} does not fit {self.name}: layers with parameters {list(blobs)}, expected "
                f"{list(layers)} (missing {missing}, unexpected {extra})"
            )
        for name, layer in layers.items():
            found = [tuple(array.shape) for array in blobs[name]]
            expected = [tuple(layer.weight.shape), tuple(_bias(layer).shape)]
            if found != expected:
                raise ValueError(
                    f"caffemodel {path}: layer {name!r} has blob shapes {found}, {self.name} expects {expected}"
                )
        for name, layer in layers.items():
            weight, bias = blobs[name]
            layer.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
            _bias(layer).copy_(torch.as_tensor(bias, dtype=torch.float32))


_NET_FIELDS = {1: 2, 2: 2, 3: 2, 4: 0, 5: 0, 6: 2, 7: 0, 8: 2, 100: 2}
"""Caffe's NetParameter: field number -> wire type (name, V1 layers, input, input_dim, force_backward, state,
debug_info, input_shape, layer)."""


def looks_like_caffemodel(path: str | os.PathLike[str]) -> bool:
    """Whether the file starts like a binary caffemodel: well-formed NetParameter fields, a layer among them."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(1 << 16)
    except OSError:
        return False

    def varint(at: int) -> tuple[int, int]:
        """The base-128 varint at `at` and the position after it."""
        value = shift = 0
        while at < len(data) and shift < 64:
            value |= (data[at] & 0x7F) << shift
            shift += 7
            at += 1
            if not data[at - 1] & 0x80:
                return value, at
        raise IndexError("varint runs past the data read")

    at, layers = 0, False
    try:
        while at < len(data):
            tag, at = varint(at)
            field, wire = tag >> 3, tag & 7
            if _NET_FIELDS.get(field) != wire:
                return False
            value, at = varint(at)
            layers = layers or field in (2, 100)
            at += value if wire == 2 else 0
    except IndexError:
        pass  # a field that runs past the first 64 KiB (a layer's weights): what was read so far decides
    return layers


@functools.cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names in index order: torchvision's list, shipped as a file (importing torchvision.models
    would lengthen every job's start-up; tests/test_models_caffe.py checks the file against torchvision)."""
    from importlib.resources import files

    text = files("ifmsan.models").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(text.splitlines())
    if len(names) != 1000:
        raise RuntimeError(f"ifmsan/models/imagenet_classes.txt holds {len(names)} class names, expected 1000")
    return names


def build_bvlc_alexnet(
    *,
    weights: str | os.PathLike[str] | None,
    seed: int,
    mean_file: str | os.PathLike[str] | None,
    preprocess: str = DEFAULT_CAFFE_PREPROCESSING,
) -> CaffeAlexNet:
    """The paper's network: random (seeded) or BVLC's trained weights from a .caffemodel, with Caffe preprocessing.

    `preprocess` picks the input pipeline (preprocess.CAFFE_PREPROCESSING, docs/preprocessing.md): 'caffe_cpp'
    (C++ Caffe, OpenCV warp), 'pycaffe' (the pycaffe tutorial, skimage) or 'pil'; weights_info["preprocess"] says
    which one the net uses.
    """
    check_caffe_preprocessing(preprocess)
    mean = None if mean_file is None else load_mean_file(mean_file)
    transform = caffe_preprocessor(preprocess, mean=mean)
    blobs: dict[str, list] | None = None  # the converted file's tensors, read before the net is built
    if weights is None:
        info: dict[str, object] = {
            "source": f"seeded Kaiming-normal initialisation (seed {seed})", "sha1": None, "trained": False,
            "stand_in": False, "note": "bvlc_alexnet architecture with untrained random weights",
        }  # fmt: skip
    elif os.fspath(weights).endswith(".safetensors"):  # converted once from the caffemodel (models/converted.py)
        from ifmsan.models.converted import CONTENT_KEY, load_converted

        path = existing_file(weights, what="bvlc_alexnet weights (converted .safetensors)")
        tensors, recorded = load_converted(path)  # memory-mapped; format, names, shapes and dtypes checked
        blobs = {layer: [tensors[f"{layer}.weight"], tensors[f"{layer}.bias"]] for layer in PARAMETER_LAYERS}
        info = {  # the caffemodel's sha1 and note: outputs carry the same weights provenance as from the caffemodel
            "source": str(path), "sha1": recorded["caffemodel_sha1"], "trained": True, "stand_in": False,
            "note": "BVLC AlexNet (Caffe bvlc_alexnet.caffemodel)", "converted_from": recorded["caffemodel"],
            "content_xxh3": recorded[CONTENT_KEY],
        }  # fmt: skip
    else:
        path = existing_file(weights, what="bvlc_alexnet weights (.caffemodel)")
        info = {
            "source": str(path), "sha1": file_checksum(path, algorithm="sha1"), "trained": True, "stand_in": False,
            "note": "BVLC AlexNet (Caffe bvlc_alexnet.caffemodel)",
        }  # fmt: skip
    info["mean_file"] = None if mean_file is None else str(mean_file)
    info["preprocess"] = preprocess
    net = CaffeAlexNet(
        name="bvlc_alexnet", widths=BVLC_WIDTHS, fc_width=BVLC_FC, num_classes=1000,
        class_names=imagenet_class_names(), weights_info=info,
        preprocess=transform,
    )  # fmt: skip
    if weights is None:
        net.init_weights(seed=seed)
    elif blobs is not None:
        net.load_caffe_blobs(blobs, path=path)
    else:
        from ifmsan.models.caffe import read_caffemodel

        net.load_caffe_blobs(read_caffemodel(path), path=path)
    return net


def build_alexnet_mini(*, weights: str | os.PathLike[str] | None, seed: int) -> CaffeAlexNet:
    """The offline stand-in: BVLC's sequence with channels (24, 64, 96, 96, 64) and fc 512, on minidata's classes."""
    from ifmsan.steps import minidata

    note = minidata.STAND_IN_NOTE
    if weights is None:
        info: dict[str, object] = {
            "source": f"seeded Kaiming-normal initialisation (seed {seed})", "sha256": None, "trained": False,
            "stand_in": True, "note": f"{note} (these weights are untrained)",
        }  # fmt: skip
    else:
        path = existing_file(weights, what="alexnet_mini weights (.pt state dict)")
        info = {"source": str(path), "sha256": file_checksum(path, algorithm="sha256"), "trained": True,
                "stand_in": True, "note": note}  # fmt: skip
    net = CaffeAlexNet(
        name="alexnet_mini", widths=MINI_WIDTHS, fc_width=MINI_FC, num_classes=len(minidata.CLASS_NAMES),
        class_names=minidata.CLASS_NAMES, weights_info=info,
        preprocess=functools.partial(unit_range_preprocess, size=CAFFE_CROP),
    )  # fmt: skip
    if weights is None:
        net.init_weights(seed=seed)
    else:
        load_state_dict_file(path, into=net, what="alexnet_mini weights")
    return net
