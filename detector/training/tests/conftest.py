"""Test setup: tests import the package from the repository root and use 1 thread."""
import os
import sys


ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
SHARED = os.path.abspath(os.path.join(ROOT, "..", "shared", "data"))

from detector.training import common  # noqa: E402

common.set_threads(1)
