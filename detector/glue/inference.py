"""What predict.py and the benchmark read from Ultralytics' predictor and model objects beyond their public API.

- `BasePredictor.stream_inference` keeps the batch in flight in `predictor.batch` ((paths, images, info)) and the
  loader, or on GPU a snapshot of it taken with that batch, in `predictor.dataset` (its `mode` and `frame`): the only
  way to know which file a failure belongs to and which frame a result is.
- Detection heads have an `export` flag: on, the head returns one tensor, as in an exported graph.
`check_contract()` checks both still hold.
"""

from __future__ import annotations

import inspect

import ultralytics
from torch import nn
from ultralytics.engine.predictor import BasePredictor
from ultralytics.nn.modules.head import Detect


def check_contract() -> None:
    """Raise RuntimeError if the predictor or the Detect head no longer work the way this module assumes."""
    names = set(inspect.unwrap(BasePredictor.stream_inference).__code__.co_names)  # under a decorator
    broken = [what for what, ok in {
        "BasePredictor.stream_inference sets self.batch/self.dataset": {"batch", "dataset"} <= names,
        "Detect has the export flag": hasattr(Detect, "export"),
    }.items() if not ok]
    if broken:
        raise RuntimeError(f"ultralytics {ultralytics.__version__}: {'; '.join(broken)} no longer holds; "
                           "detector.glue.inference must be updated")


def batch_path(predictor) -> str | None:
    """The first file of the batch the predictor was working on, or None before any batch was read."""
    return predictor.batch[0][0] if predictor.batch else None


def frame_of(predictor) -> tuple[str, int | None]:
    """(mode, frame) of the result just produced: mode 'image', 'video' or 'stream'; frame for a video, else None."""
    dataset = predictor.dataset
    return dataset.mode, dataset.frame if dataset.mode == "video" else None


def set_export_mode(model: nn.Module, on: bool) -> None:
    """Ultralytics' export mode (its head returns one tensor, as in an exported graph) on or off."""
    for m in model.modules():
        if hasattr(m, "export"):
            m.export = on
