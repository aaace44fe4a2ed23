import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # train.py, predict.py
os.environ.setdefault("YOLO_OFFLINE", "1")

import detector  # noqa: E402,F401  registers our layers before any test builds a model
from detector import kernels  # noqa: E402

CUDA = torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA GPU: run on the device machine")
    for item in items:
        if "gpu" in item.keywords and not CUDA:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def auto_kernel():
    """Every test starts and ends with the policy on `auto`."""
    kernels.set_kernel(None)
    yield
    kernels.set_kernel(None)
