"""Weight files: checksums for provenance and strict, safe loading of PyTorch state dicts."""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from ifmsan._shared.hashing import file_checksum

__all__ = ["existing_file", "file_checksum", "load_state_dict_file", "local_or_seeded", "read_state_dict"]


def existing_file(path: str | os.PathLike[str], *, what: str) -> Path:
    """The path as a Path, or FileNotFoundError naming what was expected there."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def read_state_dict(path: str | os.PathLike[str], *, what: str) -> Mapping[str, torch.Tensor]:
    """The mapping a state-dict file holds (torch.load with weights_only), or a ValueError naming the file."""
    path = existing_file(path, what=what)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's text would advise weights_only=False: running the file's code
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what_it_holds = (
            f"non-tensor objects ({found.group(1)})" if found else "pickled data the weights-only loader refuses"
        )
        raise ValueError(
            f"{what} {path} holds {what_it_holds} and is refused: weights are loaded without running code from the "
            "file; save a plain state dict of tensors (torch.save(model.state_dict(), ...))"
        ) from None
    except Exception as exc:  # torch raises many types for corrupt or non-torch files
        raise ValueError(f"{what} {path} is not a readable PyTorch state dict ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, Mapping):
        raise ValueError(
            f"{what} {path} must hold a state dict (a mapping of names to tensors), got {type(state).__name__}"
        )
    return state


def load_state_dict_file(path: str | os.PathLike[str], *, into: torch.nn.Module, what: str) -> None:
    """Load a state-dict file into `into` (weights_only); any missing, unexpected or misshapen key is a ValueError."""
    state = read_state_dict(path, what=what)
    expected = into.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(
                f"missing key {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            )
        if unexpected:
            detail.append(
                f"unexpected key {unexpected[0]!r}"
                + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else "")
            )
        raise ValueError(f"{what} {path} does not fit the network: {'; '.join(detail)}")
    for key, target in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{what} {path}: key {key!r} holds a {type(value).__name__}, expected a tensor")
        if tuple(value.shape) != tuple(target.shape):
            raise ValueError(
                f"{what} {path}: key {key!r} has shape {tuple(value.shape)}, the network expects {tuple(target.shape)}"
            )
        if value.dtype.is_floating_point != target.dtype.is_floating_point:
            raise ValueError(f"{what} {path}: key {key!r} has dtype {value.dtype}, the network expects {target.dtype}")
    into.load_state_dict(state, strict=True)


def local_or_seeded(
    model: torch.nn.Module, *, path: Path | None, family: str, arch: str, seed: int
) -> dict[str, object]:
    """Load a local state dict into a freshly seeded model (if given) and say which of the two its weights are."""
    if path is not None:
        load_state_dict_file(path, into=model, what=f"{family}:{arch} weights")
        return {"source": str(path), "sha256": file_checksum(path), "trained": True, "stand_in": False,
                "note": f"{family} {arch} with a local state dict"}  # fmt: skip
    return {"source": f"{family} default initialisation (seed {seed})", "sha256": None, "trained": False,
            "stand_in": False, "note": f"{family} {arch} architecture with untrained random weights"}  # fmt: skip
