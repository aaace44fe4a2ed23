"""Loading `.pt` checkpoints: Ultralytics' restricted loader by default, and our SDPA layers in whatever loads.

Every `.pt` Ultralytics loads goes through `ultralytics.nn.tasks.torch_safe_load`, called by module-global name from
`load_checkpoint` (which `YOLO(path)`, the trainer's resume and pretrained weights, and the predictor's and validator's
AutoBackend use). It loads one of two ways: full unpickling (its default; a pickle runs whatever code it names), or,
with `ULTRALYTICS_SAFE_LOAD=1` or `safe_only=True`, `torch.load(weights_only=True)` against an allow-list of
Ultralytics' and torch's model classes (its `_SafeLoad`). `install()` rebinds that one name to `safe_load`:

- restricted by default: a file that needs anything outside the allow-list is refused with `UnsafeCheckpoint`, one
  line saying why and how to opt in for a file you trust (`DETECTOR_TRUST_PICKLE=1`, detector.trust), before any of
  its code runs;
- our layer classes added to the allow-list, so checkpoints of detector 0.1 (which pickled `detector.attention.*`)
  still load;
- a file whose zip CRCs do not match (flipped bytes, which torch.load reads silently) refused (detector.integrity);
- the loaded model switched to our SDPA layers (`use_sdpa`). The checkpoints we write record Ultralytics' own classes
  (`use_stock`, in DetectorTrainer.save_model and detector.weights), so Ultralytics alone loads them too and runs
  them on its matmul attention: same weights, same outputs.
`restricted_load` is the same load without the switch to our layers, for code that writes the checkpoint back
(DetectorTrainer's final strip). `check_contract()` checks that `load_checkpoint` still reads `torch_safe_load` from
its module and that the restricted loader is there.
"""

from __future__ import annotations

import inspect
import os
import pickle
import re

import torch
from torch import nn
from ultralytics.nn import tasks

from ..attention import STOCK_BASE, use_sdpa
from ..head import LastAxisDFL
from ..integrity import problem
from ..trust import hint, trusted
from . import require
from .registry import HEADS

LEGACY_FORMAT = "detector-weights/1"  # detector 0.1's weights-only files (a dict with a state dict and the YAML)
ULTRALYTICS_LOAD = tasks.torch_safe_load  # Ultralytics' own, captured before install() rebinds the name


class UnsafeCheckpoint(ValueError):
    """A .pt file that restricted loading refuses: it names code or classes outside the allow-list."""


def check_contract() -> None:
    """Raise RuntimeError if Ultralytics' checkpoint loading no longer works the way `safe_load` assumes."""
    needs = {
        "load_checkpoint calls torch_safe_load by module-global name":
            "torch_safe_load" in inspect.unwrap(tasks.load_checkpoint).__code__.co_names,
        "torch_safe_load(weight, safe_only=...) exists":
            list(inspect.signature(ULTRALYTICS_LOAD).parameters) == ["weight", "safe_only"],
        "the restricted loader (_SafeLoad) is supported with this torch":
            getattr(getattr(tasks, "_SafeLoad", None), "SUPPORTED", False),
    }
    require(needs, "checkpoints")


def _refused_name(error: BaseException) -> str:
    """The global torch's restricted unpickler refused, from its message ('Unsupported global: GLOBAL os.system ...')."""
    while error is not None:
        found = re.search(r"GLOBAL ([\w.]+)|unsafe (getattr\([^)]*\))", str(error))
        if found:
            return found[1] or found[2]
        error = error.__cause__ or error.__context__
    return "something"


def restricted_load(weight, safe_only=None) -> tuple[dict, str]:
    """Ultralytics' `torch_safe_load`, restricted unless the user trusts the file (detector.trust), after the file's
    zip CRCs are checked. Returns (checkpoint dict, file) as Ultralytics' does; the classes are those pickled."""
    if safe_only is None:
        safe_only = not trusted()
    if os.path.isfile(weight) and (reason := problem(weight, (".pt",))):  # e.g. zip CRCs that do not match
        raise ValueError(f"'{weight}': {reason}")
    try:
        ckpt, file = ULTRALYTICS_LOAD(weight, safe_only=safe_only)
    except TypeError as e:
        cause = e.__cause__
        if safe_only and isinstance(cause, pickle.UnpicklingError):
            raise UnsafeCheckpoint(
                f"'{weight}': refused: it names {_refused_name(cause)}, which is not on Ultralytics' allow-list of "
                f"model classes, and unpickling a file runs what it names; {hint()}"
            ) from None
        raise
    return ckpt, file


def safe_load(weight, safe_only=None):
    """`restricted_load`, then our SDPA layers in the model (what every Ultralytics load does after `install()`).
    Returns (checkpoint dict, file) as Ultralytics' `torch_safe_load` does."""
    ckpt, file = restricted_load(weight, safe_only)
    if ckpt.get("format") == LEGACY_FORMAT:
        raise ValueError(f"'{weight}': a weights-only file of detector 0.1; convert it to an Ultralytics checkpoint "
                         f"with: python -m detector.weights {weight} <new>.pt")
    for key in ("model", "ema"):
        if isinstance(ckpt.get(key), nn.Module):
            use_sdpa(ckpt[key])
    return ckpt, file


def install() -> None:
    """Make every Ultralytics checkpoint load go through `safe_load`, and allow our classes. Idempotent."""
    check_contract()
    torch.serialization.add_safe_globals(list(STOCK_BASE))  # detector 0.1 checkpoints pickle our classes
    torch.serialization.add_safe_globals([*HEADS.values(), LastAxisDFL])  # our heads have no stock twin
    tasks.torch_safe_load = safe_load
