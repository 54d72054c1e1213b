"""Text and frame helpers shared by the tables, the γ report and its Markdown (ifmsan.report.gamma_markdown)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ifmsan.report.curves import VARIANT_COLUMNS


def frame_variants(frame: pd.DataFrame) -> list[str]:
    """The VARIANT_COLUMNS a table carries."""
    return [key for key in VARIANT_COLUMNS if key in frame.columns]


def missing(value: Any) -> bool:
    """True for None, NaN and pandas NA."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table; cells are taken as text, never re-parsed as numbers."""
    return frame.to_markdown(index=False, disable_numparse=True)


def stand_in_note(frame: pd.DataFrame) -> list[str]:
    """A warning line when any row was made with a stand-in model."""
    if "stand_in" in frame and bool((pd.to_numeric(frame["stand_in"]) == 1).any()):
        models = ", ".join(dict.fromkeys(frame.loc[pd.to_numeric(frame["stand_in"]) == 1, "model"].astype(str)))
        return [f"**Stand-in:** made with {models}, not the paper's BVLC AlexNet.", ""]
    return []


__all__ = ["frame_variants", "markdown_table", "missing", "stand_in_note"]
