"""Train the three adversaries on sanitized IFMs of one layer at each knob value and score them on held-out images.

For a layer L, a knob and its values (plus "unsanitized", the identity: window 1 or scale 0), each adversary is
trained on the sanitized IFMs of the train split and scored on the test split (docs/attacks.md):

- adaptive server: the layers after L, fine-tuned from the original weights on sanitized IFMs -> held-out top-1
  and mean p(target); epsilon_adaptive = ln(p0 / p_adaptive) with p0 the unchanged network's unsanitized mean;
- inversion: a decoder from the sanitized IFM to the image at `resolution` -> PSNR and SSIM (skimage.metrics);
- attribute inference: a probe for the background photo (chance 1/15) -> accuracy.

The legitimate pipeline (the unchanged network after L on the same sanitized IFMs) is scored alongside, as the
utility axis of the privacy-utility frontier. IFMs of both splits are computed once and reused for every value.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr

from ifmsan.attacks import scores
from ifmsan.attacks.data import N_ATTRIBUTES, AttackImages, attack_images, downsample, image_seed
from ifmsan.attacks.nets import Decoder, Probe
from ifmsan.attacks.options import AttackOptions
from ifmsan.models.base import LayeredNet

UNSANITIZED = "unsanitized"
IDENTITY: dict[str, int | float] = {"window": 1, "scale": 0.0}
"""The knob value that leaves an IFM as it is: the "unsanitized" row's value."""
STREAMS = {"adaptive": 1, "inversion": 2, "attribute": 3}
"""Random stream ids of the three adversaries' initialisation and shuffling (numpy/torch seeded [seed, stream, row])."""

Sanitizer = Callable[[torch.Tensor, int | float, int], torch.Tensor]
"""(one image's IFM, knob value, per-image seed) -> the sanitized IFM of the same shape and dtype."""


def knob_sanitizer(knob: str, **options: float) -> Sanitizer:
    """The library knob `knob` as a Sanitizer, seeded per image (random picks and noise draws are fresh per query).

    options: get_knob's sigma (the randomized hold) or calibration_std (the noise knobs), fixed for every image.
    """
    from ifmsan.core.knobs import knob_with

    knob_with(knob, options)  # refuse an unknown name or option now

    def apply(ifm: torch.Tensor, value: int | float, seed: int) -> torch.Tensor:
        return knob_with(knob, options, seed=seed).apply(ifm, value)

    return apply


def _preprocessed(net: LayeredNet, images: np.ndarray) -> torch.Tensor:
    """The network's own preprocessing of uint8 images (N, H, W, 3)."""
    from PIL import Image

    return torch.stack([net.preprocess(Image.fromarray(image), source="attack image") for image in images])


def layer_ifms(net: LayeredNet, images: np.ndarray, *, layer: str, batch_size: int) -> torch.Tensor:
    """IFMs of `layer` for uint8 images, computed batch by batch without gradients."""
    first = net.ifm_layers[0]
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = _preprocessed(net, images[start : start + batch_size])
            out.append(x if layer == first else net.forward_from(first, x, until=layer))
    return torch.cat(out).clone()


def _probabilities(forward: Callable[[torch.Tensor], torch.Tensor], ifms: torch.Tensor, batch_size: int) -> np.ndarray:
    """Softmax (float64) of a forward function over IFMs, in batches, without gradients."""
    out = []
    with torch.no_grad():
        for start in range(0, len(ifms), batch_size):
            out.append(torch.softmax(forward(ifms[start : start + batch_size]).to(torch.float64), dim=1).numpy())
    return np.concatenate(out)


def _fit(
    forward: Callable[[torch.Tensor], torch.Tensor], parameters: Sequence[torch.nn.Parameter], inputs: torch.Tensor,
    targets: torch.Tensor, *, loss_fn: Callable[..., torch.Tensor], epochs: int, lr: float, batch_size: int,
    rng: np.random.Generator, option: str = "the learning rate",
) -> None:  # fmt: skip
    """AdamW over shuffled batches for a number of epochs (the shuffles come from rng); a diverging fit is a
    ValueError naming `option`, the learning rate that made it diverge."""
    optimizer = torch.optim.AdamW(parameters, lr=lr)
    for epoch in range(epochs):
        order = rng.permutation(len(inputs))
        for start in range(0, len(order), batch_size):
            index = torch.from_numpy(order[start : start + batch_size])
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(forward(inputs[index]), targets[index])
            if not torch.isfinite(loss):
                raise diverged(option, lr, f"a NaN or infinite loss in epoch {epoch + 1}")
            loss.backward()
            optimizer.step()
        if not all(bool(torch.isfinite(p).all()) for p in parameters):
            raise diverged(option, lr, f"NaN or infinite weights after epoch {epoch + 1}")


def diverged(option: str, lr: float, what: str) -> ValueError:
    """The error of an adversary whose training diverged, naming the option to lower."""
    return ValueError(f"training with {option} {lr:g} diverged ({what}); choose a smaller {option}")


def _finite(probabilities: np.ndarray, *, what: str) -> np.ndarray:
    """Softmax outputs, or a ValueError saying which adversary's outputs overflowed and why."""
    if not np.isfinite(probabilities).all():
        raise ValueError(
            f"{what} gave NaN or infinite outputs: the sanitized values overflow the network; choose a smaller noise "
            "scale (the value, or --noise-scale)"
        )
    return probabilities


def _sanitize_all(
    sanitize: Sanitizer, ifms: torch.Tensor, value: int | float, *, seed: int, split: str
) -> torch.Tensor:
    """Every image's IFM sanitized at one value, each with its own seed."""
    out = torch.empty_like(ifms)
    for i in range(len(ifms)):
        out[i] = sanitize(ifms[i], value, image_seed(seed, split, i))
    if not bool(torch.isfinite(out).all()):
        raise ValueError(
            f"the {split} IFMs sanitized at value {value} hold NaN or infinite values: the noise (the value, or "
            "--noise-scale x the calibration std) overflows float32; choose a smaller noise scale"
        )
    return out


@dataclass
class _Data:
    """Both splits: IFMs of the layer, labels, attributes and the images at the decoder's resolution."""

    train: AttackImages
    test: AttackImages
    train_ifms: torch.Tensor
    test_ifms: torch.Tensor
    train_labels: torch.Tensor
    test_labels: np.ndarray
    label_source: str
    train_pictures: torch.Tensor
    test_pictures: np.ndarray


def _prepare(net: LayeredNet, *, layer: str, options: AttackOptions, progress: bool | None) -> _Data:
    """Images, their IFMs at `layer` and labels: shape labels for alexnet_mini, else the network's own top-1."""
    from ifmsan.steps.minidata import CLASS_NAMES

    train = attack_images(split="train", n=options.n_train, seed=options.seed, progress=progress)
    test = attack_images(split="test", n=options.n_test, seed=options.seed, progress=progress)
    train_ifms = layer_ifms(net, train.images, layer=layer, batch_size=options.batch_size)
    test_ifms = layer_ifms(net, test.images, layer=layer, batch_size=options.batch_size)
    if tuple(net.class_names) == CLASS_NAMES:
        train_labels, test_labels, source = train.shape_labels, test.shape_labels, "shape"
    else:
        forward = lambda x: net.forward_from(layer, x)  # noqa: E731
        train_labels = _probabilities(forward, train_ifms, options.batch_size).argmax(axis=1)
        test_labels = _probabilities(forward, test_ifms, options.batch_size).argmax(axis=1)
        source = "original_top1"
    size = options.resolution
    return _Data(
        train, test, train_ifms, test_ifms, torch.from_numpy(np.asarray(train_labels, dtype=np.int64)),
        np.asarray(test_labels, dtype=np.int64), source,
        torch.from_numpy(downsample(train.images, size=size)).permute(0, 3, 1, 2).contiguous(),
        downsample(test.images, size=size),
    )  # fmt: skip


def _input_scale(ifms: torch.Tensor) -> float:
    """1 / std of the (sanitized) training IFMs, so the decoder and probe see unit-scale inputs (1 when constant)."""
    std = float(ifms.to(torch.float64).std(correction=0))
    return 1.0 / std if std > 0 and math.isfinite(std) else 1.0


def _optimized(
    net: LayeredNet, data: _Data, *, layer: str, knob: str, value: int | float, test_ifms: torch.Tensor,
    options: AttackOptions,
) -> dict[str, float]:  # fmt: skip
    """The white-box optimization attack on the first held-out releases, scored like the decoder (MSE, PSNR, SSIM)."""
    from ifmsan.attacks.optimize import OptimizeOptions, optimize_attack, reconstruction_scores

    o = options
    k = o.optimize_images
    found = optimize_attack(
        net, test_ifms[:k], layer=layer, knob=knob, value=value, z0=data.train_pictures.mean(dim=0),
        release_seeds=[image_seed(o.seed, "test", i) for i in range(k)],
        options=OptimizeOptions(iterations=o.optimize_iterations, lr=o.optimize_lr, tv_weight=o.optimize_tv,
                                resolution=o.resolution, seed=o.seed, threads=o.threads),
    )  # fmt: skip
    scored = reconstruction_scores(found.reconstructions, data.test_pictures[:k])
    return {
        "optimization_mse": float(scored.mse.mean()),
        "optimization_mse_se": float(scored.mse.std(ddof=1) / math.sqrt(k)) if k > 1 else float("nan"),
        "optimization_psnr": float(scored.psnr.mean()), "optimization_ssim": float(scored.ssim.mean()),
    }  # fmt: skip


def _row(
    net: LayeredNet, data: _Data, *, layer: str, train_ifms: torch.Tensor, test_ifms: torch.Tensor, row: int,
    p0: float, options: AttackOptions, clock: dict[str, float], knob: str = "", value: int | float = 0,
) -> tuple[dict[str, float], np.ndarray]:  # fmt: skip
    """Every metric at one knob value, and the decoder's reconstructions of the first n_examples held-out images.

    `clock` receives the seconds each adversary took (legit, adaptive, inversion, attribute), for benchmarks.
    """
    o = options
    started = time.perf_counter()
    labels = data.test_labels
    legit = _finite(_probabilities(lambda x: net.forward_from(layer, x), test_ifms, o.batch_size),
                    what=f"the unchanged network on the IFMs sanitized at {knob or 'the knob'} value {value}")  # fmt: skip
    result = {
        "legit_accuracy": scores.accuracy(legit.argmax(axis=1), labels),
        "legit_p_target": scores.mean_target_probability(legit, labels),
    }
    result["epsilon_legit"] = scores.epsilon(p0, result["legit_p_target"])
    started = _lap(clock, "legit", started)

    server = copy.deepcopy(net)
    server.eval()  # batch norm keeps its statistics, dropout stays off: only the weights adapt
    for parameter in server.parameters():
        parameter.requires_grad_(True)
    forward = lambda x: server.forward_from(layer, x)  # noqa: E731
    if o.epochs_adaptive:
        _fit(forward, list(server.parameters()), train_ifms, data.train_labels,
             loss_fn=torch.nn.functional.cross_entropy, epochs=o.epochs_adaptive, lr=o.lr_adaptive,
             batch_size=o.batch_size, rng=np.random.default_rng([o.seed, STREAMS["adaptive"], row]),
             option="--lr-adaptive")  # fmt: skip
    adapted = _probabilities(forward, test_ifms, o.batch_size)
    if not np.isfinite(adapted).all():
        raise diverged("--lr-adaptive", o.lr_adaptive, "the adaptive server gives NaN or infinite outputs")
    result["adaptive_accuracy"] = scores.accuracy(adapted.argmax(axis=1), labels)
    result["adaptive_p_target"] = scores.mean_target_probability(adapted, labels)
    result["epsilon_adaptive"] = scores.epsilon(p0, result["adaptive_p_target"])
    started = _lap(clock, "adaptive", started)

    scale = _input_scale(train_ifms)
    shape = tuple(train_ifms.shape[1:])
    torch.manual_seed(int(np.random.SeedSequence([o.seed, STREAMS["inversion"], row]).generate_state(1)[0]))
    decoder = Decoder(shape, resolution=o.resolution)
    _fit(lambda x: decoder(x * scale), list(decoder.parameters()), train_ifms, data.train_pictures,
         loss_fn=torch.nn.functional.mse_loss, epochs=o.epochs_inversion, lr=o.lr_attack, batch_size=o.batch_size,
         rng=np.random.default_rng([o.seed, STREAMS["inversion"], row]), option="--lr-attack")  # fmt: skip
    with torch.no_grad():
        pictures = np.concatenate([
            decoder(test_ifms[s : s + o.batch_size] * scale).permute(0, 2, 3, 1).numpy()
            for s in range(0, len(test_ifms), o.batch_size)
        ]).astype(np.float64)  # fmt: skip
    result["inversion_psnr"] = scores.psnr(pictures, data.test_pictures)
    result["inversion_ssim"] = scores.ssim(pictures, data.test_pictures)
    started = _lap(clock, "inversion", started)
    if o.optimize_images:
        result["inversion_mse"] = float(((pictures - data.test_pictures) ** 2).mean())
        result.update(_optimized(net, data, layer=layer, knob=knob, value=value, test_ifms=test_ifms, options=o))
        started = _lap(clock, "optimization", started)

    torch.manual_seed(int(np.random.SeedSequence([o.seed, STREAMS["attribute"], row]).generate_state(1)[0]))
    probe = Probe(shape, classes=N_ATTRIBUTES)
    _fit(lambda x: probe(x * scale), list(probe.parameters()), train_ifms, torch.from_numpy(data.train.attributes),
         loss_fn=torch.nn.functional.cross_entropy, epochs=o.epochs_attribute, lr=o.lr_attack,
         batch_size=o.batch_size, rng=np.random.default_rng([o.seed, STREAMS["attribute"], row]),
         option="--lr-attack")  # fmt: skip
    guessed = _probabilities(lambda x: probe(x * scale), test_ifms, o.batch_size).argmax(axis=1)
    result["attribute_accuracy"] = scores.accuracy(guessed, data.test.attributes)
    _lap(clock, "attribute", started)
    examples = np.round(pictures[: o.n_examples] * 255.0).astype(np.uint8)
    return result, examples


def _lap(clock: dict[str, float], name: str, started: float) -> float:
    """Record the seconds since `started` under `name`; return now."""
    now = time.perf_counter()
    clock[name] = now - started
    return now


def run_attacks(
    net: LayeredNet, *, layer: str, knob: str, values: Sequence[int | float], roles: Sequence[str] | None = None,
    options: AttackOptions | None = None, sanitizer: Sanitizer | None = None, progress: bool | None = None,
    timings: list[dict[str, Any]] | None = None, knob_options: dict[str, float] | None = None,
) -> xr.Dataset:  # fmt: skip
    """The attack file of one (layer, knob): scores (parameter x metric) at "unsanitized" and each value.

    `roles` says why each value is there (e.g. "grid", "n_star gamma=1"); `sanitizer` replaces the knob (tests
    use the identity and a constant); its values still go through the knob's checks. `timings`, when given,
    receives one dict per row (parameter label and the seconds of each phase), never part of the file.
    `knob_options` are get_knob's sigma or calibration_std, recorded in the file's attributes.
    """
    from tqdm import tqdm

    from ifmsan._shared.torchrepro import reproducible_torch
    from ifmsan.core.knobs import check_knob_values, knob_with
    from ifmsan.steps.extract import provenance
    from ifmsan.steps.sweep import check_layer

    o = (options or AttackOptions()).check()
    check_layer(net, layer)
    knob_options = dict(knob_options or {})
    spec = knob_with(knob, knob_options)
    checked = check_knob_values(spec, values, name="attack values")
    identity = IDENTITY[spec.parameter]
    if identity in checked:
        raise ValueError(
            f"attack values hold {identity}, the identity; 'unsanitized' is always scored as the first row"
        )
    roles = list(roles) if roles is not None else ["grid"] * len(checked)
    if len(roles) != len(checked):
        raise ValueError(f"roles has {len(roles)} entries for {len(checked)} values")
    sanitize = sanitizer or knob_sanitizer(knob, **knob_options)
    disable = None if progress is None else not progress

    with reproducible_torch(seed=o.seed, threads=o.threads):
        started = time.perf_counter()
        data = _prepare(net, layer=layer, options=o, progress=progress)
        if timings is not None:
            timings.append({"parameter": "prepare", "data_and_ifms": time.perf_counter() - started})
        unsanitized = _probabilities(lambda x: net.forward_from(layer, x), data.test_ifms, o.batch_size)
        p0 = scores.mean_target_probability(unsanitized, data.test_labels)
        rows, examples = [], []
        labels = [UNSANITIZED, *(str(v) for v in checked)]
        for row, value in enumerate(tqdm([None, *checked], desc=f"attacks {layer}/{knob}", unit="value",
                                         disable=disable)):  # fmt: skip
            clock: dict[str, float] = {}
            started = time.perf_counter()
            if value is None:
                train_ifms, test_ifms = data.train_ifms, data.test_ifms
            else:
                train_ifms = _sanitize_all(sanitize, data.train_ifms, value, seed=o.seed, split="train")
                test_ifms = _sanitize_all(sanitize, data.test_ifms, value, seed=o.seed, split="test")
            clock["sanitize"] = time.perf_counter() - started
            result, pictures = _row(net, data, layer=layer, train_ifms=train_ifms, test_ifms=test_ifms, row=row,
                                    p0=p0, options=o, clock=clock, knob=knob,
                                    value=identity if value is None else value)  # fmt: skip
            if timings is not None:
                timings.append({"parameter": labels[row], **clock})
            rows.append([result[m] for m in o.metrics()])
            examples.append(pictures)

    mean_image = np.broadcast_to(data.train_pictures.numpy().mean(axis=0).transpose(1, 2, 0), data.test_pictures.shape)
    attrs = provenance(
        net, ifmsan_kind="attack", layer=layer, knob=knob, parameter=spec.parameter, p0=p0,
        original_accuracy=scores.accuracy(unsanitized.argmax(axis=1), data.test_labels),
        label_source=data.label_source, label_majority=scores.majority_rate(data.test_labels),
        attribute="background photo (ifmsan.minidata.BACKGROUNDS)", attribute_chance=1.0 / N_ATTRIBUTES,
        attribute_majority=scores.majority_rate(data.test.attributes),
        mean_image_psnr=scores.psnr(mean_image, data.test_pictures),
        mean_image_ssim=scores.ssim(mean_image, data.test_pictures),
        data="ifmsan.minidata: train split for training, test split held out", **o.recorded(),
        **{f"knob_{name}": value for name, value in knob_options.items()},
    )  # fmt: skip
    if o.optimize_images:
        attrs["mean_image_mse"] = float(((mean_image - data.test_pictures) ** 2).mean())
    size = o.resolution
    return xr.Dataset(
        {
            "scores": (("parameter", "metric"), np.asarray(rows, dtype=np.float64)),
            "reconstruction": (
                ("parameter", "example", "y", "x", "rgb"),
                np.stack(examples).reshape(len(rows), o.n_examples, size, size, 3),
            ),
            "original": (
                ("example", "y", "x", "rgb"),
                np.round(data.test_pictures[: o.n_examples] * 255.0).astype(np.uint8),
            ),
        },  # fmt: skip
        coords={
            "parameter": labels,
            "value": ("parameter", np.asarray([identity, *checked], dtype=np.float64)),
            "role": ("parameter", [UNSANITIZED, *roles]),
            "metric": list(o.metrics()),
            "example": np.arange(o.n_examples),
        },
        attrs=attrs,
    )
