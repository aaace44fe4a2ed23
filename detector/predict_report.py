"""predict.py's per-input report: one line per image, one per video or stream, error and warning lines, the summary and
the exit status (`Report`), with the results of each predicted source handed to `Outputs`."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from ultralytics.utils import TQDM

from . import sources
from .predict_args import error
from .predict_outputs import CannotSave, Outputs
from .utils import interrupted_status


class Report:
    """Counts inputs as ok, incomplete or failed, prints one line for each, and hands each predicted source's results
    to `Outputs` (a source counts as predicted once they are saved).

    `add` records each input's name as the user wrote it (keyed by the absolute path Ultralytics reports), and for
    videos the frame count and fps their header declares (to tell a truncated video, and to write the annotated one)."""

    def __init__(self):
        self.names, self.declared, self.fps = {}, {}, {}
        self.outputs = Outputs(None, False, False, False)
        self.ok = self.incomplete = self.failed = self.detections = 0
        self.video = None  # [path, frames, records] of the video or stream being predicted
        self.bar = TQDM(disable=True)  # until start(): the model loads first

    def add(self, inputs: list[sources.Input]) -> None:
        for i in inputs:
            key = i.path if i.kind in ("stream", "url") else str(Path(i.path).absolute())
            self.names[key], self.declared[key], self.fps[key] = i.name, i.frames, i.fps

    def start(self, total: int) -> None:
        """Show the progress bar over `total` images and video frames, if more than one, on a terminal."""
        self.bar = TQDM(total=total, desc="predict", unit="img", file=sys.stderr,
                        disable=total <= 1 or not sys.stderr.isatty())

    def say(self, line: str, file=None) -> None:
        self.bar.clear()  # a line written over the bar would leave half a bar in front of it
        print(line, file=file or sys.stdout, flush=True)
        self.bar.refresh()

    def fail(self, path: str, reason: str) -> None:
        if self.video and self.video[0] == path:
            self.drop_video()
        self.failed += 1
        self.say(f"predict.py: error: source '{self.names.get(path, path)}': {reason}; skipped", sys.stderr)

    def unreadable_image(self, path: str, reason: str) -> None:
        """An image that does not decode, found by the loader: it counted in the progress bar's total."""
        self.fail(path, reason)
        self.bar.update(1)

    def result(self, r, mode: str, frame: int | None, original_size: tuple[int, int] | None) -> None:
        """One predicted image, video frame or stream frame. original_size: the image was decoded reduced.
        Raises CannotSave if its results cannot be written (the image, or the video it belongs to, then failed)."""
        if self.video and (mode == "image" or self.video[0] != r.path):
            self.end_video()
        h, w = r.orig_shape
        scale = [original_size[0] / w, original_size[1] / h] * 2 if original_size else [1] * 4
        records = [dict(image=r.path, frame=frame, class_id=int(cls), class_name=r.names[int(cls)],
                        confidence=round(conf, 5), box_xyxy=[round(v * k, 2) for v, k in zip(box, scale)])
                   for box, conf, cls in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist())]
        if mode == "image":
            try:
                self.outputs.image(r, records)
            except CannotSave:
                self.failed += 1
                raise
            self.ok += 1
            self.detections += len(records)
            size = f"{original_size[0]}x{original_size[1]} (read at {w}x{h})" if original_size else f"{w}x{h}"
            found = r.verbose().rstrip(", ")
            self.say(f"{self.names.get(r.path, r.path)}: {size}, {found}, {r.speed['inference']:.1f}ms")
        else:
            self.video = self.video or [r.path, 0, []]
            try:
                self.outputs.frame(r, frame, self.fps.get(r.path, 0))
            except CannotSave:
                self.video = None
                self.failed += 1
                raise
            self.video[1] += 1
            self.video[2] += records
        self.bar.update(1)

    def drop_video(self) -> None:
        """The video or stream being predicted failed midway: its files go, and it gets the error line."""
        self.outputs.drop_source()
        self.video = None

    def end_video(self, interrupted: bool = False) -> None:
        """The video or stream being predicted ended (or the run was interrupted in it): its results are saved, and it
        gets one line, with a warning if it ended early."""
        if not self.video:
            return
        path, frames, records = self.video
        self.video = None
        try:
            self.outputs.end_source(records)
        except CannotSave:
            self.failed += 1
            raise
        self.detections += len(records)
        name, declared = self.names.get(path, path), self.declared.get(path, 0)
        # Some containers' headers hold an estimate (duration x fps): a frame, or 1%, short is not called truncated.
        if interrupted and declared - frames > 0:
            self.incomplete += 1
            self.say(f"predict.py: warning: source '{name}': interrupted after frame {frames} of {declared}; "
                     "results cover those", sys.stderr)
        elif declared - frames > max(1, declared // 100):
            self.incomplete += 1
            self.say(f"predict.py: warning: source '{name}': truncated or corrupt after frame {frames}: "
                     f"{frames} of {declared} frames decode; predicted those", sys.stderr)
        else:
            self.ok += 1
        self.say(f"{name}: {frames} frames, {len(records)} detections")

    def finish(self, interrupt: KeyboardInterrupt | None = None, stopped: bool = False) -> int:
        """Save what is in hand, end detections.json, print the summary, return the exit status (see predict.py)."""
        try:
            self.end_video(interrupted=interrupt is not None)
        except CannotSave as e:
            error(f"{e}; stopped")
            stopped = True
        self.bar.close()
        done = self.ok + self.incomplete
        try:
            self.outputs.close(keep=done > 0)
        except CannotSave as e:
            error(f"{e}; detections.json not written")
        folder = self.outputs.folder
        if folder:
            _remove_if_empty(folder, self.outputs.existed)
        incomplete = f"{self.incomplete} incomplete, " if self.incomplete else ""
        counts = f"{self.ok} ok, {incomplete}{self.failed} failed"
        status = interrupted_status(interrupt) if interrupt else None
        how = " (terminated)" if status == 143 else " (interrupted)" if status else " (stopped)" if stopped else ""
        if not done:
            outcome = "nothing predicted"
        else:
            outcome = f"{self.detections} detections" + (f"; results in {folder}" if folder and folder.exists() else "")
        print(f"summary: {counts}{how}; {outcome}", flush=True)
        if interrupt:
            return interrupted_status(interrupt)
        return 0 if done and not (self.incomplete or self.failed) else 1 if done else 2


def _remove_if_empty(folder: Path, existed: Path) -> None:
    """A run folder claimed for results that never came: remove it, its empty labels/ and downloads/, and the parents
    made for it (up to `existed`, there before)."""
    for path in (folder / "labels", folder / "downloads", folder, *folder.parents):
        if path == existed:
            return
        with contextlib.suppress(OSError):
            path.rmdir()

