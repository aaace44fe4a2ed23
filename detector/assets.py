"""Where the project's files are (model YAMLs, bundled datasets, shipped weights), and model names -> paths, offline.

Installed from a wheel they are package data (detector/models, detector/data, detector/weights); in a checkout (or an
editable install) they are the repository's top-level models/, data/ and weights/, the one copy the wheel is built
from. Ultralytics, given a model name it cannot find, tries to download it: here a name resolves to a local file or
stops with a one-line error naming the path. (Dataset names: detector.datasets.)
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path


def _bundled(name: str) -> Path:
    """detector/<name> where the wheel put it, else the checkout's top-level <name>/."""
    packaged = Path(str(resources.files("detector") / name))
    return packaged if packaged.is_dir() else packaged.parent.parent / name


MODELS_DIR = _bundled("models")
DATA_DIR = _bundled("data")
WEIGHTS_DIR = _bundled("weights")  # the weights this project ships (not Ultralytics' WEIGHTS_DIR, its download cache)
DEFAULT_WEIGHTS = WEIGHTS_DIR / "yolo11n-an-coco128.pt"  # predict's and train's default: see docs/weights.md
DEFAULT_MODEL = str(DEFAULT_WEIGHTS)  # train.py fine-tunes these unless given a YAML (yolo11n-an.yaml: from scratch)
DEFAULT_DATA = "coco8.yaml"


def scaleless(name: str) -> str:
    """'yolo11n-an.yaml' -> 'yolo11-an.yaml': Ultralytics' convention, the scale letter picks a row of `scales`."""
    return re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", name)


def resolve_model(name: str) -> str:
    """A model YAML or checkpoint name -> something `ultralytics.YOLO()` loads without downloading.

    Existing paths pass through; bare YAML names are looked up in models/ (with or without the scale letter) and
    then among Ultralytics' own bundled YAMLs (yolo11n.yaml, yolo12s.yaml, ...). A missing .pt is an error."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml", ".pt"):
        raise ValueError(f"model '{name}': expected a .yaml architecture or a .pt checkpoint")
    if path.exists():
        return str(path)
    if path.suffix in (".yaml", ".yml"):
        if len(path.parts) == 1 and (MODELS_DIR / scaleless(name)).exists():
            return str(MODELS_DIR / name)  # Ultralytics reads the scale from the name, the file without it
        from ultralytics.utils.checks import check_yaml

        if check_yaml(scaleless(name), hard=False) or check_yaml(name, hard=False):
            return name  # one of Ultralytics' bundled architectures
        raise FileNotFoundError(f"model '{name}': no such file, and no YAML of that name in {MODELS_DIR} or in "
                                f"Ultralytics' bundled models")
    raise FileNotFoundError(f"model '{name}': weights file not found (this project never downloads weights)")
