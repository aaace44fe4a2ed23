"""predict.py's result files: annotated images and videos, YOLO labels, detections.json (`Outputs`), each written
atomically and kept only for a source that was predicted.

Annotated videos are .mp4 (H.264 where OpenCV's FFmpeg has the encoder, else MPEG-4 Part 2, which the pip wheels of
OpenCV have), as Ultralytics users expect; an OpenCV without either writes .avi (OpenCV's own MJPEG writer), with
one warning line. MP4 encoders need an even width and height (FFmpeg would rescale 321x241 to 320x240): an odd-sized
video gets one replicated pixel column or row at its right or bottom edge, so every pixel of it stays where it was.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import cv2

from .utils import AtomicFile, atomic_path, atomic_write, first_line

STREAM_FPS = 30  # annotated webcam and stream videos, as Ultralytics writes them
# (suffix, OpenCV backend, codec): the first that opens is used; the last needs nothing beyond OpenCV itself
VIDEO_WRITERS = ((".mp4", cv2.CAP_FFMPEG, "avc1"), (".mp4", cv2.CAP_FFMPEG, "mp4v"),
                 (".avi", cv2.CAP_OPENCV_MJPEG, "MJPG"))


class CannotSave(Exception):
    """A result file could not be written (a full disk, a folder gone read-only): the run stops there; everything
    saved before stays valid."""

    def __init__(self, path: Path, error: BaseException | str):
        super().__init__(f"cannot write '{path}': {error if isinstance(error, str) else first_line(error)}")


def open_video(folder: Path, base: str, fps: float, size: tuple[int, int]) -> tuple[AtomicFile, cv2.VideoWriter]:
    """A video writer for `base` in `folder`, into a temporary file: the first of VIDEO_WRITERS that opens, `size`
    (width, height) made even for MP4."""
    for suffix, backend, codec in VIDEO_WRITERS:
        file = AtomicFile(folder / f"{base}{suffix}")
        frame = [n + n % 2 for n in size] if suffix == ".mp4" else size
        writer = cv2.VideoWriter(str(file.tmp), backend, cv2.VideoWriter_fourcc(*codec), fps, frame)
        if writer.isOpened():
            return file, writer
        writer.release()
        file.discard()
    raise OSError(f"OpenCV cannot write a video of {size[0]}x{size[1]} here")


def even(image):
    """`image` with its width and height made even (the last column or row repeated), as MP4 encoders need."""
    h, w = image.shape[:2]
    return cv2.copyMakeBorder(image, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE) if h % 2 or w % 2 else image


class Outputs:
    """predict.py's result files in the run folder: annotated copies (--save), YOLO labels with confidences
    (--save-txt), detections.json (--save-json). Named as Ultralytics names them (a second file of the same stem gets
    -2, a video's labels <stem>_<frame>.txt), so nothing but the writing differs:

    - every file is written atomically (detector.utils.atomic_path): under its real name it is complete or absent;
    - a source's files are kept only if the source is: `drop_source` removes what a video that failed midway wrote;
    - a write that fails raises CannotSave after removing the files of the source in hand;
    - detections.json is written as sources finish, into its temporary file (so that a disk filling up late in the run
      needs no room for all of it at once), and renamed at `close`: after a failure it holds every source saved.
    `folder` None: nothing is saved. `warn(line)` prints a warning line (the .avi fallback)."""

    def __init__(self, folder: Path | None, save: bool, save_txt: bool, save_json: bool, existed: Path | None = None,
                 warn=print):
        self.folder, self.existed, self.warn = folder, existed, warn  # existed: the part of the path there before
        self.avi_warned = False
        self.save, self.save_txt = bool(folder and save), bool(folder and save_txt)
        self.bases = set()
        self.files = []  # written so far for the source in hand
        self.video = None  # [base, AtomicFile | None, cv2.VideoWriter | None, frames written] of the one in hand
        self.json = self.json_file = None
        if folder and save_json:
            self.json = AtomicFile(folder / "detections.json")
            self.json_file = open(self.json.tmp, "wb", buffering=0)  # unbuffered: what is written is on file
            self.json_size, self.json_records = 0, 0
            self._append_json(b"[")

    def _base(self, path: str) -> str:
        stem, base, n = Path(path).stem, Path(path).stem, 1
        while base in self.bases:
            n += 1
            base = f"{stem}-{n}"
        self.bases.add(base)
        return base

    def _write(self, dst: Path, data: bytes | None = None, result=None) -> None:
        """Write `data`, or the label lines of `result` (none: no file, as Ultralytics), to `dst`; CannotSave names
        `dst` (not its temporary name) if that fails."""
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            if data is not None:
                atomic_write(dst, data)
            elif len(result.boxes):
                with atomic_path(dst) as tmp:
                    result.save_txt(tmp, save_conf=True)
            else:
                return
        except OSError as e:
            raise CannotSave(dst, e) from None
        self.files.append(dst)

    def _append_json(self, data: bytes) -> None:
        """Append to detections.json's temporary file; on failure cut it back to where it was, so that it always
        ends after a whole record."""
        view = memoryview(data)
        try:
            while view:
                view = view[self.json_file.write(view):]
        except BaseException:  # a full disk, or Ctrl-C / SIGTERM between two writes
            self.json_file.truncate(self.json_size)
            raise
        self.json_size += len(data)

    def _records(self, records: list[dict]) -> None:
        if self.json and records:
            text = ",\n".join(json.dumps(r) for r in records)
            self._append_json(f"{',' if self.json_records else ''}\n{text}".encode())
            self.json_records += len(records)

    def image(self, r, records: list[dict]) -> None:
        """Save one predicted image: all its files and records, or none of them (CannotSave)."""
        with self._source(r.path):
            base = self._base(r.path)
            if self.save:
                ok, jpg = cv2.imencode(".jpg", r.plot())
                if not ok:
                    raise OSError(f"OpenCV cannot encode the annotated image ({r.orig_shape[1]}x{r.orig_shape[0]})")
                self._write(self.folder / f"{base}.jpg", jpg.tobytes())
            if self.save_txt:
                self._write(self.folder / "labels" / f"{base}.txt", result=r)
            self._records(records)
        self.files = []

    def frame(self, r, frame: int, fps: float) -> None:
        """Save one frame of the video or stream in hand: into its annotated video, and its labels."""
        with self._source(r.path):
            if self.video is None:
                base = self._base(r.path)
                self.video = [base, None, None, 0]
                if self.save:
                    h, w = r.orig_shape
                    self.video[1:3] = open_video(self.folder, base, fps or STREAM_FPS, (w, h))
                    if self.video[1].dst.suffix != ".mp4" and not self.avi_warned:
                        self.avi_warned = True
                        self.warn("this OpenCV has no MP4 encoder (FFmpeg with avc1 or mp4v): annotated videos are "
                                  "written as .avi (MJPEG)")
            if self.save:
                self.video[2].write(even(r.plot()) if self.video[1].dst.suffix == ".mp4" else r.plot())
                self.video[3] += 1
            if self.save_txt:
                self._write(self.folder / "labels" / f"{self.video[0]}_{frame}.txt", result=r)

    def end_source(self, records: list[dict]) -> None:
        """The video or stream in hand was predicted (in full or not): keep its files and records."""
        if self.video is None:
            return
        base, file, writer, frames = self.video
        with self._source(base):
            if writer:
                writer.release()
                written = _frame_count(file.tmp)
                if written != frames:  # OpenCV's writer reports no error: a full disk shows as missing frames
                    reason = "No space left on device" if shutil.disk_usage(self.folder).free < 1 << 20 else \
                        "the video writer failed"
                    raise CannotSave(file.dst, f"{written} of {frames} frames written: {reason}")
                self.files.append(file.commit())
            self._records(records)
        self.video, self.files = None, []

    def drop_source(self) -> None:
        """The source in hand failed: remove every file it wrote."""
        if self.video:
            if self.video[2]:
                self.video[2].release()
                self.video[1].discard()
            self.video = None
        for f in self.files:
            f.unlink(missing_ok=True)
        self.files = []

    @contextlib.contextmanager
    def _source(self, path: str):
        """Writing for one source: any failure removes what it wrote and becomes CannotSave, naming the file."""
        try:
            yield
        except CannotSave:
            self.drop_source()
            raise
        except OSError as e:
            self.drop_source()
            raise CannotSave(Path(e.filename or path), e) from None
        except KeyboardInterrupt:
            if self.video is None:  # an image half saved: its files go (a video keeps its frames: Report.finish)
                self.drop_source()
            raise

    def close(self, keep: bool) -> None:
        """End detections.json and put it under its name (`keep` False: nothing was predicted, no file)."""
        if not self.json:
            return
        try:
            if keep:
                self._append_json(b"\n]\n")
            self.json_file.close()
        except OSError as e:
            self.abandon()
            raise CannotSave(self.json.dst, e) from None
        self.json.commit() if keep else self.json.discard()
        self.json = None

    def abandon(self) -> None:
        """Remove whatever is unfinished (after an unforeseen error): detections.json's temporary file, the source's."""
        self.drop_source()
        if self.json:
            self.json_file.close()
            self.json.discard()
            self.json = None


def _frame_count(video: Path) -> int:
    cap = cv2.VideoCapture(str(video))
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    finally:
        cap.release()

