"""Datasets: a user's dataset name -> a checked data YAML, and train.py's pre-flight over its label files.

Ultralytics, given a dataset name it cannot find, tries to download it. Here `resolve` finds the YAML locally (a
path, or a name bundled in data/) or stops with one line naming what was looked for; `load` reads it the way the
trainer will (Ultralytics' `check_det_dataset`, never downloading), once; `preflight` then checks every split and
label file, so that whatever would stop the trainer after it created the run folder stops here first. Bad label
lines are reported, not errors: they are skipped in training (detector.labels, detector.glue.trainer).
"""

from __future__ import annotations

import re
from pathlib import Path

from . import labels
from .assets import DATA_DIR
from .utils import first_line


def resolve(name: str) -> str:
    """A dataset YAML path or bundled name ('coco8.yaml') -> its absolute path. Reads nothing but the file system."""
    path = Path(name)
    if not path.exists() and len(path.parts) == 1:
        for candidate in (DATA_DIR / name, DATA_DIR / f"{name}.yaml"):
            if candidate.is_file():
                path = candidate
                break
    if not path.is_file():
        raise FileNotFoundError(f"data '{name}': no such file, and no dataset YAML of that name in {DATA_DIR} "
                                "(nothing is downloaded)")
    return str(path.resolve())


def load(path: str) -> dict:
    """The data YAML at `path` as the trainer will see it (Ultralytics' `check_det_dataset`: names, nc, absolute split
    paths), never downloading, and with every split folder or list present. Errors are one-line ValueErrors or
    FileNotFoundErrors naming the file."""
    from ultralytics.data.utils import check_det_dataset

    try:
        data = check_det_dataset(path, autodownload=False)
    except FileNotFoundError as e:  # Ultralytics checks the val split only; its message is two lines
        missing = re.search(r"missing path '(.+?)'", str(e))
        what = f"val images not found at {missing[1]}" if missing else first_line(e).replace("❌", "").strip()
        raise FileNotFoundError(f"data '{path}': {what} (nothing is downloaded: put the dataset there or fix the "
                                "YAML)") from None
    except Exception as e:  # SyntaxError, TypeError, ... with emoji and a second line
        line = first_line(e).replace("❌", "").strip(" .").removeprefix(f"{path} ")  # it starts with the file name
        if line == "key missing":  # Ultralytics' words when neither names nor nc is given
            line = "missing 'names:' key (the class names, e.g. names: [person, car])"
        elif key := re.fullmatch(r"'(\w+):' key missing", line):
            line = f"missing '{key[1]}:' key"
        raise ValueError(f"data '{path}': {line}") from None
    for split in ("train", "val"):
        if not data.get(split):
            raise ValueError(f"data '{path}': missing '{split}:' key")
        for entry in data[split] if isinstance(data[split], list) else [data[split]]:
            if not Path(entry).exists():
                raise FileNotFoundError(f"data '{path}': {split} images not found at {entry} (nothing is downloaded: "
                                        "put the dataset there or fix the YAML)")
    return data


def split_images(entries: str | list[str]) -> list[str]:
    """The image files of one split, in the layout Ultralytics reads (its docs' dataset format): a folder, searched
    recursively (hidden files aside, as glob does), or a text file listing images one a line ('./' at the start means
    next to the list), or a list of those. Images are the file types Ultralytics trains on."""
    from ultralytics.data.utils import IMG_FORMATS

    found = []
    for entry in entries if isinstance(entries, list) else [entries]:
        entry = Path(entry)
        if entry.is_dir():
            found += [str(f) for f in entry.rglob("*.*")
                      if not any(part.startswith(".") for part in f.relative_to(entry).parts)]
        elif entry.is_file():
            lines = [x.strip() for x in entry.read_text(encoding="utf-8-sig").splitlines() if x.strip()]
            found += [str(entry.parent / x[2:]) if x.startswith("./") else x for x in lines]
    return sorted(f for f in found if f.rpartition(".")[-1].lower() in IMG_FORMATS)


def label_paths(images: list[str]) -> list[str]:
    """Where Ultralytics looks for each image's label file (.../images/... -> .../labels/....txt)."""
    from ultralytics.data.utils import img2label_paths

    return img2label_paths(images)


def preflight(path: str, single_cls: bool = False) -> list[labels.SplitReport]:
    """Check the dataset at `path` (from `resolve`) before training, reading files only.

    Raises a one-line ValueError/FileNotFoundError for what would stop training: a YAML Ultralytics rejects (no
    names, names and nc disagreeing, ...), a split without images, training images none of which has a label file
    or a usable one. Returns, per split (train, val), the bad label lines and background counts to report.
    `single_cls`: any class id is fine (all become one)."""
    data = load(path)
    nc = None if single_cls else len(data["names"])
    reports = []
    for split in ("train", "val"):
        images = split_images(data[split])
        if not images:
            raise FileNotFoundError(f"data '{path}': no images in the {split} split ({data[split]})")
        label_files = label_paths(images)
        report = labels.scan_split(split, images, label_files, nc)
        if split == "train" and report.no_label_file == report.images:
            raise FileNotFoundError(f"data '{path}': none of the {report.images} train images has a label file "
                                    f"(the first would be {label_files[0]})")
        if len(report.skipped_images) == report.images:
            raise ValueError(f"data '{path}': no {split} image has a usable label file "
                             f"(first problem: {report.warnings(1)[0]})")
        reports.append(report)
    return reports
