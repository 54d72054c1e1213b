"""The hostile tries of tests/hostile.py, one test each: every try is refused cleanly or gives the right result.

A clean refusal: exit 2 (non-zero for a `snakemake -n`), a one-line message naming the offending input, no
traceback, nothing left behind; `python tests/hostile.py` prints the same verdicts as a table with their counts.
"""

from __future__ import annotations

import pytest
from hostile import GOOD, TRIES, check_tries, result_of, start_dag_tries

pytestmark = pytest.mark.slow


def test_tries_are_well_formed() -> None:
    check_tries()
    assert len(TRIES) >= 120


@pytest.fixture(scope="module", autouse=True)
def dag_tries_in_the_background(request: pytest.FixtureRequest) -> None:
    """The selected DAG tries start at once in background threads, so their dry runs overlap the in-process tries."""
    selected = {item.callspec.params.get("try_") for item in request.session.items if hasattr(item, "callspec")}
    start_dag_tries([t for t in TRIES if t in selected])


@pytest.mark.parametrize("try_", TRIES, ids=[t.id for t in TRIES])
def test_hostile_try(try_) -> None:
    result = result_of(try_)
    assert result.verdict in GOOD, f"{try_.id} ({try_.kind}: {try_.about}): {result.verdict}: {result.reason}"
