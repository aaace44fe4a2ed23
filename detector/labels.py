"""Checking YOLO detection label files line by line, so that one bad line costs one box, not the whole image.

A label file holds one object per line, `class x_center y_center width height` normalised to [0, 1], or a polygon
`class x1 y1 x2 y2 x3 y3 ...` (three or more points; Ultralytics trains on its bounding box). Ultralytics checks a
file as a whole and, when any line is bad, drops the file's image with a warning that names the file but not the
line. Here every line is judged on its own: `check_label_file` says which lines are good and what is wrong with the
others (`detector.glue.trainer.LineFilteredDataset` then has Ultralytics train on the good lines only), and
`scan_split` sums a split up for train.py's pre-flight messages.

The rules are Ultralytics' own (its `verify_image_label`), applied to each line instead of to the whole file, so a
file cleaned of its bad lines always passes Ultralytics' check. Empty label files and images without one are background
images, as in Ultralytics: counted, not errors. A label file named with other letter case than Ultralytics looks for
(`x.TXT` for `x.txt`, on a case-sensitive file system) is not read, and its image trains as a background without a
word: `other_case` finds them, for one warning line (`case_warning`). This module reads files only; it knows nothing
of Ultralytics' code.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

# Ultralytics accepts coordinates up to 1% outside [0, 1] (rounding in exported labels) and clips them; so do we.
TOLERANCE = 0.01
MAX_WARNINGS = 20  # per split: a dataset with every line wrong (class ids off by one, say) should not flood the log


@dataclass
class LabelFile:
    """One label file, judged line by line."""

    path: str
    kept: list[str] = field(default_factory=list)  # the good lines, stripped, in file order
    problems: list[tuple[int, str]] = field(default_factory=list)  # (1-based line number, what is wrong)
    unreadable: str | None = None  # why the file as a whole cannot be read, if so

    @property
    def usable(self) -> bool:
        """False when the file had lines but none are good: the image is skipped (training on it as a background
        would teach the model that the objects it shows are not there)."""
        return self.unreadable is None and (bool(self.kept) or not self.problems)


def _number(token: str) -> float:
    value = float(token)  # ValueError for non-numbers
    if not math.isfinite(value):
        raise ValueError
    return value


def _check_line(tokens: list[str], nc: int | None) -> tuple[str | None, str | None]:
    """(kind, problem) for one split line: kind is 'box' or 'polygon'; problem is None for a good line.
    nc is the number of classes (None: any non-negative class id, as with single_cls)."""
    n = len(tokens)
    if n == 5:
        kind = "box"
    elif n >= 7 and n % 2 == 1:
        kind = "polygon"
    else:
        return None, f"{n} values, expected 5 (class x y w h) or a polygon (class x1 y1 x2 y2 x3 y3 ...)"
    values = []
    for token in tokens:
        try:
            values.append(_number(token))
        except ValueError:
            return kind, f"'{token}' is not a finite number"
    cls, coords = values[0], values[1:]
    if cls % 1 or cls < 0:
        return kind, f"class id '{tokens[0]}' is not a non-negative integer"
    if nc is not None and cls >= nc:
        return kind, f"class id {int(cls)} outside names (0-{nc - 1})"
    for token, v in zip(tokens[1:], coords):
        if not -TOLERANCE <= v <= 1 + TOLERANCE:
            return kind, f"coordinate {token} outside [0, 1]"
    if kind == "box" and min(coords[2:]) < 0:
        return kind, "negative width or height"
    if kind == "polygon":
        xs, ys = coords[0::2], coords[1::2]
        if max(max(xs) - min(xs), max(ys) - min(ys)) > 1 + TOLERANCE:
            return kind, "polygon wider or taller than the image"
    return kind, None


def check_label_text(text: str, nc: int | None) -> tuple[list[str], list[tuple[int, str]]]:
    """(good lines, [(line number, problem)]) for the contents of one label file. Lines are split the way
    Ultralytics splits them (str.splitlines); blank lines are ignored, as there."""
    kept, problems, first_kind = [], [], None
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        kind, problem = _check_line(tokens, nc)
        if problem is None and first_kind not in (None, kind):
            # Ultralytics rejects a file that mixes box and polygon rows; the first good line sets the file's kind.
            problem = f"a {kind} in a file of {'boxes' if first_kind == 'box' else 'polygons'}"
        if problem:
            problems.append((number, problem))
        else:
            first_kind = first_kind or kind
            kept.append(" ".join(tokens))
    return kept, problems


def check_label_file(path: str | Path, nc: int | None) -> LabelFile:
    """Judge every line of one label file (UTF-8, with or without a byte-order mark, as Ultralytics reads it).

    Remembered per process for an unchanged file (same size and modification time): train.py's pre-flight and the
    training dataset's scan ask about the same files, and each is read and judged once."""
    try:
        st = os.stat(path)
    except OSError as e:
        return LabelFile(str(path), unreadable=e.strerror or type(e).__name__)
    return _check_label_file(str(path), nc, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=1 << 16)
def _check_label_file(path: str, nc: int | None, _mtime_ns: int, _size: int) -> LabelFile:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        return LabelFile(str(path), unreadable="not UTF-8 text")
    except OSError as e:
        return LabelFile(str(path), unreadable=e.strerror or type(e).__name__)
    kept, problems = check_label_text(text, nc)
    return LabelFile(str(path), kept, problems)


@dataclass
class SplitReport:
    """What the pre-flight found in one split (train or val)."""

    split: str
    images: int = 0
    no_label_file: int = 0  # background images: no label file at all
    empty: int = 0  # background images: an empty label file
    skipped_images: list[tuple[str, str]] = field(default_factory=list)  # (label file, why)
    bad_lines: list[tuple[str, int, str]] = field(default_factory=list)  # (label file, line number, problem)
    other_case: list[tuple[str, str]] = field(default_factory=list)  # (label file found, the name looked for)

    def info(self) -> str:
        """One line: how many images, how many of them backgrounds, what was skipped."""
        text = f"{self.split}: {_count(self.images, 'image')}, {_count(self.no_label_file + self.empty, 'background')}"
        if self.no_label_file or self.empty:
            text += f" ({self.no_label_file} without a label file, {self.empty} with an empty one)"
        if self.bad_lines:
            files = len({f for f, _, _ in self.bad_lines})
            text += f", {_count(len(self.bad_lines), 'bad label line')} skipped in {_count(files, 'file')}"
        if self.skipped_images:
            text += f", {_count(len(self.skipped_images), 'image')} skipped"
        return text

    def warnings(self, limit: int = MAX_WARNINGS) -> list[str]:
        """`<file>:<line>: <problem>, line skipped` for each bad line (the first `limit`), then the skipped images."""
        lines = [f"{f}:{n}: {problem}, line skipped" for f, n, problem in self.bad_lines[:limit]]
        if len(self.bad_lines) > limit:
            lines.append(f"{self.split}: {len(self.bad_lines) - limit} more bad label lines not listed (all skipped)")
        lines += [f"{f}: {why}, image skipped" for f, why in self.skipped_images[:limit]]
        if len(self.skipped_images) > limit:
            lines.append(f"{self.split}: {len(self.skipped_images) - limit} more images skipped")
        if warning := case_warning(self.split, self.other_case):
            lines.append(warning)
        return lines


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def other_case(label_files: list[str]) -> list[tuple[str, str]]:
    """(file, name looked for) for each label file that does not exist as named but does with other letter case
    (`labels/x.TXT` where `labels/x.txt` is looked for). Lists each folder once."""
    listings: dict[str, dict[str, str]] = {}
    found = []
    for label_file in label_files:
        if os.path.exists(label_file):
            continue
        folder, name = os.path.split(label_file)
        if folder not in listings:
            try:
                listings[folder] = {entry.lower(): entry for entry in os.listdir(folder or ".")}
            except OSError:
                listings[folder] = {}
        if (entry := listings[folder].get(name.lower())) and entry != name:
            found.append((os.path.join(folder, entry), label_file))
    return found


_said: set[str] = set()  # label files case_warning named already in this process


def case_warning(split: str, found: list[tuple[str, str]]) -> str | None:
    """One line for the label files `other_case` found in a split, naming the first: their images train as
    backgrounds. Said once per process (train.py's pre-flight and DetectorTrainer's dataset both ask)."""
    if not found or found[0][0] in _said:
        return None
    _said.add(found[0][0])
    (first, expected), n = found[0], len(found)
    images = "its image trains as a background" if n == 1 else "their images train as backgrounds"
    return (f"{split}: {_count(n, 'label file')} not read: named with other letter case than Ultralytics looks for, "
            f"e.g. {first} (it looks for {Path(expected).name}); {images}: rename {'it' if n == 1 else 'them'}")


def scan_split(split: str, image_files: list[str], label_files: list[str], nc: int | None) -> SplitReport:
    """Check the label file of every image of a split. `label_files[i]` is where image i's labels would be."""
    report = SplitReport(split, images=len(image_files))
    report.other_case = other_case(label_files)
    for label_file in label_files:
        if not Path(label_file).is_file():
            report.no_label_file += 1
            continue
        checked = check_label_file(label_file, nc)
        report.bad_lines += [(label_file, n, problem) for n, problem in checked.problems]
        if checked.unreadable:
            report.skipped_images.append((label_file, checked.unreadable))
        elif not checked.usable:
            report.skipped_images.append((label_file, "no good label line left"))
        elif not checked.kept:
            report.empty += 1
    return report
