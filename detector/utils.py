"""Small helpers every tool shares: one-line error text, atomic file writes, dtype names."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

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


def dtype_name(dtype: torch.dtype) -> str:
    """torch.float16 -> 'float16'."""
    return str(dtype).removeprefix("torch.")


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


@contextmanager
def atomic_path(dst: str | Path):
    """Yield a temporary path next to `dst`; when the block ends without error, the file written there is flushed
    to disk and renamed to `dst` in one step. On error the temporary file is removed and `dst` is untouched, so a
    reader (or a crash) never sees a half-written file under the real name."""
    dst = Path(dst)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        fsync(tmp)
        os.replace(tmp, dst)  # atomic on POSIX and Windows within one file system
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync(dst.parent)  # the rename itself


def atomic_write(dst: str | Path, data: str | bytes) -> Path:
    """Write `data` (text as UTF-8) to `dst` atomically (see atomic_path)."""
    with atomic_path(dst) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(dst)
