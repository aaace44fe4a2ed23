"""Is a weights file whole? Checks that read the file and run nothing, before any loader sees it."""

from __future__ import annotations

import zipfile
from pathlib import Path


def problem(path: str | Path, suffixes: tuple[str, ...] = (".pt", ".onnx")) -> str | None:
    """Why `path` cannot be loaded as weights, from checks that run nothing (None: load it). A .pt is a zip archive
    (PyTorch's format since 1.6) and every member must match its CRC: PyTorch does not check them itself, so flipped
    bytes would load and silently give other detections (detector.glue.checkpoints runs this on every .pt it loads)."""
    path = Path(path)
    if not path.is_file() or path.suffix not in suffixes:
        return f"expected an existing {' or '.join(suffixes)} file"
    try:
        with open(path, "rb") as f:
            if not f.read(1):
                return "empty file (0 bytes)"
    except OSError as e:
        return f"cannot read it ({e.strerror})"
    if path.suffix != ".pt":
        return None
    if not zipfile.is_zipfile(path):
        return "not a PyTorch checkpoint, or truncated (no zip archive ends this file)"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()  # reads every member and checks its CRC
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        return f"corrupt zip archive ({type(e).__name__}: {e})"
    return f"corrupt: '{bad}' in it does not match its checksum (CRC); refusing to load it" if bad else None
