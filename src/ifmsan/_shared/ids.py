"""The one pattern for ids that become parts of file paths: run names, image ids, layer and knob names, file names.

workflow/schemas/config.schema.yaml states the same pattern as its `safe_id` definition (a test keeps the two equal).
"""

from __future__ import annotations

import re

SAFE_ID_MAX = 128
"""The longest safe id, in characters."""
SAFE_ID_BODY = rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{SAFE_ID_MAX - 1}}}"
"""A safe id without anchors: letters, digits, '_', '.' and '-', starting with a letter or digit (a wildcard constraint)."""
SAFE_ID_PATTERN = f"^{SAFE_ID_BODY}$"
"""The schema's safe_id pattern; a safe id also holds no '..'."""
SAFE_ID = re.compile(SAFE_ID_PATTERN)


def is_safe_id(value: object) -> bool:
    """True for a string that is safe as one path component: SAFE_ID_PATTERN in full, without '..'."""
    return isinstance(value, str) and SAFE_ID.fullmatch(value) is not None and ".." not in value
