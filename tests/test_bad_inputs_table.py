"""tests/README.md's table of bad inputs stays true: every row names a test that exists, with that parameter id."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
ROW = re.compile(r"^\| *([\w-]+) *\|(.+)\|(.+)\| *(tests/[\w/]+\.py::\w+(?:\[[^\]]*\])?) *\|$")
MIN_ROWS = 141  # the bad-input classes the table held when it was first checked


def table_rows() -> list[tuple[str, str, str, str]]:
    """(area, input, expected, test id) of every row of the bad-input tables."""
    text = (TESTS / "README.md").read_text(encoding="utf-8")
    section = text.split("## Bad inputs", 1)[1]
    rows = []
    for line in section.splitlines():
        if line.startswith("| ") and "::" in line:
            match = ROW.match(line.strip())
            assert match, f"tests/README.md: malformed row {line[:120]!r}"
            rows.append(tuple(part.strip() for part in match.groups()))
    return rows


def test_the_table_has_every_reported_class_and_no_empty_cell() -> None:
    rows = table_rows()
    assert len(rows) >= MIN_ROWS
    assert all(area and bad and expected for area, bad, expected, _ in rows)


@pytest.mark.slow
def test_every_test_named_in_the_table_is_collected() -> None:
    rows = table_rows()
    files = sorted({test.split("::", 1)[0] for *_, test in rows})
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    ids = {line.strip() for line in collected.stdout.splitlines() if "::" in line}
    assert ids, collected.stdout[-2000:] + collected.stderr[-2000:]
    missing = sorted({test for *_, test in rows} - ids)
    assert not missing, f"tests/README.md names tests that do not exist: {missing[:10]}"
