"""Bare names of our model YAMLs and bundled datasets, found by Ultralytics' own lookup, from any folder, offline.

Ultralytics finds a named file with `ultralytics.utils.checks.check_file`: an existing path as given, else a search of
its own package (its bundled model and dataset YAMLs). Model YAMLs reach it through `check_yaml` (from
`yaml_model_load`, which asks for 'yolo11n-an.yaml' and then, without the scale letter, 'yolo11-an.yaml'), datasets
through `check_det_dataset`, which imported it by name into `ultralytics.data.utils`. `install()` rebinds those two
names to `check_file`, which answers a bare name that is one of ours (models/, data/) with our file and hands
everything else to Ultralytics. So, after `import detector`, `YOLO("yolo11n-an.yaml")` builds models/yolo11-an.yaml
at scale n and `data="coco8.yaml"` is data/coco8.yaml (images bundled, no 'download:' key): nothing is fetched. A
name found nowhere is a one-line FileNotFoundError naming the places searched.
`check_contract()` checks both lookups still go through those names.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

from ultralytics.data import utils as data_utils
from ultralytics.nn import tasks
from ultralytics.utils import checks

from ..assets import DATA_DIR, MODELS_DIR
from . import require

ULTRALYTICS_CHECK_FILE = checks.check_file  # Ultralytics' own, captured before install() rebinds the names
SEARCHED = (MODELS_DIR, DATA_DIR)


def ours(name: str) -> Path | None:
    """Our file for a bare YAML name ('yolo11-an.yaml', 'coco8.yaml'), or None."""
    path = Path(name)
    if len(path.parts) != 1 or path.suffix not in (".yaml", ".yml"):
        return None
    return next((d / name for d in SEARCHED if (d / name).is_file()), None)


def check_file(file, suffix="", download=True, download_dir=".", hard=True):
    """Ultralytics' `check_file`, with our YAMLs found by bare name after files that exist as given."""
    text = str(file).strip()
    if "://" not in text and not os.path.exists(text) and (found := ours(text)):
        return str(found)
    try:
        return ULTRALYTICS_CHECK_FILE(file, suffix, download, download_dir, hard)
    except FileNotFoundError:
        if len(Path(text).parts) == 1 and Path(text).suffix in (".yaml", ".yml"):  # a bare name: say where we looked
            raise FileNotFoundError(
                f"'{text}' not found: looked in the current folder ({Path.cwd()}), in {', '.join(map(str, SEARCHED))} "
                "and among Ultralytics' bundled YAMLs (nothing is downloaded)") from None
        raise


def check_contract() -> None:
    """Raise RuntimeError if model and dataset names no longer reach Ultralytics' check_file the way we hook it."""
    needs = {
        "check_file(file, suffix, download, download_dir, hard) exists":
            list(inspect.signature(ULTRALYTICS_CHECK_FILE).parameters) == ["file", "suffix", "download",
                                                                            "download_dir", "hard"],
        "yaml_model_load finds model YAMLs with check_yaml": "check_yaml" in tasks.yaml_model_load.__code__.co_names,
        "check_yaml calls check_file by module-global name": "check_file" in checks.check_yaml.__code__.co_names,
        "check_det_dataset calls check_file by module-global name":
            "check_file" in data_utils.check_det_dataset.__code__.co_names,
    }
    require(needs, "names")


def install() -> None:
    """Make Ultralytics' file lookup find our model YAMLs and bundled datasets by bare name. Idempotent."""
    check_contract()
    checks.check_file = check_file
    data_utils.check_file = check_file
