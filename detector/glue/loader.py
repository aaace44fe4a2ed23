"""predict.py's image and video loader: Ultralytics' `LoadImagesAndVideos`, with images read by our checked reader.

Ultralytics' loader reads every image itself (and stops at the first one that fails to decode) and has no hook for
the reading. `Loader` subclasses it and takes over `__next__` for images only, on the loader's own fields (`files`,
`video_flag`, `count`, `nf`, `mode`), one image or frame per batch; videos still go through Ultralytics' code.
`check_contract()` checks those fields are still what `LoadImagesAndVideos.__next__` reads. Ultralytics' loader also
takes any path with a `*` in it for a glob pattern: `Loader` hands it such paths escaped, so a file is that file
whatever its name.

`PIL_OPEN` is PIL's own Image.open. Ultralytics replaces Image.open with one that, for any file PIL cannot identify,
tries to install pi-heif (offline: two warnings, then ImportError); a text file named .jpg must simply be "not an
image". It keeps the original as `ultralytics.utils.patches._image_open`.
"""

from __future__ import annotations

import glob
from pathlib import Path

import ultralytics
from PIL import Image
from ultralytics.data.loaders import LoadImagesAndVideos, SourceTypes
from ultralytics.utils import patches

from ..utils import first_line

PIL_OPEN = getattr(patches, "_image_open", Image.open)
LOADER_FIELDS = {"files", "video_flag", "count", "nf", "mode"}


def check_contract() -> None:
    """Raise RuntimeError if LoadImagesAndVideos no longer works the way `Loader` assumes."""
    names = set(LoadImagesAndVideos.__next__.__code__.co_names)
    if not LOADER_FIELDS <= names:
        raise RuntimeError(f"ultralytics {ultralytics.__version__}: LoadImagesAndVideos.__next__ no longer reads "
                           f"{', '.join(sorted(LOADER_FIELDS - names))}; detector.glue.loader must be updated")


class Loader(LoadImagesAndVideos):
    """Ultralytics' image and video loader over checked files, one image or frame per batch, with images read by
    `read_image(path) -> (image, original_size or None)`, which raises `bad_input` with a one-line reason for a file
    it cannot use. A file that fails (so, or in a way the reader did not foresee) is handed to on_error(path, reason)
    and skipped; `original_size` holds the full (width, height) of images
    decoded reduced."""

    def __init__(self, files: list[str], read_image, bad_input: type[Exception], on_error):
        # Ultralytics globs any path with a `*` in it: escaped, the pattern matches that one file (absolute paths,
        # images first, each group sorted)
        super().__init__([glob.escape(a) if "*" in (a := str(Path(f).absolute())) else a for f in files])
        self.source_type = SourceTypes()  # the predictor takes a ready loader only with its source type
        self.read_image, self.bad_input, self.on_error = read_image, bad_input, on_error
        self.original_size = {}

    def __next__(self):
        while self.count < self.nf:
            path = self.files[self.count]
            if self.video_flag[self.count]:
                try:
                    return super().__next__()
                except StopIteration:
                    raise
                except Exception as e:  # a video that no longer opens since it was checked
                    self.on_error(self.files[self.count], f"cannot read it ({first_line(e)})")
                    self.count += 1
                    continue
            self.count += 1
            self.mode = "image"
            try:
                im, size = self.read_image(path)
            except self.bad_input as e:
                self.on_error(path, str(e))
                continue
            except Exception as e:  # a decoder failing in a way the reader does not foresee: still this file's fault
                self.on_error(path, f"cannot decode it ({first_line(e, with_type=True)})")
                continue
            if size:
                self.original_size[path] = size
            return [path], [im], [f"image {self.count}/{self.nf} {path}: "]
        raise StopIteration
