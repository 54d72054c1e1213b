"""How many examples a property test draws under the loaded hypothesis profile."""

from __future__ import annotations

from hypothesis import settings

FULL = 100
"""max_examples of the full profile: a test's stated count is what it draws there."""


def examples(count: int) -> int:
    """`count` under the full profile, the same share of it under another (a tenth under quick), at least 5."""
    return max(5, count * settings.default.max_examples // FULL)
