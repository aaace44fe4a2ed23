"""Run folders claimed atomically, in Ultralytics' layout (`runs/<task>/<name>`, then `<name>-2`, `<name>-3`, ...).

Ultralytics' `get_save_dir` picks the first numbered folder that does not exist (`increment_path`) and the trainer,
validator or predictor creates it later: two runs started together with one `name=` pick the same folder and write
into each other's. `claimed_save_dir` is `get_save_dir` with the pick made by creating the folder (`mkdir` without
exist_ok succeeds for one process only; detector.utils.claim_folder), so each run gets its own. Ultralytics' own
choices stay: where a relative `project` goes (under its `runs_dir` setting and the task), `exist_ok=True` (reuse
the folder), an explicit `save_dir`, and DDP workers (their rank's folder is the main process's). A predictor that
saves nothing claims nothing (Ultralytics makes no folder then either).

`atomic_save_dirs()` puts `claimed_save_dir` where the trainer, validator, predictor, tuner and model look
`get_save_dir` up (each module binds the name when it is imported) for one `detector` command; predict.py claims
through `claim(...)`. Export writes next to its model and has no run folder. `check_contract()` checks those modules
still take the function by that name and that get_save_dir still reads the arguments used here.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import SimpleNamespace

import ultralytics
from ultralytics import cfg
from ultralytics.engine import model as engine_model
from ultralytics.engine import predictor, trainer, tuner, validator
from ultralytics.utils import RANK
from ultralytics.utils import tuner as utils_tuner

from ..utils import claim_folder

_ORIGINAL = cfg.get_save_dir
USERS = (cfg, engine_model, predictor, trainer, tuner, validator, utils_tuner)  # modules that call it by name
SAVING = ("save", "save_txt", "save_crop", "save_frames")  # a predictor writes files only with one of these on
claimed: list[Path] = []  # folders claimed in this process, for `remove_empty` after a run that failed early


def check_contract() -> None:
    """Raise RuntimeError if get_save_dir is no longer looked up by name where runs pick their folders, or no longer
    reads the arguments claimed_save_dir relies on."""
    reads = set(_ORIGINAL.__code__.co_names)
    broken = [m.__name__ for m in USERS if getattr(m, "get_save_dir", None) not in (_ORIGINAL, claimed_save_dir)]
    missing = [k for k in ("save_dir", "exist_ok", "project", "increment_path") if k not in reads]
    if broken or missing:
        raise RuntimeError(f"ultralytics {ultralytics.__version__}: get_save_dir "
                           f"{'is no longer imported by name in ' + ', '.join(broken) if broken else ''}"
                           f"{'; ' if broken and missing else ''}"
                           f"{'no longer reads ' + ', '.join(missing) if missing else ''}; "
                           "detector.glue.rundirs must be updated")


def claimed_save_dir(args, name: str | None = None) -> Path:
    """Ultralytics' get_save_dir(args, name), the folder created as it is chosen (numbered past any that exists)."""
    writes = getattr(args, "mode", None) not in ("predict", "track") or any(getattr(args, k, False) for k in SAVING)
    if getattr(args, "save_dir", None) or getattr(args, "exist_ok", False) or RANK not in {-1, 0} or not writes:
        return _ORIGINAL(args, name)
    wanted = _ORIGINAL(SimpleNamespace(**{**vars(args), "exist_ok": True}), name)  # the folder before numbering
    folder = claim_folder(wanted.parent, wanted.name)
    claimed.append(folder)
    return folder


def claim(project: str | None, name: str, task: str = "detect", mode: str = "predict") -> Path:
    """The run folder Ultralytics would use for `project=`/`name=` (project None: its runs folder), created."""
    return claimed_save_dir(SimpleNamespace(project=project, name=name, task=task, mode=mode, exist_ok=False,
                                            save=True))


def planned(project: str | None, name: str, task: str = "detect", mode: str = "predict") -> Path:
    """Where `claim` would create the run folder (numbering aside), creating nothing."""
    return _ORIGINAL(SimpleNamespace(project=project, name=name, task=task, mode=mode, exist_ok=True))


@contextlib.contextmanager
def atomic_save_dirs():
    """While open, every run Ultralytics starts in this process claims its folder (`claimed_save_dir`)."""
    check_contract()
    for module in USERS:
        module.get_save_dir = claimed_save_dir
    try:
        yield
    finally:
        for module in USERS:
            module.get_save_dir = _ORIGINAL


def remove_empty() -> None:
    """Remove the folders claimed in this process that are still empty (a run that stopped before writing)."""
    while claimed:
        with contextlib.suppress(OSError):
            claimed.pop().rmdir()
