"""The certificate beside the measured attackers, and the settings that meet γ and a reconstruction target against all
of them at the attacker's budget B and 2B (certified_summary).

Inputs: the certificate table (`ifmsan.certify.table`) of the run's images and the certify attack files (`ifmsan
attack` with --calibration, one per (layer, knob, scale) and budget). A setting is (knob, n, scale); per-element noise
has n = 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from ifmsan.report.tabletext import markdown_table

CONVERGED = 0.02
"""A verdict needs the adaptive server's held-out accuracy to move by less than this between budgets B and 2B."""
KEYS = ["layer", "knob", "window", "scale"]
HOLDS, BROKEN, NOT_CONVERGED = "holds", "broken", "not converged"
NONE_ON_GRID = "none on the grid"


def attack_grid(attacks: Sequence[xr.Dataset]) -> pd.DataFrame:
    """One row per (layer, knob, n, scale) with each budget's scores side by side (columns <metric>_b1, <metric>_b2)."""
    rows = []
    for data in attacks:
        attrs = data.attrs
        budget = str(attrs.get("budget", ""))
        if budget not in ("b1", "b2"):
            raise ValueError(
                f"attack file of {attrs.get('layer')}/{attrs.get('knob')} has budget {budget!r}; expected b1 or b2"
            )
        knob = str(attrs["knob"])
        scores = data["scores"].to_pandas()
        for label, value in zip(data["parameter"].values, data["value"].values, strict=True):
            if str(label) == "unsanitized":
                continue
            hold = "noise_scale" in attrs
            row = {"layer": str(attrs["layer"]), "knob": knob, "window": int(value) if hold else 0,
                   "scale": float(attrs["noise_scale"]) if hold else float(value), "budget": budget,
                   "mean_image_mse": float(attrs.get("mean_image_mse", math.nan)),
                   "calibration_std": float(attrs.get("knob_sigma", math.nan)) / float(attrs["noise_scale"]) if hold
                   else float(attrs.get("knob_calibration_std", math.nan))}  # fmt: skip
            row.update({str(m): float(scores.loc[label, m]) for m in scores.columns})
            rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        raise ValueError("no certify attack rows: give the attack files of the certify section (budgets b1 and b2)")
    wide = frame.pivot_table(index=KEYS, columns="budget", aggfunc="first")
    wide.columns = [f"{metric}_{budget}" for metric, budget in wide.columns]
    missing = [b for b in ("b1", "b2") if f"legit_accuracy_{b}" not in wide.columns]
    if missing:
        raise ValueError(f"the certify attack files lack budget {', '.join(missing)}; each setting needs B and 2B")
    return wide.reset_index()


def verdict(row: pd.Series, gamma: float) -> str:
    """holds only if ε_adaptive ≥ γ ln 2 at B and at 2B and the adaptive accuracy moved by less than CONVERGED."""
    need = gamma * math.log(2.0)
    eps = [row.get(f"epsilon_adaptive_{b}", math.nan) for b in ("b1", "b2")]
    if not all(e >= need for e in eps):  # NaN fails too
        return BROKEN
    moved = abs(row["adaptive_accuracy_b2"] - row["adaptive_accuracy_b1"])
    return NOT_CONVERGED if not moved < CONVERGED else HOLDS


def bound_vs_attacks(certificate: pd.DataFrame, grid: pd.DataFrame, *, resolution: int) -> pd.DataFrame:
    """Each setting's certified MSE floor (the smallest over the run's images, at r x r) beside each attacker's MSE."""
    space = f"r{resolution}"
    cert = certificate[
        (certificate["space"] == space) & (certificate["bound"] != "no bound (deterministic release)")
    ].copy()
    cert["window"] = cert["window"].fillna(0).astype(int)
    floors = cert.groupby(KEYS).agg(sigma=("sigma", "first"), mse_floor=("mse_floor", "min"),
                                     psnr_ceiling=("psnr_ceiling", "max"), images=("image_id", "nunique"))  # fmt: skip
    merged = grid.merge(floors.reset_index(), on=KEYS, how="left")
    for name in ("inversion_mse", "optimization_mse"):
        for b in ("b1", "b2"):
            if f"{name}_{b}" not in merged:
                merged[f"{name}_{b}"] = math.nan
    merged["decoder_mse"] = merged[["inversion_mse_b1", "inversion_mse_b2"]].min(axis=1)
    merged["optimization_mse"] = merged[["optimization_mse_b1", "optimization_mse_b2"]].min(axis=1)
    merged["decoder_above_floor"] = merged["decoder_mse"] >= merged["mse_floor"]
    merged["optimization_above_floor"] = merged["optimization_mse"] >= merged["mse_floor"]
    se = merged.get("optimization_mse_se_b1", pd.Series(math.nan, index=merged.index))
    merged["optimization_below_floor_beyond_2se"] = merged["optimization_mse_b1"] + 2 * se < merged["mse_floor"]
    return merged.sort_values(KEYS).reset_index(drop=True)


def targets(grid: pd.DataFrame, *, psnr_targets: Sequence[float]) -> list[tuple[str, float | None]]:
    """(name, MSE) of each target: the mean image's MSE per layer (None here: read per layer), then each PSNR ceiling."""
    return [("mean_image", None), *((f"psnr<={p:g}dB", 10.0 ** (-float(p) / 10.0)) for p in psnr_targets)]


def certified_summary(table: pd.DataFrame, *, gammas: Sequence[float], psnr_targets: Sequence[float]) -> pd.DataFrame:
    """Per (layer, γ, target): the setting of highest legitimate accuracy that holds γ at B and 2B, whose certified floor
    and every measured attacker's MSE meet the target; or "none on the grid", with what the near miss that fails the
    fewest checks (then of highest accuracy) fails."""
    out = []
    for layer, rows in table.groupby("layer", sort=False):
        for gamma in gammas:
            judged = rows.assign(verdict=[verdict(r, gamma) for _, r in rows.iterrows()])
            for name, mse in targets(rows, psnr_targets=psnr_targets):
                target = float(rows["mean_image_mse_b1"].iloc[0]) if mse is None else mse
                checks = {
                    "verdict": judged["verdict"] == HOLDS,
                    "certificate": judged["mse_floor"] >= target,
                    "decoder": judged["decoder_mse"] >= target,
                    "optimization": judged["optimization_mse"] >= target,
                }
                passed = np.sum([c.to_numpy() for c in checks.values()], axis=0)
                ok = passed == len(checks)
                ranked = judged.assign(ok=ok, passed=passed).sort_values(
                    ["passed", "legit_accuracy_b1", "scale", "window"], ascending=[False, False, True, True]
                )  # the certified setting of highest accuracy, else the near miss that fails the fewest checks
                best = ranked[ranked["ok"]].head(1)
                pick = best if len(best) else ranked.head(1)
                r = pick.iloc[0]
                failed = [k for k, c in checks.items() if not bool(c.loc[r.name])]
                out.append({
                    "layer": layer, "gamma": gamma, "target": name, "target_mse": target,
                    "status": "certified" if len(best) else NONE_ON_GRID,
                    "knob": r["knob"] if len(best) else "", "window": int(r["window"]) if len(best) else None,
                    "scale": float(r["scale"]) if len(best) else None, "sigma": float(r["sigma"]) if len(best) else None,
                    "legit_accuracy": float(r["legit_accuracy_b1"]) if len(best) else None,
                    **{f"{m}_{b}": float(r[f"{m}_{b}"]) for m in ("adaptive_accuracy", "epsilon_adaptive") for b in ("b1", "b2")},
                    "verdict": r["verdict"], "mse_floor": float(r["mse_floor"]), "decoder_mse": float(r["decoder_mse"]),
                    "optimization_mse": float(r["optimization_mse"]),
                    "decoder_over_floor": float(r["decoder_mse"] / r["mse_floor"]),
                    "optimization_over_floor": float(r["optimization_mse"] / r["mse_floor"]),
                    "best_failed": "" if len(best) else
                    f"{r['knob']} n={int(r['window'])} scale={float(r['scale']):g}: fails {', '.join(failed)}",
                })  # fmt: skip
    return pd.DataFrame(out)


def summary_markdown(frame: pd.DataFrame) -> str:
    """The certified settings as Markdown, numbers rounded for reading (the CSV keeps every digit)."""
    shown = frame.copy()
    for column in shown.columns:
        if shown[column].dtype.kind == "f":
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    head = [
        "# Certified settings",
        "",
        "Per layer, degree of sanitization γ and reconstruction target: the (knob, n, scale) of highest legitimate "
        "accuracy whose adaptive-server verdict holds at the attacker's budget B and 2B, whose Cramér-Rao MSE floor "
        "(smallest over the run's images, at the decoder's resolution) meets the target, and which no measured "
        "attacker (decoder, optimization attack) beats. The floor binds unbiased estimators only: a decoder with a "
        "learned prior may go below it.",
        "",
    ]
    return "\n".join(head) + markdown_table(shown.astype(object).where(shown.notna(), "")) + "\n"
