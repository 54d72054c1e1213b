"""`ifmsan.io` is `ifmsan.steps.io`: the same module object under the name users import."""

import sys

from ifmsan.steps import io as _module
from ifmsan.steps.io import *  # noqa: F403  (the names, for type checkers)

sys.modules[__name__] = _module
