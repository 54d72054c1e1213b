"""Messages that help — bad files, outputs that are folders, a full disk, offline weights."""

from __future__ import annotations

import errno
import urllib.error
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr

from ifmsan import models
from ifmsan._shared.atomic import atomic_path
from ifmsan.cli import error_message, main
from ifmsan.steps.io import write_netcdf


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and stderr of one in-process CLI call."""
    code = main(argv)
    return code, capsys.readouterr().err


def files_in(folder: Path) -> list[str]:
    """Every name in a folder, temporary (dot) files included."""
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture()
def ifm_npy(tmp_path: Path) -> Path:
    np.save(tmp_path / "in.npy", np.linspace(-1, 1, 60, dtype=np.float32).reshape(3, 4, 5))
    return tmp_path / "in.npy"


# --------------------------------------------------------------------------------------------------- IN files


def _write_bad_npy(path: Path, kind: str) -> None:
    """A file named .npy that is not a usable IFM."""
    if kind == "text":
        path.write_text("0.1 0.2 0.3\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        np.save(path, np.ones(100, np.float32))
        path.write_bytes(path.read_bytes()[:140])
    elif kind == "header-only":
        path.write_bytes(b"\x93NUMPY\x01\x00")
    elif kind == "objects":
        np.save(path, np.array([1, None], dtype=object), allow_pickle=True)
    elif kind == "integers":
        np.save(path, np.arange(6))
    elif kind == "complex":
        np.save(path, np.ones(3, np.complex64))
    elif kind == "nan":
        np.save(path, np.array([1.0, np.nan], np.float32))
    elif kind == "folder":
        path.mkdir()


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("text", "is not a .npy array file (no NUMPY header"),
        ("empty", "is not a .npy array file (no NUMPY header"),
        ("truncated", "is not a readable .npy array"),
        ("header-only", "is not a readable .npy array"),
        ("objects", "is not a readable .npy array: it holds Python objects"),
        ("integers", "holds dtype int64; expected a floating-point IFM"),
        ("complex", "holds dtype complex64; expected a floating-point IFM"),
        ("nan", "contains 1 NaN or infinite value(s)"),
        ("folder", "is a directory; expected a .npy file"),
    ],
    ids=["text", "empty", "truncated", "header-only", "objects", "integers", "complex", "nan", "folder"],
)
def test_sanitize_names_a_bad_input_file(
    tmp_path: Path, kind: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "x.npy"
    _write_bad_npy(source, kind)
    code, err = run_cli(["sanitize", "--window", "2", str(source), str(tmp_path / "o.npy")], capsys)
    assert code == 2 and f"IN {source}" in err and message in err and "Traceback" not in err
    assert files_in(tmp_path) == ["x.npy"]


# --------------------------------------------------------------------------------------------------- outputs


def test_atomic_path_refuses_a_directory_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "out.csv").mkdir()
    with (
        pytest.raises(ValueError, match="is a directory; expected the path of a file"),
        atomic_path(tmp_path / "out.csv") as tmp,
    ):
        tmp.write_text("x")
    assert files_in(tmp_path) == ["out.csv"] and files_in(tmp_path / "out.csv") == []


def _verb_argv(verb: str, out: Path, ifm_npy: Path) -> list[str]:
    """A command line of `verb` whose output is `out` and whose other inputs would be fine or are never read."""
    missing = str(ifm_npy.with_name("missing.nc"))
    model = ["--model", "alexnet_mini"]
    return {
        "sanitize": ["sanitize", "--window", "2", str(ifm_npy), str(out)],
        "extract": ["extract", *model, "--image", "minidata:test:0", "--image-id", "x", "--out", str(out)],
        "sweep": ["sweep", *model, "--ifms", missing, "--layer", "fc7", "--out", str(out)],
        "sweep-out-dir": ["sweep", *model, "--ifms", missing, "--layer", "fc7", "--out-dir", str(out)],
        "gamma": ["gamma", *model, "--ifms", missing, "--layers", "fc7", "--out", str(out)],
        "report": ["report", "--sweeps", missing, "--out-dir", str(out)],
        "figures": ["figures", "--sweeps", missing, "--out-dir", str(out)],
        "train-mini": ["train-mini", "--out", str(out)],
        "fetch": ["fetch", "file:///nonexistent/x.bin", str(out), "--sha256", "0" * 64],
    }[verb]


@pytest.mark.parametrize(
    ("verb", "name"),
    [("sanitize", "o.npy"), ("extract", "x.nc"), ("sweep", "s.nc"), ("gamma", "g.csv"), ("fetch", "w.bin")],
)
def test_an_output_file_that_is_a_directory_is_refused_first(
    verb: str, name: str, ifm_npy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ifm_npy.with_name(name)
    out.mkdir()
    code, err = run_cli(_verb_argv(verb, out, ifm_npy), capsys)
    assert code == 2 and f"{out} is a directory" in err and "not found" not in err
    assert files_in(ifm_npy.parent) == sorted(["in.npy", name]) and files_in(out) == []


@pytest.mark.parametrize(
    ("verb", "name"), [("sanitize", "o.npy"), ("sweep", "s.nc"), ("gamma", "g.csv"), ("fetch", "w.bin")]
)
def test_an_output_file_below_a_file_is_refused_first(
    verb: str, name: str, ifm_npy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ifm_npy / name  # in.npy is a file
    code, err = run_cli(_verb_argv(verb, out, ifm_npy), capsys)
    assert code == 2 and f"{ifm_npy} is a file, not a directory" in err
    assert files_in(ifm_npy.parent) == ["in.npy"]


@pytest.mark.parametrize("verb", ["sweep-out-dir", "report", "figures", "train-mini"])
@pytest.mark.parametrize("below", [False, True])
def test_an_out_dir_that_is_a_file_is_refused_first(
    verb: str, below: bool, ifm_npy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ifm_npy / "sub" if below else ifm_npy
    before = ifm_npy.read_bytes()
    code, err = run_cli(_verb_argv(verb, out, ifm_npy), capsys)
    what = f"lies below the file {ifm_npy}" if below else "is a file"
    assert code == 2 and f"{out} {what}, not a directory" in err and "not found" not in err
    assert files_in(ifm_npy.parent) == ["in.npy"] and ifm_npy.read_bytes() == before


# --------------------------------------------------------------------------------------------------- a full disk


def _disk_full(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_atomic_path_turns_a_full_disk_into_one_line_naming_the_output(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with (
        pytest.raises(OSError, match=f"cannot write {target}: No space left on device") as caught,
        atomic_path(target) as tmp,
    ):
        tmp.write_bytes(b"partial")
        _disk_full()
    assert caught.value.errno == errno.ENOSPC and files_in(tmp_path) == []


def test_cli_sanitize_on_a_full_disk(
    ifm_npy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_open = Path.open

    class HalfWritten:
        """A file that takes a few bytes and then finds the disk full."""

        def __init__(self, handle: Any) -> None:
            self.handle = handle

        def __enter__(self) -> HalfWritten:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def write(self, data: object) -> None:
            self.handle.write(b"\x93NUMPY half")
            _disk_full()

    def open_full(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(self, mode, *args, **kwargs)
        return HalfWritten(handle) if "w" in mode and self.name.endswith(".npy") else handle

    monkeypatch.setattr(Path, "open", open_full)
    out = ifm_npy.with_name("o.npy")
    code, err = run_cli(["sanitize", "--window", "2", str(ifm_npy), str(out)], capsys)
    assert code == 2
    assert err.strip() == f"ifmsan sanitize: error: cannot write {out}: No space left on device"
    assert files_in(ifm_npy.parent) == ["in.npy"]


def test_write_netcdf_on_a_full_disk_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def to_netcdf_half(self: xr.Dataset, path: object, **kwargs: object) -> None:
        Path(str(path)).write_bytes(b"CDF half")
        _disk_full()

    monkeypatch.setattr(xr.Dataset, "to_netcdf", to_netcdf_half)
    with pytest.raises(OSError, match="cannot write .*s.nc: No space left on device"):
        write_netcdf(xr.Dataset({"p": ("n", np.ones(3))}), tmp_path / "s.nc")
    assert files_in(tmp_path) == []


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "out.nc"), "No space left on device: out.nc"),
        (PermissionError(errno.EACCES, "Permission denied", "/root/x"), "Permission denied: /root/x"),
        (
            OSError(errno.ENOSPC, "cannot write out.nc: No space left on device"),
            "cannot write out.nc: No space left on device",
        ),
        (FileNotFoundError("--weights file not found: w.pt"), "--weights file not found: w.pt"),
        (KeyError("no variable 'layer'"), "no variable 'layer'"),
        (ValueError("plain"), "plain"),
    ],
    ids=["enospc", "eacces", "enospc-no-filename", "file-not-found", "key-error", "value-error"],
)
def test_error_message_is_one_clean_line(exc: BaseException, expected: str) -> None:
    assert error_message(exc) == expected


def test_cli_turns_any_os_error_into_exit_2(
    ifm_npy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ifmsan.commands import sanitize as command

    def denied(path: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))  # root reads any file: simulate it

    monkeypatch.setattr(command, "read_npy", denied)
    code, err = run_cli(["sanitize", "--window", "2", str(ifm_npy), str(ifm_npy.with_name("o.npy"))], capsys)
    assert code == 2 and err.strip() == f"ifmsan sanitize: error: Permission denied: {ifm_npy}"


# --------------------------------------------------------------------------------------------------- offline weights


@pytest.fixture()
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub folder and a download that fails as without network (independent of the real network)."""

    def no_network(url: str, dst: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


def test_torchvision_weights_offline_say_what_failed_and_where_the_file_goes(offline_hub: Path) -> None:
    with pytest.raises(ValueError) as caught:
        models.load("torchvision:resnet18", weights="IMAGENET1K_V1")
    message = str(caught.value)
    assert "torchvision:resnet18 weights ResNet18_Weights.IMAGENET1K_V1" in message
    assert "the download of https://download.pytorch.org/models/resnet18-f37072fd.pth failed" in message
    assert "URLError" in message and str(offline_hub / "resnet18-f37072fd.pth") in message


def test_torchvision_bad_cached_weights_say_delete_it(offline_hub: Path) -> None:
    offline_hub.mkdir(parents=True)
    (offline_hub / "resnet18-f37072fd.pth").write_text("garbage")
    with pytest.raises(ValueError, match=r"the cached file .*resnet18-f37072fd.pth cannot be used .*delete it"):
        models.load("torchvision:resnet18", weights="DEFAULT")


def test_cli_extract_with_torchvision_weights_offline(
    offline_hub: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["extract", "--model", "torchvision:resnet18", "--weights", "IMAGENET1K_V1", "--image", "minidata:test:0",
            "--image-id", "x", "--out", str(tmp_path / "x.nc")]  # fmt: skip
    code, err = run_cli(argv, capsys)
    assert code == 2 and "download" in err and "resnet18-f37072fd.pth" in err and "Traceback" not in err
    assert not (tmp_path / "x.nc").exists()


# --------------------------------------------------------------------------------------------------- other numbers


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--retries", "-1", "--retries must be an integer >= 0, got -1"),
        ("--timeout", "0", "--timeout must be a finite number > 0, got 0.0"),
        ("--timeout", "-5", "--timeout must be a finite number > 0, got -5.0"),
        ("--timeout", "nan", "--timeout must be a finite number > 0, got nan"),
        ("--timeout", "inf", "--timeout must be a finite number > 0, got inf"),
    ],
    ids=["retries--1", "timeout-0", "timeout--5", "timeout-nan", "timeout-inf"],
)
def test_cli_fetch_bad_numbers(
    option: str, value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["fetch", "file:///nonexistent/x.bin", str(tmp_path / "x.bin"), "--sha256", "0" * 64, f"{option}={value}"]
    code, err = run_cli(argv, capsys)
    assert code == 2 and message in err and files_in(tmp_path) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["extract", "--model", "alexnet_mini", "--threads", "0", "--image", "minidata:test:0", "--image-id", "x"],
         "--threads must be >= 1, got 0"),
        (["gamma", "--model", "alexnet_mini", "--ifms", "IFMS", "--layers", "fc7", "--batch-size", "0"],
         "--batch-size must be an integer >= 1, got 0"),
        (["gamma", "--model", "alexnet_mini", "--ifms", "IFMS", "--layers", "fc7", "--values", "3,3"], "repeats 3"),
        (["gamma", "--model", "alexnet_mini", "--ifms", "IFMS", "--layers", "fc7", "--values", "0:4"], "0 is not allowed"),
    ],
    ids=['extract-threads-0', 'gamma-batch-size-0', 'gamma-values-repeat', 'gamma-values-0:4'],
)  # fmt: skip
def test_cli_other_bad_numbers(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / ("g.csv" if argv[0] == "gamma" else "x.nc")
    argv = [str(tmp_path / "missing.nc") if a == "IFMS" else a for a in argv]
    code, err = run_cli([*argv, "--out", str(out)], capsys)
    assert code == 2 and message in err and files_in(tmp_path) == []
