"""What predict.py and the benchmark use of Ultralytics' predictor and model objects beyond their public API.

- `setup_predictor`: the predictor `YOLO.predict` would run, with its arguments, built and set up without predicting.
  `Model.predict` merges the checkpoint's settings (its imgsz), its own defaults (rect letterbox, conf, batch 1) and
  the caller's, builds the predictor and sets its model up before it returns the result stream, which does nothing
  until iterated. predict.py then feeds that predictor its own loader: the same letterbox, size and thresholds as
  `YOLO(w).predict` and the `detector predict` command, by construction.
- `BasePredictor.stream_inference` keeps the batch in flight in `predictor.batch` ((paths, images, info)) and the
  loader, or on GPU a snapshot of it taken with that batch, in `predictor.dataset` (its `mode` and `frame`): the only
  way to know which file a failure belongs to and which frame a result is.
- Detection heads have an `export` flag: on, the head returns one tensor, as in an exported graph.
- `install()` adds `refuse_non_finite` to the predictors' default `on_predict_start` callbacks: weights holding a NaN
  or an infinity (a diverged training run) predict nothing, silently; every predict path says so instead.
`check_contract()` checks all of these still hold.
"""

from __future__ import annotations

import inspect
import weakref

import torch
from torch import nn
from ultralytics.engine.model import Model
from ultralytics.engine.predictor import BasePredictor
from ultralytics.nn.modules.head import Detect
from ultralytics.utils.callbacks import base as callbacks

from . import require

SETUP_ONLY = "setup-only"  # the source handed to Model.predict by setup_predictor: never read (nothing is iterated)
_finite = weakref.WeakSet()  # models found finite: checked once, not on every predict call


class NonFiniteWeights(ValueError):
    """Weights holding NaN or infinities: the model would predict nothing."""


def check_contract() -> None:
    """Raise RuntimeError if the predictor, Model.predict or the Detect head no longer work the way this module
    assumes."""
    names = set(inspect.unwrap(BasePredictor.stream_inference).__code__.co_names)  # under a decorator
    predict_names = set(Model.predict.__code__.co_names)
    require({
        "BasePredictor.stream_inference sets self.batch/self.dataset": {"batch", "dataset"} <= names,
        "BasePredictor.stream_inference is a generator that runs on_predict_start":
            inspect.isgeneratorfunction(inspect.unwrap(BasePredictor.stream_inference))
            and "run_callbacks" in names and "on_predict_start" in inspect.getsource(BasePredictor.stream_inference),
        "Model.predict builds and sets up self.predictor before predicting": {"predictor", "setup_model"}
            <= predict_names,
        "Detect has the export flag": hasattr(Detect, "export"),
        "default callbacks have on_predict_start": "on_predict_start" in callbacks.default_callbacks,
    }, "inference")


def setup_predictor(yolo: Model, **overrides) -> BasePredictor:
    """The predictor `yolo.predict(source, stream=True, **overrides)` would use, its model set up (an .onnx or
    OpenVINO model opened), nothing predicted. Call it with a source as `predictor(source, stream=True)`."""
    yolo.predict(SETUP_ONLY, stream=True, **overrides).close()  # the stream never started: no source was opened
    return yolo.predictor


def nonfinite_problem(model: nn.Module) -> str | None:
    """Why `model` cannot predict if some weight or buffer of it is NaN or infinite (None if all are finite)."""
    if model in _finite:
        return None
    bad, total, first = 0, 0, None
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_floating_point():
            n = t.numel() - int(torch.isfinite(t).sum())
            bad, total, first = bad + n, total + t.numel(), first or (name if n else None)
    if not bad:
        _finite.add(model)
        return None
    return (f"{bad:,} of its {total:,} weights are NaN or infinite (the first in {first}; a diverged training run?): "
            "it would predict nothing")


def refuse_non_finite(predictor: BasePredictor) -> None:
    """on_predict_start callback: raise NonFiniteWeights, naming the weights, if the PyTorch model holds NaN or inf."""
    model = getattr(predictor.model, "model", None)  # AutoBackend's PyTorch module (exported formats: none)
    if isinstance(model, nn.Module) and (problem := nonfinite_problem(model)):
        raise NonFiniteWeights(f"weights '{predictor.args.model}': {problem}")


def install() -> None:
    """Add `refuse_non_finite` to Ultralytics' default predict callbacks (predictors made from now on). Idempotent."""
    hooks = callbacks.default_callbacks["on_predict_start"]
    if refuse_non_finite not in hooks:
        hooks.append(refuse_non_finite)


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
