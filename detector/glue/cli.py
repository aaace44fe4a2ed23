"""Ultralytics' command-line entry (`yolo ...`) run for the `detector` command, with our trainer.

`ultralytics.cfg.entrypoint` reads its arguments from `ARGV`, the one list Ultralytics' modules share (sys.argv as it
was when Ultralytics was imported), builds the model with `from ultralytics import YOLO` at call time, then calls the
mode (`model.train(**overrides)`). `Model.predict` behaves as the CLI (saves results, one line per image) when
`ARGV[0]` is the `yolo` command. The trainer a YOLO model uses comes from its `task_map` property, Ultralytics'
documented place to customise a model family: `DetectorYOLO` is YOLO with `DetectorTrainer` for detection.
`entrypoint(argv)` runs Ultralytics' entry with ARGV holding `yolo <argv>` and `ultralytics.YOLO` rebound to ours,
for that one call, every run folder claimed atomically (detector.glue.rundirs: two runs given one `name=` get
`name` and `name-2`) and, if it fails, the folders it claimed and left empty removed. Everything else (modes,
arguments and their checks, special commands like `settings`) is Ultralytics' own. `check_contract()` checks the
entry and predict still read those names.
"""

from __future__ import annotations

import ultralytics
from ultralytics import YOLO, cfg
from ultralytics import utils as ultralytics_utils
from ultralytics.engine import model as engine_model

from . import require, rundirs
from .trainer import DetectorTrainer, _rebound


class DetectorYOLO(YOLO):
    """Ultralytics' YOLO, training detection models with DetectorTrainer (line-filtered labels, atomic checkpoints
    that record Ultralytics' classes, clean resume, offline AMP check)."""

    @property
    def task_map(self) -> dict:
        tasks = super().task_map
        tasks["detect"] = {**tasks["detect"], "trainer": DetectorTrainer}
        return tasks


def check_contract() -> None:
    """Raise RuntimeError if Ultralytics' CLI entry no longer reads ARGV and YOLO the way `entrypoint` assumes."""
    names = set(cfg.entrypoint.__code__.co_names)
    argv = ultralytics_utils.ARGV
    needs = {
        "entrypoint and Model.predict read the shared ARGV list": "ARGV" in names
        and "ARGV" in engine_model.Model.predict.__code__.co_names and cfg.ARGV is argv and engine_model.ARGV is argv,
        "entrypoint imports YOLO from ultralytics when called": {"ultralytics", "YOLO"} <= names,
        "YOLO has the task_map property": isinstance(getattr(YOLO, "task_map", None), property),
    }
    require(needs, "cli")


def entrypoint(argv: list[str]) -> None:
    """Ultralytics' `yolo` entry on `argv` (the arguments after the command name), building DetectorYOLO models."""
    check_contract()
    shared, saved = ultralytics_utils.ARGV, list(ultralytics_utils.ARGV)
    shared[:] = ["yolo", *argv]  # in place: every module holds this list (it is sys.argv)
    try:
        with _rebound(ultralytics, "YOLO", DetectorYOLO), rundirs.atomic_save_dirs():
            cfg.entrypoint()
    except BaseException:
        rundirs.remove_empty()
        raise
    finally:
        shared[:] = saved
        rundirs.claimed.clear()
