"""`ifmsan train-mini` and ifmsan.steps.train.train_mini: outputs, reproducibility, failure modes."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ifmsan import models
from ifmsan.cli import main
from ifmsan.steps.minidata import CLASS_NAMES, make_dataset
from ifmsan.steps.train import DEFAULTS, AccuracyTooLow, train_mini

TINY: dict[str, Any] = {"epochs": 1, "n_train_per_class": 2, "n_test_per_class": 2, "seed": 3, "threads": 2}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One tiny training run shared by the tests that only read its outputs."""
    out = tmp_path_factory.mktemp("tiny")
    metrics = train_mini(out_dir=out, n_examples=3, **TINY)
    return out, metrics


def test_tiny_run_writes_every_output(tiny_run: tuple[Path, dict[str, Any]]) -> None:
    out, metrics = tiny_run
    names = sorted(p.name for p in out.iterdir())
    assert names == ["alexnet_mini.pt", "alexnet_mini.pt.sha256", "examples", "metrics.json"]
    data = (out / "alexnet_mini.pt").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert (out / "alexnet_mini.pt.sha256").read_text() == f"{digest}  alexnet_mini.pt\n"  # sha256sum -c format
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["weights_sha256"] == digest and on_disk["held_out_accuracy"] == metrics["held_out_accuracy"]
    assert on_disk["stand_in"] is True and "stand-in" in on_disk["note"] and "AlexNet" in on_disk["note"]
    assert on_disk["class_names"] == list(CLASS_NAMES)
    assert on_disk["n_train"] == 2 * len(CLASS_NAMES) and on_disk["n_test"] == 2 * len(CLASS_NAMES)
    assert [e["epoch"] for e in on_disk["epochs"]] == [1]
    assert np.isfinite(on_disk["epochs"][0]["train_loss"]) and 0 <= on_disk["epochs"][0]["train_accuracy"] <= 1
    assert on_disk["threads"] == 2 and on_disk["seed"] == 3 and on_disk["torch_version"] == torch.__version__
    assert on_disk["wall_seconds"] > 0 and on_disk["passed"] is True
    matrix = np.array(on_disk["confusion_matrix"])
    assert matrix.shape == (len(CLASS_NAMES),) * 2 and matrix.sum(axis=1).tolist() == [2] * len(CLASS_NAMES)
    assert np.trace(matrix) / matrix.sum() == pytest.approx(on_disk["held_out_accuracy"])
    examples = sorted(p.name for p in (out / "examples").iterdir())
    assert len(examples) == 4 and "manifest.tsv" in examples
    assert not [p for p in out.rglob(".*")]  # no temporary files left behind


def test_weights_load_and_reproduce_the_reported_accuracy(tiny_run: tuple[Path, dict[str, Any]]) -> None:
    out, metrics = tiny_run
    net = models.load("alexnet_mini", weights=out / "alexnet_mini.pt")
    assert net.weights_info["trained"] is True and net.weights_info["stand_in"] is True
    assert net.weights_info["sha256"] == metrics["weights_sha256"]
    images, labels = make_dataset(n_per_class=TINY["n_test_per_class"], split="test", seed=TINY["seed"], progress=False)
    from PIL import Image

    with torch.no_grad():
        logits = net(torch.stack([net.preprocess(Image.fromarray(image)) for image in images]))
    predictions = logits.argmax(dim=1).numpy()
    assert float((predictions == labels).mean()) == metrics["held_out_accuracy"]
    naive = np.zeros((len(CLASS_NAMES), len(CLASS_NAMES)), dtype=int)
    for truth, guess in zip(labels, predictions, strict=True):
        naive[truth, guess] += 1
    assert naive.tolist() == metrics["confusion_matrix"]
    untrained = models.load("alexnet_mini", seed=TINY["seed"])
    assert any(
        not torch.equal(a, b) for a, b in zip(untrained.state_dict().values(), net.state_dict().values(), strict=True)
    )


def test_same_seed_gives_bit_identical_weights_also_through_the_cli(
    tiny_run: tuple[Path, dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = tiny_run
    code = main(
        ["train-mini", "--out", str(tmp_path / "cli"), "--epochs", "1", "--train-per-class", "2", "--test-per-class", "2",
         "--seed", "3", "--threads", "2"]
    )  # fmt: skip
    assert code == 0
    assert "stand-in" in capsys.readouterr().out
    assert (tmp_path / "cli" / "alexnet_mini.pt").read_bytes() == (out / "alexnet_mini.pt").read_bytes()
    assert (tmp_path / "cli" / "examples" / "manifest.tsv").is_file()


def test_training_leaves_global_torch_state_alone(tmp_path: Path) -> None:
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(1234)
    expected_next = torch.rand(3)
    torch.manual_seed(1234)
    with pytest.raises(AccuracyTooLow, match="min_accuracy") as failure:
        train_mini(out_dir=tmp_path, epochs=1, n_train_per_class=1, n_test_per_class=1, seed=1, min_accuracy=1.0)
    assert torch.equal(torch.rand(3), expected_next)
    assert torch.get_num_threads() == threads and torch.are_deterministic_algorithms_enabled() == deterministic
    # a failed run writes its metrics but no weights
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["passed"] is False and metrics["weights_sha256"] is None and metrics["stand_in"] is True
    assert metrics["held_out_accuracy"] == failure.value.metrics["held_out_accuracy"] < 1.0


def test_cli_min_accuracy_failure_exits_1_and_removes_stale_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "alexnet_mini.pt").write_bytes(b"stale")
    (tmp_path / "alexnet_mini.pt.sha256").write_text("stale\n")
    code = main(["train-mini", "--out", str(tmp_path), "--epochs", "1", "--train-per-class", "1", "--test-per-class", "1",
                 "--min-accuracy", "1"])  # fmt: skip
    assert code == 1
    assert "held-out accuracy" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


@pytest.mark.parametrize(
    ("option", "value", "word"),
    [
        ("--epochs", "-1", "epochs"),
        ("--epochs", "0", "epochs"),
        ("--train-per-class", "0", "train"),
        ("--test-per-class", "-2", "test"),
        ("--seed", "-1", "seed"),
        ("--threads", "0", "threads"),
        ("--min-accuracy", "1.5", "min"),
        ("--min-accuracy", "nan", "min"),
    ],
)
def test_cli_rejects_bad_options_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, word: str
) -> None:
    out = tmp_path / "never"
    started = time.perf_counter()
    assert main(["train-mini", "--out", str(out), option, value]) == 2
    err = capsys.readouterr().err
    assert word in err and value in err
    assert not out.exists() and time.perf_counter() - started < 5


def test_out_must_be_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x")
    assert main(["train-mini", "--out", str(target)]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert target.read_text() == "x"


def test_cli_defaults_are_the_library_defaults() -> None:
    from ifmsan.commands import train_mini as command

    mapping = {"epochs": "epochs", "train_per_class": "n_train_per_class", "test_per_class": "n_test_per_class",
               "seed": "seed", "threads": "threads", "min_accuracy": "min_accuracy"}  # fmt: skip
    assert {key: DEFAULTS[name] for key, name in mapping.items()} == command._DEFAULTS


@pytest.mark.slow
def test_default_training_reaches_90_percent(tmp_path: Path) -> None:
    """The issue's acceptance: default settings, 2 threads, >= 90 % held-out accuracy.

    The time (about 150 s on an idle 2-core machine) is printed, not asserted: speed goals live in benchmarks/.
    """
    started = time.perf_counter()
    metrics = train_mini(out_dir=tmp_path, min_accuracy=0.9)
    wall = time.perf_counter() - started
    print(f"\nheld-out accuracy {metrics['held_out_accuracy']:.4f}, wall {wall:.1f} s, "
          f"{metrics['seconds_per_epoch']:.1f} s/epoch")  # fmt: skip
    assert metrics["held_out_accuracy"] >= 0.90


@pytest.mark.parametrize("failing", ["examples", "weights"])
def test_a_failure_while_writing_leaves_no_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """Fault injection: a full disk while writing the examples or the weights themselves leaves no weights, no
    checksum and no metrics that describe them, also none from an earlier run."""
    import contextlib
    import errno

    import ifmsan._shared.atomic
    import ifmsan.steps.train

    (tmp_path / "alexnet_mini.pt").write_bytes(b"stale weights of an earlier run")
    (tmp_path / "alexnet_mini.pt.sha256").write_text("0" * 64 + "  alexnet_mini.pt\n")
    full = OSError(errno.ENOSPC, "No space left on device")
    if failing == "examples":

        def no_examples(*args: Any, **kwargs: Any) -> None:
            raise full

        monkeypatch.setattr(ifmsan.steps.train, "write_examples", no_examples)
    else:
        real = ifmsan._shared.atomic.atomic_path

        @contextlib.contextmanager
        def full_for_weights(path: Any, **kwargs: Any) -> Any:
            if Path(path).name == "alexnet_mini.pt":
                raise full
            with real(path, **kwargs) as tmp:
                yield tmp

        monkeypatch.setattr(ifmsan._shared.atomic, "atomic_path", full_for_weights)
    with pytest.raises(OSError, match="No space left"):
        train_mini(out_dir=tmp_path, n_examples=2, **TINY)
    assert not {"alexnet_mini.pt", "alexnet_mini.pt.sha256", "metrics.json"} & {p.name for p in tmp_path.iterdir()}
    assert not list(tmp_path.rglob(".*.part*"))
