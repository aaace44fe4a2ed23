"""Small helpers every tool shares: one-line errors (and one-line argument errors), atomic file writes (and log lines
that name the file, not its temporary name), claiming a run folder, SIGTERM handled like Ctrl-C, dtype names. Imports
no torch (the tools' --help is instant)."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import shutil
import secrets
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # this module is light (argument helpers for --help): no torch import at run time
    import torch


def first_line(error: BaseException, with_type: bool = False) -> str:
    """An exception as one short line for an error message. OSErrors give the OS's own words ("No space left on
    device"); Ultralytics' "ERROR ❌ <what>" loses its prefix; `with_type` puts the exception's type in front of
    other messages (useful where the message alone is cryptic, e.g. a failing decoder)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    line = (str(error).strip().splitlines() or [""])[0]
    if line.startswith("ERROR"):
        return line.removeprefix("ERROR").lstrip(" ❌️")[:300]
    if not line:
        return type(error).__name__
    return f"{type(error).__name__}: {line}"[:300] if with_type else line[:300]


def dtype_name(dtype) -> str:
    """torch.float16 -> 'float16'."""
    return str(dtype).removeprefix("torch.")


# --- Arguments ------------------------------------------------------------------------------------------------------
class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a bad argument reported as the one line `<prog>: error: argument --x: <why>` (argparse's own
    words, which name the argument and what it accepts) and exit status 2: no usage block in front of it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """argparse's help with the description as written and each option's default shown, where it has one (not for
    store flags, nor options whose default is None, False or empty, nor where the help names its default itself:
    their help says what leaving them out means). --x/--no-x switches show theirs."""

    def _get_help_string(self, action):
        flag = action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction)
        if flag or action.default is None or action.default is False or action.default == [] \
                or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def number(kind: type = int, low: float | None = None, high: float | None = None, low_open: bool = False):
    """An argparse `type` parsing an int or a float within [low, high] (`low_open`: (low, high]); the error names the
    argument and the allowed range, e.g. "argument --conf: 1.5: expected a number in [0, 1]"."""
    noun = "an integer" if kind is int else "a number"
    low_, high_ = (f"{v:g}" if isinstance(v, float) else str(v) for v in (low, high))
    if low is not None and high is not None:
        expected = f"{noun} in {'(' if low_open else '['}{low_}, {high_}]"
    else:
        expected = f"{noun} {'>' if low_open else '>='} {low_}" if low is not None else f"{noun} <= {high_}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}': expected {expected}") from None
        too_low = low is not None and (value <= low if low_open else value < low)
        if too_low or (high is not None and value > high) or value != value:  # value != value: NaN
            raise argparse.ArgumentTypeError(f"{text}: expected {expected}")
        return value

    return parse


def folder_name(text: str) -> str:
    """An argparse type for --name: a run folder's name (one path component)."""
    if not text or text in (".", "..") or "/" in text or "\\" in text:
        raise argparse.ArgumentTypeError(f"'{text}': expected a folder name (not empty, no '/', not '.' or '..')")
    return text


def round_up_to_stride(prog: str, imgsz: int, stride: int) -> int:
    """`--imgsz` as the model can take it: a multiple of its largest stride, rounded up as Ultralytics does, with a
    warning line when that changes it."""
    rounded = -(-imgsz // stride) * stride
    if rounded != imgsz:
        print(f"{prog}: warning: --imgsz {imgsz} is not a multiple of the model's stride {stride}: using {rounded}",
              file=sys.stderr)
    return rounded


# --- Files ----------------------------------------------------------------------------------------------------------
def fsync(path: str | Path) -> None:
    """Flush a file, or a folder's entries, to disk (a folder fsync is skipped where the OS does not allow it)."""
    path = Path(path)
    flags = (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicFile:
    """A file written under a temporary name next to `dst` (`tmp`: hidden, with dst's suffix, so writers that pick a
    format by suffix still work) and renamed to `dst` in one step by `commit()`, after it is flushed to disk;
    `discard()` removes it, leaving `dst` untouched. A reader, a crash or a full disk never leaves a half-written
    file under the real name. As a context manager (see atomic_path): commit if the block ends without error."""

    def __init__(self, dst: str | Path):
        self.dst = Path(dst)
        while True:  # mkstemp's exclusive create, with the permissions of a file made by open() (umask), not 0600
            self.tmp = self.dst.with_name(f".{self.dst.stem}.{secrets.token_hex(4)}.tmp{self.dst.suffix}")
            try:
                os.close(os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                break
            except FileExistsError:
                continue

    def commit(self) -> Path:
        try:
            fsync(self.tmp)  # the data is on disk before the name points at it
            os.replace(self.tmp, self.dst)  # atomic on POSIX and Windows within one file system
        except BaseException:
            self.discard()
            raise
        fsync(self.dst.parent)  # the rename itself
        return self.dst

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> Path:
        return self.tmp

    @staticmethod
    def leftovers(folder: str | Path, dst: str | None = None) -> list[Path]:
        """The temporary files AtomicFiles left in `folder` when their process was killed mid-write: only files named
        as __init__ names them (`.{stem}.{8 hex digits}.tmp{suffix}`), and with `dst` (a file name) only that file's.
        Nothing else, so a sweep never deletes a user's hidden file or a staged folder."""
        stem, suffix = (re.escape(Path(dst).stem), re.escape(Path(dst).suffix)) if dst else (".+", r"(\.[^.]+)?")
        name = re.compile(rf"\.{stem}\.[0-9a-f]{{8}}\.tmp{suffix}")
        return sorted(p for p in Path(folder).glob(".*.tmp*") if name.fullmatch(p.name) and p.is_file())

    def __exit__(self, error_type, error, traceback) -> None:
        self.discard() if error_type else self.commit()


class _Renaming(logging.Filter):
    """Rewrites each record's message, replacing every `old` with its `new`."""

    def __init__(self, renames: dict[str, str]):
        super().__init__()
        self.renames = renames

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for old, new in self.renames.items():
            message = message.replace(old, new)
        record.msg, record.args = message, ()
        return True


@contextmanager
def log_renamed(logger: logging.Logger, renames: dict[str, str]):
    """Within this block `logger`'s messages say `new` wherever they would say `old` (for each item of `renames`):
    a writer that logs the temporary name an atomic write gave it then names the file the user will find."""
    renaming = _Renaming(renames)
    logger.addFilter(renaming)
    try:
        yield
    finally:
        logger.removeFilter(renaming)


def atomic_path(dst: str | Path) -> AtomicFile:
    """`with atomic_path(dst) as tmp:` write the file at `tmp`; when the block ends without error it is flushed to disk
    and renamed to `dst` in one step. On error the temporary file is removed and `dst` is untouched."""
    return AtomicFile(dst)


@contextmanager
def staged_folder(dst: str | Path):
    """`with staged_folder(dst) as stage:` build the folder `stage / dst.name` (stage: a hidden temporary folder next
    to `dst`, named like AtomicFile's temporary files); when the block ends without error it is flushed to disk and
    takes `dst`'s place. A folder cannot replace another in one rename: an old `dst` is moved aside first, so for an
    instant there is none, but never a half-written one. On error, or after, the stage is removed."""
    dst = Path(dst)
    stage = dst.with_name(f".{dst.name}.{secrets.token_hex(4)}.tmp")
    stage.mkdir()
    try:
        yield stage
        new, old = stage / dst.name, stage / f"{dst.name}.old"
        for path in (*new.iterdir(), new):
            fsync(path)
        if dst.exists():
            os.replace(dst, old)
        try:
            os.replace(new, dst)
        except BaseException:
            if old.exists():
                os.replace(old, dst)  # the old one back rather than none
            raise
        fsync(dst.parent)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def check_free_space(folder: str | Path, needed: int, what: str | Path) -> None:
    """Raise OSError(ENOSPC), naming `what` and both sizes, if `folder`'s file system has less than `needed` bytes
    free: say so before writing, rather than fail halfway through."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise OSError(errno.ENOSPC, f"No space left on device ({free / 1e6:.1f} MB free, {needed / 1e6:.1f} MB "
                                    "needed)", str(what))


def atomic_write(dst: str | Path, data: str | bytes) -> Path:
    """Write `data` (text as UTF-8) to `dst` atomically (see atomic_path), after checking there is room for it."""
    data = data.encode("utf-8") if isinstance(data, str) else data
    check_free_space(Path(dst).parent, len(data), dst)
    with atomic_path(dst) as tmp:
        tmp.write_bytes(data)
    return Path(dst)


def writable_problem(folder: str | Path) -> str | None:
    """Why files cannot be created in `folder` (made if missing), or None: checked, without writing anything, on the
    nearest part of the path that exists."""
    path = Path(folder).absolute()
    existing = next(p for p in (path, *path.parents) if os.path.exists(p))  # the root always exists
    if not existing.is_dir():
        return f"'{existing}' is a file, not a folder"
    if os.access(existing, os.W_OK | os.X_OK):
        return None
    read_only = hasattr(os, "statvfs") and os.statvfs(existing).f_flag & os.ST_RDONLY
    return f"cannot create files in '{existing}' ({'read-only file system' if read_only else 'permission denied'})"


def claim_folder(parent: str | Path, name: str) -> Path:
    """Create and return a new folder `parent/name`, or `name-2`, `name-3`, ... (Ultralytics' numbering) if that is
    taken. Creating it without exist_ok is the claim: two runs started at the same moment never get the same one."""
    parent = Path(parent).absolute()
    (parent / name).parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 100_000):
        path = parent / (name if n == 1 else f"{name}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "every numbered folder of this name is taken", str(parent / name))


# --- Signals --------------------------------------------------------------------------------------------------------
class Terminated(KeyboardInterrupt):
    """SIGTERM (what a scheduler or `docker stop` sends), raised where the program is, as Ctrl-C raises
    KeyboardInterrupt: the same handlers finish the work in hand."""


@contextmanager
def sigterm_as_interrupt():
    """Within this block (main thread only) SIGTERM raises `Terminated` instead of killing the process at once."""
    def terminated(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted_status(interrupt: KeyboardInterrupt) -> int:
    """The exit status after an interrupt: 128 + the signal, as a shell reports a process that signal killed: 130 for
    Ctrl-C (SIGINT), 143 for SIGTERM. A scheduler reading 143 knows its own stop request ended the run."""
    return 128 + (signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT)
