"""attack_summary: for each attacked (layer, knob) and γ, n*(γ) from the sweeps and the attack scores there.

The verdict asks whether the γ bound survives a server that knows the sanitizer: at the window (or scale) that
meets γ on every image of the run, is ε_adaptive = ln(p0 / p_adaptive) still >= γ ln 2? The decoder and the probe
are reported against their references (the mean training image, the unsanitized decoder, chance).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import xarray as xr

from ifmsan.report.tabletext import markdown_table, missing, stand_in_note
from ifmsan.steps.io import attr_text

SUMMARY_COLUMNS: tuple[str, ...] = (
    "model", "layer", "knob", "parameter", "gamma", "epsilon_bound", "n_star", "legit_accuracy", "epsilon_legit",
    "adaptive_accuracy", "epsilon_adaptive", "epsilon_adaptive_own", "adaptive_accuracy_2b", "epsilon_adaptive_2b",
    "accuracy_move", "n_train_2b", "original_accuracy", "label_majority", "inversion_psnr",
    "psnr_unsanitized", "psnr_mean_image", "inversion_ssim", "ssim_unsanitized", "ssim_mean_image",
    "attribute_accuracy", "attribute_unsanitized", "attribute_chance", "attribute_majority", "holds", "verdict",
    "n_train", "n_test", "stand_in",
)  # fmt: skip
"""Columns of attack_summary.csv, one row per (layer, knob, γ)."""
HOLDS = "holds: epsilon_adaptive >= gamma ln 2 at budgets B and 2B"
BROKEN = "broken: the adaptive server recovers, epsilon_adaptive < gamma ln 2 (at B or 2B)"
NOT_CONVERGED = "not converged: the adaptive server's accuracy moved by 0.02 or more from B to 2B"
UNCHECKED = "holds at B only: not checked with the attacker's budget doubled (give the 2B files)"
CONVERGED = 0.02
"""A verdict holds only if the adaptive server's held-out accuracy moves by less than this between budgets B and 2B."""
UNREACHED = "n*(gamma) not reached in the sweeps"
NO_SWEEPS = "no sweeps: n*(gamma) unknown"


def _score(attack: xr.Dataset, label: str, metric: str) -> float:
    """One score of one row of an attack file."""
    return float(attack["scores"].sel(parameter=label, metric=metric))


def _n_star_row(attack: xr.Dataset, gamma: str) -> str | None:
    """The parameter label whose role names n*(γ), if the file has one."""
    for label, role in zip(attack["parameter"].values, attack["role"].values, strict=True):
        if f"n_star gamma={gamma}" in attr_text(role).split("; "):
            return attr_text(label)
    return None


def _doubled_row(doubled: xr.Dataset | None, value: float) -> str | None:
    """The label of the 2B file's row at the same knob value, if there is one."""
    if doubled is None:
        return None
    for label, found in zip(doubled["parameter"].values, doubled["value"].values, strict=True):
        if attr_text(label) != "unsanitized" and float(found) == value:
            return attr_text(label)
    return None


def verdict(epsilon: float, epsilon_2b: float | None, move: float | None, bound: float) -> str:
    """holds only if ε_adaptive ≥ γ ln 2 at B and at 2B with an accuracy move below CONVERGED; broken if either fails."""
    if not epsilon >= bound or (epsilon_2b is not None and not epsilon_2b >= bound):
        return BROKEN
    if epsilon_2b is None or move is None:
        return UNCHECKED
    return HOLDS if move < CONVERGED else NOT_CONVERGED


def attack_summary(
    attacks: Sequence[xr.Dataset], *, layer_order: Sequence[str] | None = None, doubled: Sequence[xr.Dataset] = ()
) -> pd.DataFrame:
    """One row per (attack file, γ of that file) with SUMMARY_COLUMNS, layers in layer_order then first seen.

    `doubled`: the same (layer, knob) attacked with twice the training images and epochs; the verdict needs it."""
    from ifmsan.report.curves import knob_rank, layer_ranks

    if not attacks:
        raise ValueError("no attack files given; expected at least one written by `ifmsan attack`")
    ranks = layer_ranks((attr_text(a.attrs["layer"]) for a in attacks), layer_order=layer_order)
    ordered = sorted(attacks, key=lambda a: (ranks[attr_text(a.attrs["layer"])], knob_rank(attr_text(a.attrs["knob"]))))
    twins = {(attr_text(d.attrs["layer"]), attr_text(d.attrs["knob"])): d for d in doubled}
    rows = []
    for attack in ordered:
        a = attack.attrs
        twin = twins.get((attr_text(a["layer"]), attr_text(a["knob"])))
        gammas = json.loads(attr_text(a.get("gammas")) or "[]")
        chosen = json.loads(attr_text(a.get("n_star")) or "{}")
        base = {
            "model": attr_text(a["model"]), "layer": attr_text(a["layer"]), "knob": attr_text(a["knob"]),
            "parameter": attr_text(a.get("parameter")), "original_accuracy": float(a["original_accuracy"]),
            "label_majority": float(a["label_majority"]), "psnr_unsanitized": _score(attack, "unsanitized", "inversion_psnr"),
            "psnr_mean_image": float(a["mean_image_psnr"]), "ssim_unsanitized": _score(attack, "unsanitized", "inversion_ssim"),
            "ssim_mean_image": float(a["mean_image_ssim"]),
            "attribute_unsanitized": _score(attack, "unsanitized", "attribute_accuracy"),
            "attribute_chance": float(a["attribute_chance"]), "attribute_majority": float(a["attribute_majority"]),
            "n_train": int(a["n_train"]), "n_test": int(a["n_test"]), "stand_in": int(a.get("stand_in", 0)),
            "n_train_2b": int(twin.attrs["n_train"]) if twin is not None else None,
        }  # fmt: skip
        for gamma in gammas:
            row: dict[str, Any] = {**base, "gamma": float(gamma), "epsilon_bound": float(gamma) * math.log(2.0)}
            label = _n_star_row(attack, gamma)
            if label is None:
                row["verdict"] = UNREACHED if gamma in chosen else NO_SWEEPS
                rows.append(row)
                continue
            row["n_star"] = float(attack["value"].sel(parameter=label))
            for metric in ("legit_accuracy", "epsilon_legit", "adaptive_accuracy", "epsilon_adaptive",
                           "inversion_psnr", "inversion_ssim", "attribute_accuracy"):  # fmt: skip
                row[metric] = _score(attack, label, metric)
            # the adaptive server against its own unsanitized p: fine-tuning on hard labels alone can raise p above p0
            own = _score(attack, "unsanitized", "adaptive_p_target")
            p = _score(attack, label, "adaptive_p_target")
            row["epsilon_adaptive_own"] = math.inf if p == 0 else math.log(own / p)
            twin_label = _doubled_row(twin, row["n_star"])
            if twin is not None and twin_label is not None:
                row["adaptive_accuracy_2b"] = _score(twin, twin_label, "adaptive_accuracy")
                row["epsilon_adaptive_2b"] = _score(twin, twin_label, "epsilon_adaptive")
                row["accuracy_move"] = abs(row["adaptive_accuracy_2b"] - row["adaptive_accuracy"])
            row["verdict"] = verdict(row["epsilon_adaptive"], row.get("epsilon_adaptive_2b"), row.get("accuracy_move"),
                                     row["epsilon_bound"])  # fmt: skip
            row["holds"] = row["verdict"] == HOLDS
            rows.append(row)
    frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    frame["holds"] = frame["holds"].astype("boolean")
    return frame


def _num(value: Any, spec: str) -> str:
    """A number as text, '–' when missing."""
    return "–" if missing(value) else format(value, spec)


def attack_summary_markdown(frame: pd.DataFrame) -> str:
    """The summary as Markdown: per row n*, ε of the unchanged and the adaptive server, the attacks vs references."""
    lines = ["# Attacks at n*(γ): does the γ bound hold against a server that knows the sanitizer?", ""]
    lines += stand_in_note(frame)
    lines += [
        "n*(γ): the smallest swept value that meets γ on every image of the run (the sweeps' largest n*). At that "
        "value the adversaries were trained on sanitized IFMs of generated training images and scored on held-out "
        "ones. ε = ln(p0 / p) with p the mean target probability; γ ln 2 is the bound. References in brackets: "
        "accuracy (original; label majority), PSNR/SSIM (unsanitized decoder; mean training image), attribute "
        "(unsanitized probe; chance). 2B: the adaptive server trained on twice the images for twice the epochs; "
        "a verdict holds only if ε adaptive meets γ ln 2 at both budgets and the accuracy moved by less than 0.02.",
        "",
    ]
    table = pd.DataFrame(
        {
            "layer": frame["layer"],
            "knob": frame["knob"],
            "γ": frame["gamma"].map(lambda g: f"{g:g}"),
            "γ ln 2": frame["epsilon_bound"].map(lambda v: f"{v:.3f}"),
            "n*": [_num(v, "g") for v in frame["n_star"]],
            "accuracy, unchanged server": [_num(v, ".3f") for v in frame["legit_accuracy"]],
            "ε unchanged": [_num(v, ".3f") for v in frame["epsilon_legit"]],
            "accuracy, adaptive [orig; maj]": [
                f"{_num(v, '.3f')} [{o:.3f}; {m:.3f}]"
                for v, o, m in zip(frame["adaptive_accuracy"], frame["original_accuracy"], frame["label_majority"], strict=True)
            ],
            "ε adaptive": [_num(v, ".3f") for v in frame["epsilon_adaptive"]],
            "accuracy, adaptive 2B": [_num(v, ".3f") for v in frame["adaptive_accuracy_2b"]],
            "ε adaptive 2B": [_num(v, ".3f") for v in frame["epsilon_adaptive_2b"]],
            "PSNR dB [unsan; mean]": [
                f"{_num(v, '.2f')} [{u:.2f}; {m:.2f}]"
                for v, u, m in zip(frame["inversion_psnr"], frame["psnr_unsanitized"], frame["psnr_mean_image"], strict=True)
            ],
            "SSIM [unsan; mean]": [
                f"{_num(v, '.3f')} [{u:.3f}; {m:.3f}]"
                for v, u, m in zip(frame["inversion_ssim"], frame["ssim_unsanitized"], frame["ssim_mean_image"], strict=True)
            ],
            "attribute [unsan; chance]": [
                f"{_num(v, '.3f')} [{u:.3f}; {c:.3f}]"
                for v, u, c in zip(
                    frame["attribute_accuracy"], frame["attribute_unsanitized"], frame["attribute_chance"], strict=True
                )
            ],
            "verdict": frame["verdict"],
        }
    )  # fmt: skip
    lines.append(markdown_table(table))
    return "\n".join(lines) + "\n"


ATTACK_RUN_KEYS: tuple[str, ...] = ("run", "config_hash", "extract_hash", "model", "weights")
"""Provenance the attack files of one summary share (consistency.attribute_value: weights is the weights id)."""
DOUBLED_KEYS: tuple[str, ...] = ("n_train", "epochs_adaptive", "epochs_inversion", "epochs_attribute")
"""The options a 2B file (workflow rule attack_doubled) has at twice its B file's values; every other one is equal."""


def option_keys() -> tuple[str, ...]:
    """The attack options an attack file records (AttackOptions' fields), and its gammas."""
    from dataclasses import fields

    from ifmsan.attacks.options import AttackOptions

    return (*(f.name for f in fields(AttackOptions)), "gammas")


def check_same_run(attacks: Sequence[xr.Dataset], paths: Sequence[str], *, what: str = "--attacks") -> None:
    """Refuse attack files of different runs, networks or attack options, or two files of the same (layer, knob)."""
    from ifmsan.report.consistency import check_same_attributes

    named = [(f"{what} {path}", attack.attrs) for attack, path in zip(attacks, paths, strict=True)]
    check_same_attributes(named, keys=(*ATTACK_RUN_KEYS, *option_keys()), what=f"{what} files")
    seen: dict[tuple[str, str], str] = {}
    for attack, path in zip(attacks, paths, strict=True):
        key = (attr_text(attack.attrs["layer"]), attr_text(attack.attrs["knob"]))
        if key in seen:
            raise ValueError(f"{path} and {seen[key]} both hold layer {key[0]}, knob {key[1]}; give one file each")
        seen[key] = path


def check_twin(twin: xr.Dataset, base: xr.Dataset, *, twin_name: str, base_name: str) -> None:
    """A 2B file is its B file's attack with DOUBLED_KEYS at twice the value and everything else the same."""
    from ifmsan.report.consistency import attribute_value

    for key in (*ATTACK_RUN_KEYS, *option_keys()):
        found, expected = attribute_value(twin.attrs, key), attribute_value(base.attrs, key)
        if key in DOUBLED_KEYS:
            try:
                doubled = float(found) == 2 * float(expected)
            except ValueError:
                doubled = False
            if not doubled:
                raise ValueError(
                    f"{twin_name} has {key} {found or 'none'}, not twice the {expected or 'none'} of {base_name}: "
                    "a 2B file doubles n_train and every epoch count of its B file"
                )
        elif found != expected:
            raise ValueError(
                f"{twin_name} has {key} {found or 'none'!r}, but its B file {base_name} has {expected or 'none'!r}; "
                "a 2B file differs from its B file only in n_train and the epochs"
            )


__all__ = ["SUMMARY_COLUMNS", "attack_summary", "attack_summary_markdown", "check_same_run", "check_twin", "verdict"]
