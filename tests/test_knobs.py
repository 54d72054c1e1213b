"""The knobs' random streams: fixed per knob, never taken from the position of a name in a list of knobs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ifmsan.cli import main
from ifmsan.core import knobs
from ifmsan.steps.io import read_netcdf

IFM = torch.from_numpy(np.random.default_rng(7).standard_normal((3, 5, 4)).astype(np.float32))


@pytest.mark.parametrize(("name", "stream"), [("laplace", 4), ("gaussian", 5)])
def test_noise_draws_come_from_the_knobs_fixed_stream(name: str, stream: int) -> None:
    """Written out by hand: unit-std noise from default_rng([seed, stream]) times the IFM's std, at each scale."""
    rng = np.random.default_rng([9, stream])
    unit = rng.laplace(0.0, np.sqrt(0.5), IFM.shape) if name == "laplace" else rng.standard_normal(IFM.shape)
    x = IFM.numpy().astype(np.float64)
    expected = np.stack([(x + s * unit * x.std()).astype(np.float32) for s in (0.5, 2.0)])
    got = knobs.get_knob(name, seed=9).apply_batch(IFM, [0.5, 2.0])
    assert np.array_equal(got.numpy(), expected)


def test_every_noise_knob_has_its_own_stream() -> None:
    assert set(knobs.NOISE_STREAMS) == set(knobs.NOISES + knobs.RANDOMIZED)
    assert len(set(knobs.NOISE_STREAMS.values())) == len(knobs.NOISE_STREAMS)


def test_reordering_the_knob_list_changes_no_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    before = {
        name: knobs.get_knob(name, seed=3).apply_batch(IFM, [1.0] if name in knobs.NOISES else [2, 5])
        for name in knobs.KNOBS
    }
    monkeypatch.setattr(knobs, "KNOBS", tuple(reversed(knobs.KNOBS)))
    monkeypatch.setattr(knobs, "NOISES", tuple(reversed(knobs.NOISES)))
    for name, value in before.items():
        again = knobs.get_knob(name, seed=3).apply_batch(IFM, [1.0] if name in knobs.NOISES else [2, 5])
        assert torch.equal(again, value), name


def test_reordering_sweep_knob_gives_the_same_files(tmp_path: Path) -> None:
    """`ifmsan sweep --knob` (the workflow passes config["knobs"] there) in two orders: the same curves."""
    image = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(image)
    ifms = tmp_path / "ifms.nc"
    model = ["--model", "alexnet_mini"]
    assert main(["extract", *model, "--image", str(image), "--image-id", "img", "--out", str(ifms)]) == 0
    order = ["laplace", "random", "gaussian"]
    for name, knob_list in (("a", order), ("b", order[::-1])):
        assert main(["sweep", *model, "--ifms", str(ifms), "--layer", "pool5", "--values", "2:4", "--scales", "0.5,1",
                     "--seed", "2", "--knob", *knob_list, "--out-dir", str(tmp_path / name)]) == 0  # fmt: skip
    for knob in order:
        a, b = read_netcdf(tmp_path / "a" / f"{knob}.nc"), read_netcdf(tmp_path / "b" / f"{knob}.nc")
        assert np.array_equal(a["probability"].values, b["probability"].values), knob
        assert not np.array_equal(a["probability"].values, np.full_like(a["probability"].values, a.attrs["p0"])), knob
