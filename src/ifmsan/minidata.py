"""`ifmsan.minidata` is `ifmsan.steps.minidata`: the same module object under the name users import."""

import sys

from ifmsan.steps import minidata as _module
from ifmsan.steps.minidata import *  # noqa: F403  (the names, for type checkers)

sys.modules[__name__] = _module
