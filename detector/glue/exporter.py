"""Where Ultralytics' exporter writes, made atomic.

`Exporter.__call__` names its output after the model's `pt_path` (`best.pt` -> `best.onnx`, next to it) and writes
it straight under that name: an export that fails midway leaves a broken file over the good one. `exporting_to`
points `pt_path` at a temporary name next to the destination for the duration of an export, so the exporter writes
there, and the file takes the destination's name only when the block ends without error (detector.utils.atomic_path).
`check_contract()` checks that the exporter still reads `pt_path`; `exporting_to` checks the file it wrote is the one
expected.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import ultralytics
from ultralytics.engine.exporter import Exporter

from ..utils import atomic_path


def check_contract() -> None:
    """Raise RuntimeError if the exporter no longer names its output after the model's pt_path."""
    if "pt_path" not in Exporter.__call__.__code__.co_consts:
        raise RuntimeError(f"ultralytics {ultralytics.__version__}: Exporter no longer names its output after "
                           "model.pt_path; detector.glue.exporter must be updated")


@contextlib.contextmanager
def exporting_to(yolo, dst: str | Path):
    """Within the block, `yolo.export(format=...)` for a single-file format with `dst`'s suffix writes to a temporary
    file next to `dst`; call the yielded `written(path)` with what export returned. When the block ends without
    error the file replaces `dst` in one step; otherwise it is removed and `dst` is untouched."""
    check_contract()
    model = yolo.model
    saved = getattr(model, "pt_path", None)
    with atomic_path(dst) as tmp:
        model.pt_path = str(tmp.with_suffix(".pt"))  # the exporter swaps the suffix: tmp itself

        def written(path: str) -> Path:
            if Path(path).resolve() != tmp.resolve():
                raise RuntimeError(f"ultralytics {ultralytics.__version__}: the exporter wrote {path}, not next to "
                                   "model.pt_path; detector.glue.exporter must be updated")
            return tmp

        try:
            yield written
        finally:
            model.pt_path = saved
