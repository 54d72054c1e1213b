"""`ifmsan image` writes, in one process, the very files that extract, sweep (layers and chains) and gamma write."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ifmsan.cli import main

MODEL = ["--model", "alexnet_mini", "--threads", "1", "--attr", "run=test"]
EXTRACT_HASH = ["--attr", "extract_hash=e1"]
CONFIG_HASH = ["--attr", "config_hash=c1"]
IMAGE = ["--image", "minidata:test:0", "--image-id", "t0"]
LAYERS = ["conv3", "pool5"]
KNOBS = ["nonzero_mean", "gaussian"]
VALUES, SCALES, SEED, BATCH = "2:12", "0.5,1", "3", "4"


def run(argv: list[str]) -> None:
    assert main(argv) == 0, argv


def separate_verbs(root: Path, cache: Path) -> None:
    """The workflow's jobs of one image, one verb call each, with the options the rules give them."""
    ifms = root / "ifms" / "t0.nc"
    run(["extract", *MODEL, *EXTRACT_HASH, *IMAGE, "--cache-dir", str(cache), "--out", str(ifms)])
    hashes = [*EXTRACT_HASH, *CONFIG_HASH]
    for layer in LAYERS:
        run(["sweep", *MODEL, *hashes, "--ifms", str(ifms), "--layer", layer, "--knob", *KNOBS, "--values", VALUES,
             "--scales", SCALES, "--seed", SEED, "--batch-size", BATCH, "--out-dir", str(root / "sweeps" / "t0" / layer)])  # fmt: skip
    run(["sweep", *MODEL, *hashes, "--ifms", str(ifms), "--layer", "pool5", "--knob", "nonzero_mean", "--chain",
         "conv2@3", "--values", VALUES, "--batch-size", BATCH, "--out", str(root / "chains/t0/pool5/conv2@3.nc")])  # fmt: skip
    run(["gamma", *MODEL, *hashes, "--ifms", str(ifms), "--layers", *LAYERS, "--gammas", "1", "2", "--values", VALUES,
         "--batch-size", BATCH, "--out", str(root / "gamma" / "controller" / "t0.csv")])  # fmt: skip


def image_argv(root: Path, cache: Path, *, layers: list[str] = LAYERS) -> list[str]:
    """The same work as one `ifmsan image` line."""
    return ["image", *MODEL, *EXTRACT_HASH, "--sweep-attr", "config_hash=c1", *IMAGE, "--cache-dir", str(cache),
            "--ifms-out", str(root / "ifms" / "t0.nc"), "--layers", *layers, "--knobs", *KNOBS, "--values", VALUES,
            "--scales", SCALES, "--seed", SEED, "--batch-size", BATCH, "--sweeps-dir", str(root / "sweeps" / "t0"),
            "--chain", "pool5:conv2@3", "--chains-dir", str(root / "chains" / "t0"), "--controller-layers", *LAYERS,
            "--gammas", "1", "2", "--controller-out", str(root / "gamma" / "controller" / "t0.csv")]  # fmt: skip


def files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("workers", [1, 2, 5])
def test_one_image_job_writes_the_separate_verbs_files_byte_for_byte(tmp_path: Path, workers: int) -> None:
    cache = tmp_path / "cache"
    started = time.perf_counter()
    separate_verbs(tmp_path / "separate", cache)
    separate = time.perf_counter() - started
    started = time.perf_counter()
    run([*image_argv(tmp_path / "joined", cache), "--workers", str(workers)])
    joined = time.perf_counter() - started
    print(f"in-process: separate verbs {separate:.2f} s, one image job {joined:.2f} s, ratio {separate / joined:.2f}")
    before, after = files(tmp_path / "separate"), files(tmp_path / "joined")
    assert len(before) == 1 + len(LAYERS) * len(KNOBS) + 1 + 1
    assert sorted(after) == sorted(before)
    assert [name for name in before if before[name] != after[name]] == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"layers": ["conv3", "nolayer"]}, "--layers value 'nolayer' is not an IFM layer"),
        ({"chain": "pool5:pool5@3"}, "must list layers in network order"),
        ({"chain": "pool5"}, "--chain must look like LAYER:STEPS"),
        ({"workers": "0"}, "--workers must be an integer >= 1, got 0"),
    ],
    ids=["unknown-layer", "chain-out-of-order", "chain-without-layer", "zero-workers"],
)
def test_bad_input_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, object], message: str
) -> None:
    argv = image_argv(tmp_path / "out", tmp_path / "cache", layers=change.get("layers", LAYERS))  # type: ignore[arg-type]
    if "chain" in change:
        argv[argv.index("pool5:conv2@3")] = str(change["chain"])
    if "workers" in change:
        argv += ["--workers", str(change["workers"])]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or files(tmp_path / "out") == {}


def test_a_failure_after_the_extraction_leaves_no_output_of_the_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ifmsan.commands import gamma

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("controller broke")

    monkeypatch.setattr(gamma, "controller_frame", broken)
    assert main(image_argv(tmp_path / "out", tmp_path / "cache")) == 2
    assert "controller broke" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or files(tmp_path / "out") == {}


def test_a_piece_failing_on_a_worker_thread_leaves_no_output_of_the_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ifmsan.commands import sweep

    real = sweep.sweep_layer

    def broken(*args: object, layer: str, **kwargs: object) -> object:
        if layer == "pool5":
            raise ValueError("pool5 sweep broke")
        return real(*args, layer=layer, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sweep, "sweep_layer", broken)
    assert main([*image_argv(tmp_path / "out", tmp_path / "cache"), "--workers", "3"]) == 2
    assert "pool5 sweep broke" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or files(tmp_path / "out") == {}


def test_run_tasks_keeps_the_given_order_and_raises_the_first_failure_in_that_order() -> None:
    import threading

    from ifmsan._shared.tasks import run_tasks

    release = threading.Event()

    def slow() -> str:
        assert release.wait(10)
        return "slow"

    def fast() -> str:
        release.set()  # only a second thread can free `slow`: the tasks really overlap
        return "fast"

    assert run_tasks([slow, fast], workers=2) == ["slow", "fast"]
    assert run_tasks([lambda: 1, lambda: 2], workers=1) == [1, 2]

    def fail(text: str) -> object:
        raise ValueError(text)

    with pytest.raises(ValueError, match="first"):
        run_tasks([lambda: fail("first"), lambda: fail("second")], workers=1)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        run_tasks([lambda: 1], workers=0)
