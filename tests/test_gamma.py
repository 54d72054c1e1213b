"""The γ controller (paper Figure 3) against n*(γ) read off a full sweep, its errors, and its hook form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ifmsan
from ifmsan import models
from ifmsan.core.controller import GammaNotReached, GammaSanitizer


@pytest.fixture(scope="module")
def net() -> models.LayeredNet:
    return models.load("alexnet_mini", seed=5)


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, size=(3, 227, 227)).astype(np.float32))


def naive_curve(net: models.LayeredNet, ifm: torch.Tensor, layer: str, windows: range, target: int) -> list[float]:
    with torch.inference_mode():
        return [
            float(torch.softmax(net.forward_from(layer, ifmsan.sample_and_hold(ifm, n)[None]).double(), 1)[0, target])
            for n in windows
        ]


@pytest.mark.parametrize("layer", ["pool5", "norm2", "fc6"])
def test_controller_window_is_the_first_that_meets_the_bound(
    net: models.LayeredNet, x: torch.Tensor, layer: str
) -> None:
    with torch.inference_mode():
        ifm = net.ifms(x[None])[layer][0]
        original = torch.softmax(net(x[None]).double(), 1)[0]
    target = int(original.argmax())
    p0 = float(original[target])
    windows = range(2, 60)
    curve = naive_curve(net, ifm, layer, windows, target)
    reachable = math.log2(p0 / min(curve))
    assert reachable > 0.001, "the test needs a curve that falls below p0"
    for gamma in (reachable * 0.1, reachable * 0.5, reachable * 0.95):
        result = GammaSanitizer(net, layer, gamma, windows=windows, batch_size=7)(x)
        expected = next(n for n, p in zip(windows, curve, strict=True) if p <= p0 / 2**gamma)
        assert result.window == expected and result.target == target
        assert result.probability <= result.bound == pytest.approx(p0 / 2**gamma)
        assert result.epsilon == pytest.approx(
            math.log(p0 / result.probability)
        ) and result.epsilon >= gamma * math.log(2)
        assert result.prediction == int(result.probabilities.argmax())
        # it evaluates whole batches only up to the one holding n*
        position = expected - windows[0]
        assert result.evaluated == min(len(windows), (position // 7 + 1) * 7)
    with pytest.raises(GammaNotReached, match="not reachable") as info:
        GammaSanitizer(net, layer, reachable * 1.05 + 0.01, windows=windows)(x)
    assert info.value.min_probability == pytest.approx(min(curve), rel=1e-5)


def test_window_one_is_the_identity_so_gamma_is_never_met(net: models.LayeredNet, x: torch.Tensor) -> None:
    with pytest.raises(GammaNotReached):
        GammaSanitizer(net, "pool5", 0.1, windows=[1])(x)


def test_controller_as_forward_pre_hook(net: models.LayeredNet, x: torch.Tensor) -> None:
    batch = torch.stack([x, x.flip(-1)])
    controller = GammaSanitizer(net, "pool5", 0.05, windows=range(2, 80))
    handle = controller.register()
    try:
        with torch.inference_mode():
            hooked = net(batch)
    finally:
        handle.remove()
    assert len(controller.last_results) == 2
    with torch.inference_mode():
        ifms = net.ifms(batch)["pool5"]
        for i, result in enumerate(controller.last_results):
            assert result.window == controller(batch[i]).window
            manual = net.forward_from("pool5", ifmsan.sample_and_hold(ifms[i], result.window)[None])[0]
            assert torch.allclose(hooked[i], manual, atol=1e-6)
        assert torch.equal(net(batch), net.forward_from("conv1", batch))  # hook removed: plain forward again


def test_hook_never_returns_the_unsanitized_output(net: models.LayeredNet, x: torch.Tensor) -> None:
    handle = GammaSanitizer(net, "fc7", 50.0, windows=range(2, 6)).register()
    try:
        with pytest.raises(GammaNotReached), torch.inference_mode():
            net(x[None])
    finally:
        handle.remove()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layer": "pool9"}, "not an IFM layer"),
        ({"gamma": 0}, "gamma must be a finite number > 0"),
        ({"gamma": float("nan")}, "gamma must be"),
        ({"windows": []}, "non-empty increasing"),
        ({"windows": [3, 2]}, "non-empty increasing"),
        ({"windows": [0, 2]}, "windows must be an integer >= 1"),
        ({"select": "median"}, "select must be one of"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
    ],
)
def test_bad_arguments(net: models.LayeredNet, kwargs: dict, message: str) -> None:
    arguments = {"layer": "pool5", "gamma": 1.0, **kwargs}
    layer, gamma = arguments.pop("layer"), arguments.pop("gamma")
    with pytest.raises(ValueError, match=message):
        GammaSanitizer(net, layer, gamma, **arguments)


def test_one_image_at_a_time(net: models.LayeredNet, x: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="one image"):
        GammaSanitizer(net, "pool5", 1.0)(torch.stack([x, x]))


def test_controller_table_rows_against_a_sweep_and_a_disagreeing_one(net: models.LayeredNet, x: torch.Tensor) -> None:
    import xarray as xr

    from ifmsan.core.controller import controller_table

    layer, windows = "pool5", range(2, 40)
    with torch.inference_mode():
        ifm = net.ifms(x[None])[layer][0]
        original = torch.softmax(net(x[None]).double(), 1)[0]
    target = int(original.argmax())
    p0 = float(original[target])
    curve = naive_curve(net, ifm, layer, windows, target)
    reachable = math.log2(p0 / min(curve))
    gammas = [reachable / 2, reachable * 1.05 + 0.01]
    expected = next(n for n, p in zip(windows, curve, strict=True) if p <= p0 / 2 ** gammas[0])
    sweep = xr.Dataset(
        {"probability": (("window",), np.array(curve))}, coords={"window": list(windows)}, attrs={"p0": p0}
    )
    frame = controller_table(net, {layer: ifm}, layers=[layer], gammas=gammas, windows=list(windows), target=target,
                             references={layer: sweep}, image_id="img")  # fmt: skip
    assert list(frame["status"]) == ["met", "not reached"]
    assert frame["window"][0] == expected and frame["sweep_n_star"][0] == expected and frame["window"].isna()[1]
    assert list(frame["matches_sweep"]) == [True, True] and set(frame["image_id"]) == {"img"}
    wrong = sweep.copy(data={"probability": np.roll(sweep["probability"].values, 3)})
    with pytest.raises(ValueError, match="disagrees with the sweep"):
        controller_table(net, {layer: ifm}, layers=[layer], gammas=gammas[:1], windows=list(windows), target=target,
                         references={layer: wrong})  # fmt: skip
    with pytest.raises(ValueError, match="no layer 'fc6'"):
        controller_table(
            net, {layer: ifm}, layers=[layer, "fc6"], gammas=gammas[:1], windows=list(windows), target=target
        )


def test_one_pass_finds_what_each_single_gamma_controller_finds_at_the_cost_of_the_largest(
    net: models.LayeredNet, x: torch.Tensor
) -> None:
    """controller_table searches all γ of a layer in one growing pass: every row equals a GammaSanitizer for that γ
    alone, and the pass sanitizes no more windows than the largest n*(γ) needs (all of them when some γ is not met)."""
    from ifmsan.core.controller import controller_table

    layer, windows, batch = "pool5", list(range(2, 60)), 5
    with torch.inference_mode():
        ifm = net.ifms(x[None])[layer][0]
        original = torch.softmax(net(x[None]).double(), 1)[0]
    target = int(original.argmax())
    curve = naive_curve(net, ifm, layer, windows, target)
    reachable = math.log2(float(original[target]) / min(curve))
    gammas = [reachable * f for f in (0.1, 0.4, 0.8)]
    singles = {}
    for gamma in gammas:
        controller = GammaSanitizer(net, layer, gamma, windows=windows, batch_size=batch, target=target)
        singles[gamma] = controller.sanitize_ifm(ifm)[0]
    sanitized: list[int] = []
    original_apply = net.forward_from

    def counting_forward(start: str, batch_in: torch.Tensor, **options: object) -> torch.Tensor:
        sanitized.append(batch_in.shape[0])
        return original_apply(start, batch_in, **options)

    net.forward_from = counting_forward  # type: ignore[method-assign]
    try:
        frame = controller_table(net, {layer: ifm}, layers=[layer], gammas=gammas, windows=windows, target=target,
                                 batch_size=batch)  # fmt: skip
    finally:
        del net.forward_from
    for row, gamma in zip(frame.itertuples(), gammas, strict=True):
        single = singles[gamma]
        assert (row.window, row.probability, row.p0, row.prediction, row.evaluated) == (
            single.window, single.probability, single.p0, single.prediction, single.evaluated,
        )  # fmt: skip
    largest = max(single.window for single in singles.values())
    needed = -(-(windows.index(largest) + 1) // batch) * batch  # whole batches up to the largest n*
    assert sum(sanitized) == 1 + needed  # one unsanitized forward for p0, then the batches of the one pass
    with pytest.raises(GammaNotReached):
        GammaSanitizer(net, layer, reachable * 1.5, windows=windows, batch_size=batch, target=target).sanitize_ifm(ifm)
    sanitized.clear()
    net.forward_from = counting_forward  # type: ignore[method-assign]
    try:
        frame = controller_table(net, {layer: ifm}, layers=[layer], gammas=[*gammas, reachable * 1.5],
                                 windows=windows, target=target, batch_size=batch)  # fmt: skip
    finally:
        del net.forward_from
    assert list(frame["status"]) == ["met", "met", "met", "not reached"]
    assert sum(sanitized) == 1 + len(windows)  # an unmet γ scans every window once, as the sweep does
