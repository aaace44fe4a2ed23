"""Where the project's model YAMLs and datasets are, and turning user-given names into paths, offline.

Ultralytics, given a name it cannot find, tries to download it. Here a name resolves to a local file or stops with
a one-line error naming the path: nothing is ever fetched. `check_dataset` is train.py's pre-flight for a dataset:
whatever would stop Ultralytics' trainer (after it has created the run folder) stops here first, and every label
file is checked line by line.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from . import labels

ROOT = Path(__file__).resolve().parent.parent  # the repository
MODELS_DIR = ROOT / "models"
DATA_DIR = ROOT / "data"
DEFAULT_MODEL = "yolo11n-an.yaml"  # attention-neck family, n scale
DEFAULT_DATA = "coco8.yaml"


def _scaleless(name: str) -> str:
    """'yolo11n-an.yaml' -> 'yolo11-an.yaml': Ultralytics' convention, the scale letter picks a row of `scales`."""
    return re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", name)


def resolve_model(name: str) -> str:
    """A model YAML or checkpoint name -> something `ultralytics.YOLO()` loads without downloading.

    Existing paths pass through; bare YAML names are looked up in models/ (with or without the scale letter) and
    then among Ultralytics' own bundled YAMLs (yolo11n.yaml, yolo12s.yaml, ...). A missing .pt is an error."""
    path = Path(name)
    if path.exists():
        return str(path)
    if path.suffix in (".yaml", ".yml"):
        if len(path.parts) == 1 and (MODELS_DIR / _scaleless(name)).exists():
            return str(MODELS_DIR / name)  # Ultralytics reads the scale from the name, the file without it
        from ultralytics.utils.checks import check_yaml

        if check_yaml(_scaleless(name), hard=False) or check_yaml(name, hard=False):
            return name  # one of Ultralytics' bundled architectures
        raise FileNotFoundError(f"model '{name}': no such file, and no YAML of that name in {MODELS_DIR} or in "
                                f"Ultralytics' bundled models")
    if path.suffix == ".pt":
        raise FileNotFoundError(f"model '{name}': weights file not found (this project never downloads weights)")
    raise ValueError(f"model '{name}': expected a .yaml architecture or a .pt checkpoint")


def resolve_data(name: str) -> str:
    """A dataset YAML name -> its absolute path, after checking that the folders it names exist."""
    path = Path(name)
    if not path.exists() and len(path.parts) == 1 and (DATA_DIR / name).exists():
        path = DATA_DIR / name
    if not path.exists():
        raise FileNotFoundError(f"data '{name}': no such file, and no dataset YAML of that name in {DATA_DIR}")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"data '{path}': not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(spec, dict):
        raise ValueError(f"data '{path}': expected a mapping with train/val/names keys")
    if spec.get("names") is None and spec.get("nc") is None:
        raise ValueError(f"data '{path}': missing 'names:' key (the class names, e.g. names: [person, car])")
    root = Path(spec.get("path") or path.parent)  # the rule Ultralytics' check_det_dataset applies
    if not root.exists() and not root.is_absolute():
        from ultralytics.utils import DATASETS_DIR

        root = DATASETS_DIR / root
    for split in ("train", "val"):
        if not spec.get(split):
            raise ValueError(f"data '{path}': missing '{split}:' key")
        for entry in spec[split] if isinstance(spec[split], list) else [spec[split]]:
            if not (root / entry).exists():
                raise FileNotFoundError(f"data '{path}': {split} images not found at {(root / entry).resolve()} "
                                        "(nothing is downloaded: put the dataset there or fix the YAML)")
    return str(path.resolve())


def check_dataset(path: str, single_cls: bool = False) -> list[labels.SplitReport]:
    """Pre-flight for a dataset YAML (as resolved by `resolve_data`), reading files only.

    Raises a one-line ValueError/FileNotFoundError for what would stop training: a YAML Ultralytics rejects (no
    names, names and nc disagreeing, ...), a split without images, training images none of which has a label file
    or a usable one. Returns, per split (train, val), the bad label lines and background counts to report: bad lines
    are skipped in training (see detector.labels), not errors. `single_cls`: any class id is fine (all become one)."""
    from . import ultralytics_glue as glue

    data = glue.load_dataset(path)
    nc = None if single_cls else len(data["names"])
    reports = []
    for split in ("train", "val"):
        images = glue.split_images(data[split])
        if not images:
            raise FileNotFoundError(f"data '{path}': no images in the {split} split ({data[split]})")
        label_files = glue.label_paths(images)
        report = labels.scan_split(split, images, label_files, nc)
        if split == "train" and report.no_label_file == report.images:
            raise FileNotFoundError(f"data '{path}': none of the {report.images} train images has a label file "
                                    f"(the first would be {label_files[0]})")
        if len(report.skipped_images) == report.images:
            raise ValueError(f"data '{path}': no {split} image has a usable label file "
                             f"(first problem: {report.warnings(1)[0]})")
        reports.append(report)
    return reports
