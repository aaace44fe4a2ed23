"""Reading dataset YAMLs: UTF-8 or refused, and no `download:` script run.

Every dataset YAML Ultralytics reads (the trainer, the validator and the exporter's int8 calibration call
`check_det_dataset`, with whatever `split=` they were given, as do our pre-flight and detector.reach) is read by
`ultralytics.data.utils.check_det_dataset` through `YAML.load`, a module-global name there. YAML.load decodes with
errors="ignore" (a Latin-1 file loses its accented letters from the class names without a word), and when a split is
missing and the YAML has a `download:` key, check_det_dataset runs it: Python through exec, `bash ...` as a command,
or a URL fetched and unzipped. `install()` rebinds that one name to `DatasetYAML`, which reads the file as Ultralytics
does, after refusing one that is not UTF-8 (ValueError naming the file and the first bad byte), and drops its
`download:` key unless the user trusts the files (detector.trust): a missing split is then Ultralytics' one-line
FileNotFoundError naming the path it looked for. `check_contract()` checks that this still holds.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from ultralytics.data import utils as data_utils
from ultralytics.utils import YAML

from ..trust import trusted
from . import require

DOWNLOAD_KEY = "download"


class DatasetYAML(YAML):
    """Ultralytics' YAML reader for dataset YAMLs: strict UTF-8, and no download script unless trusted."""

    @classmethod
    def load(cls, file="data.yaml", append_filename=False):
        raw = Path(file).read_bytes()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"'{file}': not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); save it as "
                             "UTF-8, as Ultralytics reads it, so that the class names come out as written") from None
        data = super().load(file, append_filename)
        if not trusted():
            data.pop(DOWNLOAD_KEY, None)  # what check_det_dataset would run for a missing split
        return data


def check_contract() -> None:
    """Raise RuntimeError if check_det_dataset no longer reads dataset YAMLs the way `DatasetYAML` hooks."""
    names = data_utils.check_det_dataset.__code__.co_names
    needs = {
        "check_det_dataset reads the YAML with YAML.load, a module-global name": "YAML" in names
        and data_utils.YAML in (YAML, DatasetYAML),
        f"check_det_dataset runs the '{DOWNLOAD_KEY}' key's script": DOWNLOAD_KEY
        in data_utils.check_det_dataset.__code__.co_consts,
        "YAML.load(file, append_filename) exists":
            list(inspect.signature(YAML.load).parameters) == ["file", "append_filename"],
    }
    require(needs, "data")


def install() -> None:
    """Make check_det_dataset read dataset YAMLs with `DatasetYAML`. Idempotent."""
    check_contract()
    data_utils.YAML = DatasetYAML
