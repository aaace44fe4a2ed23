"""detector: YOLO detectors whose area attention runs on fused SDPA kernels, trained with Ultralytics.

Importing this package hooks our layers into Ultralytics (`detector.glue.install`): YAMLs naming `A2C2f` build the
SDPA version; every .pt loads through Ultralytics' restricted loader (weights only, an allow-list of model classes)
onto our SDPA layers, and no string from a YAML or a checkpoint is evaluated; our model YAMLs and bundled datasets are
found by bare name from any folder, and no dataset download script runs. It changes no environment variable: the entry
points (train.py, predict.py, the `detector` command, `python -m detector.*`) set what they need.

The import itself loads neither torch nor Ultralytics (so every tool's --help is instant): the hooks go in when
Ultralytics is imported, at once if it already is, else just after `import ultralytics` has run, whoever imports it
(or before one of our modules that needs it is imported). `import detector` then `YOLO("yolo11n-an.yaml")` builds
ours as before. The classes below load on first use.

Where things are: attention.py (the layer), kernels.py (which SDPA kernel runs), glue/ (everything that touches
Ultralytics internals), assets.py and datasets.py (names -> files), labels.py (label-line rules), precision.py,
weights.py (checkpoints), trust.py (the one opt-in for files that run code), training.py and predicting.py (what
train.py and predict.py do), sources.py (predict.py's inputs), export.py, bench.py, check.py (command-line tools),
utils.py (atomic writes, error lines).
"""

import importlib
import importlib.abc
import importlib.util
import sys

# Public names -> the module that defines them, imported on first access (torch comes with them).
_LAZY = {"A2C2f": "attention", "AreaAttention": "attention", "use_sdpa": "attention", "KERNELS": "kernels",
         "KernelUnavailable": "kernels", "describe": "kernels", "set_kernel": "kernels"}

__all__ = ["A2C2f", "AreaAttention", "KERNELS", "KernelUnavailable", "describe", "install", "set_kernel", "use_sdpa"]
__version__ = "0.1.0"


def install() -> None:
    """Hook our layers, checkpoint loading, name lookup and dataset reading into Ultralytics (importing it).
    Idempotent."""
    from .glue import install as install_glue

    install_glue()


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Our modules that do not import Ultralytics when imported (tests/test_help.py checks it): they import without it
# ("glue": the package alone, not its modules).
# Any other (attention.py, head.py, glue's, ...) is imported after Ultralytics and our hooks: installing imports
# several of them, which must not be found half-initialised, in the middle of their own `import ultralytics`.
WITHOUT_ULTRALYTICS = {"assets", "check", "choices", "cli", "datasets", "export", "glue", "integrity", "kernels",
                       "labels", "precision", "reach", "training", "trust", "utils"}


class _InstallWithUltralytics(importlib.abc.MetaPathFinder):
    """A finder that finds nothing itself. Asked for the top-level `ultralytics` package, it finds it through the
    other finders and has its loader run `install()` once the package's own code has run; asked for one of our modules
    outside WITHOUT_ULTRALYTICS, it imports Ultralytics first (so installs). Removed once Ultralytics is imported."""

    def find_spec(self, name, path=None, target=None):
        if name.startswith(f"{__name__}.") and name.removeprefix(f"{__name__}.") not in WITHOUT_ULTRALYTICS:
            import ultralytics  # noqa: F401  comes back here for it, and installs
        if name != "ultralytics":
            return None
        sys.meta_path.remove(self)  # before the lookup below, which must not come back here
        spec = importlib.util.find_spec(name)
        loader = getattr(spec, "loader", None)
        if loader is not None:
            run = loader.exec_module

            def exec_then_install(module):
                del loader.exec_module  # the loader's own method again
                run(module)
                install()

            loader.exec_module = exec_then_install
        return spec


if "ultralytics" in sys.modules:
    install()
elif not any(isinstance(f, _InstallWithUltralytics) for f in sys.meta_path):
    sys.meta_path.insert(0, _InstallWithUltralytics())
