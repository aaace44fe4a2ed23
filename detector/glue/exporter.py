"""Where Ultralytics' exporter writes, made atomic; the OpenVINO conversion the benchmark runs; whether an export is
static-size, for our area attention.

`Exporter.__call__` names its output after the model's `pt_path` (`best.pt` -> `best.onnx`, or the folder
`best_openvino_model/`, next to it) and writes it straight under that name: an export that fails midway leaves a
broken file over the good one. `exporting_to` points `pt_path` at a temporary name next to the destination for the
duration of an export, so the exporter writes there, and the file or folder takes the destination's name only when
the block ends without error (detector.utils.atomic_path, staged_folder). `exporting_to` checks the file it wrote is
the one expected, and has the exporter's log lines ("saved as ...", "Predict: yolo predict model=...") name the
destination, not the temporary name, which is gone when the block ends.

OpenVINO int8 calibrates on the data YAML's `split`, its first `fraction` (the exporter's calibration loader reads
`args.split` and `args.fraction`), and
`openvino_model` calls the function the OpenVINO exporter converts with (`ultralytics.utils.export.openvino.
torch2openvino`: a torch.jit trace, openvino.convert_model, NNCF for int8 with the head's decoding kept in float).

Ultralytics' `Exporter` tells a static-size export from a dynamic one by its `dynamic` argument: it copies it onto the
Detect heads of the model it is about to trace (`m.dynamic = self.args.dynamic`), keeps that model as
`exporter.model`, and then, before any format is exported, runs its `on_export_start` callbacks with itself as the
argument. `install()` adds `prepare_exporters_copy` to Ultralytics' default callbacks, so every exporter made after
`import detector` prepares that copy (`prepare_for_export`): our area-attention layers learn the same thing, so a
static-size export gets Ultralytics' own attention graph (the `AreaAttention` docstring says why), and sub-grid heads
put level 0's channels in the export's order, which saves the graph a transpose. An exporter made before (or a direct
`torch.onnx.export`) leaves the layers on the safe answer, dynamic, and the transpose in; `openvino_model` prepares its
model itself. `check_contract()` checks all of this still holds.
"""

from __future__ import annotations

import contextlib
import inspect
from pathlib import Path

import ultralytics
from torch import nn
from ultralytics.engine.exporter import Exporter
from ultralytics.utils import LOGGER
from ultralytics.utils.callbacks import base as callbacks

from ..attention import AreaAttention
from ..head import SubgridDetect
from ..utils import atomic_path, log_renamed, staged_folder
from . import require

TORCH2OPENVINO_ARGS = ("model", "im", "dynamic", "quantize", "calibration_dataset", "int8_detect")


def check_contract() -> None:
    """Raise RuntimeError if the exporter no longer works the way this module assumes."""
    from ultralytics.utils.export import openvino

    require({
        "Exporter names its output after model.pt_path": "pt_path" in Exporter.__call__.__code__.co_consts,
        "INT8 calibration reads args.split and args.fraction":
            {"split", "fraction"} <= set(Exporter.get_int8_calibration_dataloader.__code__.co_names),
        f"torch2openvino takes {', '.join(TORCH2OPENVINO_ARGS)}":
            set(TORCH2OPENVINO_ARGS) <= set(inspect.signature(openvino.torch2openvino).parameters),
        "Exporter sets the heads' dynamic flag and its model, then runs on_export_start": _tells_size_first(),
        "Exporter exports a copy of the model (prepare_for_export changes it for good)":
            "deepcopy(model" in inspect.getsource(Exporter.__call__),
    }, "exporter")


def _tells_size_first() -> bool:
    source = inspect.getsource(Exporter.__call__)
    where = [source.find(mark) for mark in ("m.dynamic = self.args.dynamic", "self.model = model",
                                              'self.run_callbacks("on_export_start")')]
    return "on_export_start" in callbacks.default_callbacks and -1 not in where and where == sorted(where)


def mark_dynamic(model: nn.Module, dynamic: bool) -> None:
    """Tell every area-attention layer in `model` whether the coming export is dynamic-size."""
    for m in model.modules():
        if isinstance(m, AreaAttention):
            m.dynamic = bool(dynamic)


def prepare_for_export(model: nn.Module, dynamic: bool) -> None:
    """What a model about to be exported gets from us, in place: our area-attention layers learn whether the export
    is dynamic-size (mark_dynamic), and sub-grid heads put level 0's channels in the export's order
    (SubgridDetect.reorder_level0_for_export; the model then computes export outputs only). For the exporter's own
    copy of a model, or one built to be exported."""
    mark_dynamic(model, dynamic)
    for m in model.modules():
        if isinstance(m, SubgridDetect):
            m.reorder_level0_for_export()


def prepare_exporters_copy(exporter) -> None:
    """An `on_export_start` callback: the exporter's copy of the model is prepared for the export its Detect heads
    were told about (prepare_for_export)."""
    prepare_for_export(exporter.model, exporter.args.dynamic)


def install() -> None:
    """Add `prepare_exporters_copy` to Ultralytics' default export callbacks (exporters made from now on). Idempotent."""
    hooks = callbacks.default_callbacks["on_export_start"]
    if prepare_exporters_copy not in hooks:
        hooks.append(prepare_exporters_copy)


def openvino_model(model, im, dynamic: bool = False, calibration=None):
    """The OpenVINO model (ov.Model) Ultralytics' OpenVINO exporter makes of `model` (in export mode, and prepared for
    it here as the exporter's copy is: prepare_for_export) traced at `im`: fp32, or int8 if `calibration` (an
    nncf.Dataset of input batches) is given."""
    from ultralytics.nn.modules.head import Detect
    from ultralytics.utils.export.openvino import torch2openvino

    prepare_for_export(model, dynamic)
    for m in model.modules():  # what Ultralytics' exporter tells its heads (the head's DFL form depends on it)
        if isinstance(m, Detect):
            m.format = "openvino"
    return torch2openvino(model=model, im=im, dynamic=dynamic, quantize=8 if calibration else None,
                          calibration_dataset=calibration, int8_detect=isinstance(model.model[-1], Detect))


@contextlib.contextmanager
def exporting_to(yolo, dst: str | Path):
    """Within the block, `yolo.export(format=...)` writes to a temporary place next to `dst`: a single-file format
    with `dst`'s suffix (`best.onnx`), or a folder format whose folder `dst` is (`best_openvino_model`, named as the
    exporter names it after the weights). Call the yielded `written(path)` with what export returned; it returns
    where the export is until the block ends. When the block ends without error the export replaces `dst`;
    otherwise it is removed and `dst` is untouched."""
    check_contract()
    dst, model = Path(dst), yolo.model
    saved = getattr(model, "pt_path", None)

    def expect(wrote: Path):
        def written(path: str) -> Path:
            if Path(path).resolve() != wrote.resolve():
                raise RuntimeError(f"ultralytics {ultralytics.__version__}: the exporter wrote {path}, not {wrote}; "
                                   "detector.glue.exporter must be updated")
            return wrote

        return written

    def named_as_dst(wrote: Path, pt_path: Path):
        """The log names the export `dst`, and the weights as loaded, not the temporary names (absolute or not)."""
        renames = {wrote: dst, pt_path: Path(saved) if saved else pt_path}
        return log_renamed(LOGGER, {str(x): str(y) for old, new in renames.items()
                                    for x, y in ((old.resolve(), new.resolve()), (old, new))})

    try:
        if dst.suffix:  # one file
            with atomic_path(dst) as tmp:
                model.pt_path = str(tmp.with_suffix(".pt"))  # the exporter swaps the suffix: tmp itself
                with named_as_dst(tmp, Path(model.pt_path)):
                    yield expect(tmp)
        else:  # a folder, made in a stage folder under its final name
            with staged_folder(dst) as stage:
                model.pt_path = str(stage / Path(saved or "model.pt").name)
                with named_as_dst(stage / dst.name, Path(model.pt_path)):
                    yield expect(stage / dst.name)
    finally:
        model.pt_path = saved
