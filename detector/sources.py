"""predict.py's inputs: sources expanded into checked files, and images read without blowing memory.

A source is an image or video file, a folder, a glob, a .txt list of those, a webcam index, the URL of an image or
video, or a stream URL. `expand` turns the sources into `Input`s and, for each one that cannot be used, a (path,
reason) problem. Only cheap checks run there (exists, readable, not empty; a video opens and its first frame decodes;
a webcam opens): images are decoded once, when predicted, by `read_image` (called by detector.glue.loader.Loader,
which reports a file it cannot decode and goes on with the next).

A source is what it says: a path that exists is that file or folder whatever characters its name holds (only a path
that does not exist can be a glob pattern, a webcam index or a URL); a path that is neither a regular file nor a
folder (a FIFO, a device, a socket, or a symlink to one) is refused before it is opened (`special_problem`: reading
one blocks or never ends); and a file reached twice (a glob through a symlink loop, the same file named twice) is
predicted once. The URL of an image or video file is downloaded by `download` into a folder predict.py gives it (the
run's own), never into the current folder (where Ultralytics puts it, and where it would take an unrelated local file
of the same name for it). A multi-page TIFF is predicted on its
first page, as Ultralytics reads it; `Input.pages` says how many it has, for predict.py's warning.

Large images: above FULL_RES_PIXELS an image is decoded at 1/2, 1/4 or 1/8 of its size, the first that fits (libjpeg
scales JPEGs while decoding, so a 10000x10000 JPEG never exists in memory at full size; other formats are decoded in
full, then shrunk). The model sees imgsz pixels anyway, so detections hardly change; the annotated copy is the reduced
image. Above MAX_PIXELS an image is refused.
"""

from __future__ import annotations

import glob
import os
import stat
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError
from ultralytics.data.utils import IMG_FORMATS, VID_FORMATS
from ultralytics.utils.patches import imread

from .glue.loader import PIL_OPEN
from .utils import atomic_path, first_line

FULL_RES_PIXELS = 25_000_000  # 5000 x 5000: one BGR copy is 75 MB, and prediction holds a few
MAX_PIXELS = 1 << 28  # 16384 x 16384: a non-JPEG this large takes 800 MB to decode; 1/8 of it is within FULL_RES
REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
# OpenCV 4 decodes a truncated JPEG without error, the missing part grey (libjpeg only warns); OpenCV 5 returns None.
# On 4, JPEGs are also decoded by PIL at 1/8 scale (a fifth of the cost of the decode itself) to find truncation.
OPENCV_FILLS_TRUNCATED_JPEG = int(cv2.__version__.split(".")[0]) < 5


# What a path that is neither a regular file nor a folder is: reading one blocks forever (a FIFO with no writer, a
# socket) or never ends (/dev/zero), so it is refused before it is opened.
SPECIAL_FILES = {stat.S_ISFIFO: "a FIFO (named pipe)", stat.S_ISCHR: "a character device",
                 stat.S_ISBLK: "a block device", stat.S_ISSOCK: "a socket"}


class BadInput(Exception):
    """An input that cannot be used; the message says why, without the path (the caller names it)."""


@dataclass
class Input:
    kind: str  # "image", "video", "stream" (webcam index or stream URL: Ultralytics opens it) or "url" (to download)
    path: str  # as the user wrote it, or as found in their folder, glob or list; a download: where it was saved
    frames: int = 0  # video: the frame count its container declares (0: unknown)
    fps: float = 0  # video: the frame rate its container declares (0: unknown)
    pages: int = 1  # image: pages in a multi-page TIFF (only the first is predicted)
    source: str = ""  # how the user named it, where that is not `path` (a downloaded URL)

    @property
    def name(self) -> str:
        return self.source or self.path


def quiet_opencv() -> None:
    """Silence OpenCV's and FFmpeg's own messages ("moov atom not found", "can't open camera by index"): they name no
    file and repeat what predict.py says in one line. OPENCV_LOG_LEVEL / OPENCV_FFMPEG_LOGLEVEL set by the user win."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET, read when a capture opens
    if "OPENCV_LOG_LEVEL" not in os.environ:
        set_log_level(0)  # LOG_LEVEL_SILENT


def set_log_level(level: int) -> int:
    """Set OpenCV's log level (cv2.setLogLevel in OpenCV 4, cv2.utils.logging in 5); returns the previous one."""
    api = cv2 if hasattr(cv2, "setLogLevel") else cv2.utils.logging
    previous = api.getLogLevel()
    api.setLogLevel(level)
    return previous


def special_problem(path: str | Path) -> str | None:
    """Why `path` is refused if it exists but is no regular file or folder (following symlinks), else None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # missing, a dangling symlink, no permission: the caller's checks say which
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    what = next((name for test, name in SPECIAL_FILES.items() if test(mode)), "a special file")
    link = f" (a symlink to {os.path.realpath(path)})" if os.path.islink(path) else ""
    return f"not a regular file: {what}{link}; refusing to read it"


def unreadable_special(source: str) -> str | None:
    """For the `detector` command, whose loader (Ultralytics') reads every file it is given: the error line for a
    source that is, or a folder or glob that holds, a FIFO, device or socket with an image or video suffix."""
    path = Path(source)
    if path.is_dir():
        candidates = [str(p) for p in path.iterdir() if kind_of(str(p))]
    elif os.path.lexists(path):
        candidates = [source]
    else:
        candidates = [f for f in glob.glob(source, recursive=True) if kind_of(f)] if _is_pattern(path) else []
    for f in sorted(candidates):
        if problem := special_problem(f):
            return f"source '{f}': {problem}"
    return None


def kind_of(path: str) -> str | None:
    suffix = Path(path).suffix[1:].lower()
    return "image" if suffix in IMG_FORMATS else "video" if suffix in VID_FORMATS else None


def media_url(source: str) -> bool:
    """An http(s) URL naming an image or video file (Ultralytics would download it into the current folder)."""
    url = urllib.parse.urlsplit(source)
    return url.scheme.lower() in ("http", "https") and kind_of(url.path) is not None


def expand(sources: list[str]) -> tuple[list[Input], list[tuple[str, str]]]:
    """Sources -> (usable inputs, problems as (source, reason)), in the order given; folders and globs sorted; each
    file once (by its real path: a glob through a symlink loop reaches the same files again and again)."""
    inputs, problems, seen = [], [], set()
    for source in sources:
        _expand(source, inputs, problems, seen, list_file=None)
    return inputs, problems


def _expand(source: str, inputs: list, problems: list, seen: set, list_file: Path | None) -> None:
    path = Path(source)
    if list_file and not path.is_absolute() and not _exists(path):
        path = list_file.parent / path  # an entry of a list may be relative to the list, as Ultralytics reads it
    if not os.path.lexists(path):  # only a name that is no file or folder can be a URL, a webcam or a pattern
        if media_url(source):
            inputs.append(Input("url", source))  # downloaded into the run's folder by `download`
            return
        if source.isdigit():
            cap = cv2.VideoCapture(int(source))
            opened = cap.isOpened()
            cap.release()  # Ultralytics opens it again to predict
            if opened:
                inputs.append(Input("stream", source))
            else:
                problems.append((source, f"no webcam with index {source} (cannot open it)"))
            return
        if "://" in source:
            inputs.append(Input("stream", source))  # streams: Ultralytics opens them, errors come at predict time
            return
    if problem := special_problem(path):
        problems.append((source, problem))
        return
    if _is_pattern(path):
        files = [f for f in sorted(glob.glob(str(path), recursive=True)) if not os.path.isdir(f)]
        if not files:
            problems.append((source, "no file matches this pattern"))
        _add_files(source, files, inputs, problems, seen)
    elif path.is_dir():
        files = sorted(str(p) for p in path.iterdir() if not p.is_dir())  # FIFOs and the like too: refused by name
        if not files:
            problems.append((source, "empty folder"))
        _add_files(source, files, inputs, problems, seen)
    elif not path.exists():
        problems.append((source, "no such file or folder"))
    elif path.suffix.lower() == ".txt" and list_file is None:
        try:
            entries = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            problems.append((source, f"cannot read this list ({first_line(e)})"))
            return
        if not entries:
            problems.append((source, "empty list"))
        for entry in entries:
            _expand(entry, inputs, problems, seen, list_file=path)
    elif kind_of(str(path)) is None:
        problems.append((source, f"not an image or video (suffix '{path.suffix}'); see --help for the formats"))
    else:
        _add_files(source, [str(path)], inputs, problems, seen)


def _is_pattern(path: Path) -> bool:
    return not os.path.lexists(path) and any(c in str(path) for c in "*?[")


def _exists(path: Path) -> bool:
    return bool(glob.glob(str(path), recursive=True)) if _is_pattern(path) else path.exists()


def _add_files(source: str, files: list[str], inputs: list, problems: list, seen: set) -> None:
    """Check files of image/video suffixes, skipping other suffixes as Ultralytics does (a folder may hold a README),
    and files already `seen` (real paths)."""
    media = [f for f in files if kind_of(f)]
    if files and not media:
        problems.append((source, "no images or videos in it (see --help for the formats)"))
    for f in media:
        if (real := os.path.realpath(f)) in seen:
            continue
        seen.add(real)
        try:
            inputs.append(check_file(f))
        except BadInput as e:
            problems.append((f, str(e)))


def check_file(path: str) -> Input:
    """Cheap checks before predicting: a regular file, readable, not empty; a video also opens and decodes a first
    frame."""
    if problem := special_problem(path):
        raise BadInput(problem)
    try:
        with open(path, "rb") as f:
            if not f.read(1):
                raise BadInput("empty file (0 bytes)")
    except OSError as e:
        raise BadInput(f"cannot read it ({first_line(e)})") from None
    if kind_of(path) == "image":
        return Input("image", path, pages=_pages(path))
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise BadInput("cannot open it as a video (not a video, truncated before its index, or an unknown codec)")
        if not cap.grab():
            raise BadInput("opens as a video, but no frame decodes")
        return Input("video", path, frames=max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0),
                     fps=max(cap.get(cv2.CAP_PROP_FPS), 0))
    finally:
        cap.release()


def _pages(path: str) -> int:
    """Pages in a TIFF, from its header (1 for other formats, or where PIL cannot tell)."""
    if not path.lower().endswith((".tif", ".tiff")):
        return 1
    try:
        with pil_open(path) as im:
            return int(getattr(im, "n_frames", 1))
    except Exception:
        return 1


DOWNLOAD_TIMEOUT_S = 30


def download(url: str, folder: Path) -> Input:
    """Fetch the image or video at `url` into `folder` (atomically: a download that breaks leaves nothing) under the
    name in the URL (numbered if taken), and check it like a local file; raises BadInput with the reason."""
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    folder.mkdir(parents=True, exist_ok=True)
    dst, n = folder / name, 1
    while dst.exists():
        n += 1
        dst = folder / f"{Path(name).stem}-{n}{Path(name).suffix}"
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, atomic_path(dst) as tmp:
            with open(tmp, "wb") as f:
                while chunk := response.read(1 << 20):
                    f.write(chunk)
    except OSError as e:  # URLError and HTTPError are OSErrors; so is a full disk
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
        raise BadInput(f"cannot download it ({reason})") from None
    checked = check_file(str(dst))
    checked.source = url
    return checked


def read_image(path: str) -> tuple[np.ndarray, tuple[int, int] | None]:
    """Decode an image as 3-channel 8-bit BGR (grey, alpha and 16-bit converted by OpenCV, as Ultralytics reads them).

    Returns the image and, when it was decoded reduced, its full (width, height) in the decoded image's orientation;
    raises BadInput, with the reason in one line, if it cannot (predict.py's Loader reads images with this)."""
    size, form = _header(path)
    factor = 1
    if size:
        pixels = size[0] * size[1]
        if pixels > MAX_PIXELS:
            raise BadInput(f"too large: {size[0]}x{size[1]} ({pixels / 1e6:.1f} MP), above the limit of "
                           f"{MAX_PIXELS / 1e6:.0f} MP")
        factor = next(f for f in (1, 2, 4, 8) if pixels <= FULL_RES_PIXELS * f * f)
    if factor == 1:
        im = imread(path)  # Ultralytics' reader: multi-page TIFF, HEIC/AVIF through PIL
    else:
        im = cv2.imdecode(np.fromfile(path, np.uint8), REDUCED[factor])
    if im is None:
        raise BadInput(pil_problem(path) or "OpenCV cannot decode it")
    if form == "JPEG" and OPENCV_FILLS_TRUNCATED_JPEG and (problem := pil_problem(path)):
        raise BadInput(problem)
    if factor == 1:
        return im, None
    w, h = size
    return im, (w, h) if (im.shape[1] >= im.shape[0]) == (w >= h) else (h, w)  # OpenCV applied an EXIF rotation


@contextmanager
def pil_open(path: str):
    """PIL's Image.open without its decompression-bomb check, which warns from 89 MP and refuses from 179 MP:
    read_image applies its own limit to the size in the header before anything is decoded."""
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with PIL_OPEN(path) as im:
            yield im
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _header(path: str) -> tuple[tuple[int, int] | None, str | None]:
    """((width, height), format) from the header, nothing decoded; None where PIL cannot parse it (OpenCV may still
    decode it)."""
    try:
        with pil_open(path) as im:
            return im.size, im.format
    except Exception:  # not an image, or a format PIL lacks: the decoder decides, and pil_problem explains
        return None, None


def pil_problem(path: str) -> str | None:
    """What is wrong with an image file, asked of PIL (OpenCV only returns None); None if PIL decodes it."""
    name = "image"
    try:
        with pil_open(path) as im:
            name = im.format or name
            im.draft("RGB", (1, 1))  # JPEG: decode at 1/8 scale, enough to find where the data ends
            im.load()
    except UnidentifiedImageError:
        return "not an image (its content matches no image format)"
    except Exception as e:
        return f"corrupt or truncated {name} ({first_line(e)})"
    return None
