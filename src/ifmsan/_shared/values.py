"""Numbers from command-line text: window sizes and lists or ranges of knob values, each mistake named."""

from __future__ import annotations

import decimal
import re
from collections import Counter


def integer(text: str) -> int:
    """argparse's type for whole numbers, read strictly: ASCII digits with an optional sign (int() also takes
    '1_0' as 10 and '١٠' as 10; argparse then says "invalid integer value")."""
    if not re.fullmatch(r"[+-]?[0-9]+", text.strip()):
        raise ValueError(text)
    return int(text)


def real(text: str) -> float:
    """argparse's type for real numbers, read strictly: float()'s forms without '_' digit grouping."""
    if "_" in text:
        raise ValueError(text)
    return float(text)


def parse_window(text: str, *, flag: str = "--window") -> int:
    """A window size from text: an integer >= 1, also written as 1e6 or 3.0; fractions, NaN and inf are refused."""
    try:
        number = decimal.Decimal(text.strip()) if "_" not in text else None
    except decimal.InvalidOperation:
        number = None
    if number is None or not number.is_finite() or number != number.to_integral_value():
        raise ValueError(f"{flag} must be an integer >= 1 (a window size), got {text!r}")
    window = int(number)
    if window < 1:
        raise ValueError(f"{flag} must be an integer >= 1 (a window size), got {text!r}")
    return window


MAX_VALUES = 1_000_000
"""Most knob values one option may list: more windows than any IFM has samples (BVLC conv1: 154587)."""


def parse_values(text: str, *, flag: str = "--values", kind: str = "window") -> list[int] | list[float]:
    """'2:150' (inclusive range), '2:150:2', or a comma list '2,3,5' (windows) / '0,0.5,1' (scales).

    Windows are integers >= 1 (1e3 reads as 1000), scales finite numbers >= 0; none may repeat. Every mistake is
    a ValueError naming the flag, the value and what is allowed.
    """
    usage = f"{flag} must be START:STOP[:STEP] (inclusive, integers) or a comma list"
    expected = "windows are integers >= 1" if kind == "window" else "scales are finite numbers >= 0"
    if ":" in text:
        try:
            parts = [integer(p) for p in text.split(":")]
        except ValueError:
            raise ValueError(f"{usage}; got {text!r}") from None
        if len(parts) not in (2, 3):
            raise ValueError(f"{usage}; got {text!r}")
        start, stop, step = parts[0], parts[1], parts[2] if len(parts) == 3 else 1
        if step < 1 or stop < start:
            raise ValueError(f"{flag} {text!r}: expected STOP >= START and STEP >= 1")
        values: list = list(range(start, stop + 1, step)) if (stop - start) // step < MAX_VALUES else []
        if not values:
            raise ValueError(f"{flag} {text!r} lists more than {MAX_VALUES} values")
    else:
        items = [item.strip() for item in text.split(",")]
        if not text.strip() or any(not item for item in items):
            raise ValueError(f"{usage} without empty items; got {text!r}")
        if len(items) > MAX_VALUES:
            raise ValueError(f"{flag} lists {len(items)} values; at most {MAX_VALUES} are allowed")
        if kind == "window":
            values = [parse_window(item, flag=flag) for item in items]
        else:
            try:
                values = [real(item) for item in items]
            except ValueError:
                raise ValueError(f"{usage} of numbers; got {text!r}") from None
    if kind == "window":
        bad = [v for v in values if v < 1]
    else:
        values = [float(v) for v in values]
        bad = [v for v in values if not (v >= 0 and v != float("inf"))]
    if bad:
        raise ValueError(f"{flag} {text!r}: {bad[0]} is not allowed; {expected}")
    repeated = sorted(value for value, count in Counter(values).items() if count > 1)
    if repeated:
        raise ValueError(f"{flag} {text!r} repeats {', '.join(map(str, repeated))}; each value may appear once")
    return values
