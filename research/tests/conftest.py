"""Tests of the research scripts (not part of the product's suite): python -m pytest research/tests"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("YOLO_OFFLINE", "1")

import detector  # noqa: E402,F401  registers our layers before any test builds a model
