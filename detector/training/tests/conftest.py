"""Shared fixtures: tests import the package from the repository root and use 1 thread."""
import os
import sys

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
SHARED = os.path.abspath(os.path.join(ROOT, "..", "shared", "data"))

from detector.training import common  # noqa: E402

common.set_threads(1)


@pytest.fixture
def faces():
    """A few aligned 128x128 BGR face crops: LFW when ../shared/data is present, else toy faces."""
    lfw = os.path.join(SHARED, "faces", "lfw")
    if os.path.isdir(lfw):
        names = sorted(os.listdir(lfw))[:6]
        return [common.resize_like_serving(common.read_bgr(os.path.join(lfw, n))) for n in names]
    import tempfile
    from detector.training.smoke import make_toy_crops
    d = make_toy_crops(tempfile.mkdtemp(), n_ids=3, per_id=2)
    return [common.read_bgr(os.path.join(d, n)) for n in sorted(os.listdir(d))]
