"""`ifmsan.caffe` is `ifmsan.models.caffe`: the same module object under the name users import."""

import sys

from ifmsan.models import caffe as _module
from ifmsan.models.caffe import *  # noqa: F403  (the names, for type checkers)

sys.modules[__name__] = _module
