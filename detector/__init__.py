"""detector: YOLO detectors whose area attention runs on fused SDPA kernels, trained with Ultralytics.

Importing this package hooks our layers into Ultralytics (`detector.glue.install`): YAMLs naming `A2C2f` build the
SDPA version; every .pt loads through Ultralytics' restricted loader (weights only, an allow-list of model classes)
onto our SDPA layers; our model YAMLs and bundled datasets are found by bare name from any folder; every trainer
computes the detection loss without its dense per-anchor tensors (detector.glue.loss). It changes no
environment variable: the entry points (train.py, predict.py, the `detector` command, `python -m detector.*`) set
what they need.

The hooks go in when Ultralytics is imported (at once if it already is), and before any module of ours that needs
torch or Ultralytics runs: `import detector` alone imports neither, so `--help` of every tool is instant
(`_InstallWithUltralytics`). No string from a YAML or a checkpoint is evaluated and no dataset download script runs
unless the user opts in (detector.trust).

Where things are: attention.py (the layer), kernels.py (which SDPA kernel runs), glue/ (everything that touches
Ultralytics internals), assets.py and datasets.py (names -> files), labels.py (label-line rules), precision.py,
allocator.py (CPU prediction's malloc thresholds), weights.py (checkpoints), trust.py (the one opt-in for files that run code), training.py and predicting.py (what train.py and predict.py do; predict_args.py,
predict_outputs.py and predict_report.py its arguments, result files and per-input lines), sources.py (predict.py's
inputs), export.py, bench.py, check.py (command-line tools), utils.py (atomic writes, error lines).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

from .glue import install

# Our modules that import no Ultralytics when imported (tests/test_help.py checks each): the tools' argument parsers
# live in them, so --help loads neither torch nor Ultralytics. Any other is imported after Ultralytics and our hooks.
WITHOUT_ULTRALYTICS = {"__main__", "assets", "check", "choices", "cli", "datasets", "export", "glue", "integrity",
                       "kernels", "labels", "precision", "predict_args", "reach", "training", "trust", "utils"}
_ATTRIBUTES = {"A2C2f": "attention", "AreaAttention": "attention", "use_sdpa": "attention", "KERNELS": "kernels",
               "KernelUnavailable": "kernels", "describe": "kernels", "set_kernel": "kernels",
               "DetectorTrainer": "glue.trainer"}


class _InstallWithUltralytics(importlib.abc.MetaPathFinder):
    """An import hook that runs `install()` right after Ultralytics is imported, and imports Ultralytics (so
    installs) before any other module of ours starts: that module then finds our layers registered, and
    install() never meets a module of ours half imported. It leaves sys.meta_path once Ultralytics is in."""

    def find_spec(self, name, path=None, target=None):
        ours = name.startswith("detector.") and name.removeprefix("detector.") not in WITHOUT_ULTRALYTICS
        if ours and "ultralytics" not in sys.modules:
            importlib.import_module("ultralytics")  # installs (below), which may import `name` itself:
            if module := sys.modules.get(name):  # then that module is the one, not a second copy
                module.__spec__ = importlib.util.spec_from_loader(name, _Imported(module))  # what import reads
                return module.__spec__
        if name != "ultralytics":
            return None
        sys.meta_path.remove(self)
        spec = next(filter(None, (f.find_spec(name, path, target) for f in sys.meta_path
                                  if hasattr(f, "find_spec"))), None)
        if spec is not None and spec.loader is not None:
            execute = spec.loader.exec_module

            def execute_then_install(module):
                execute(module)
                install()

            spec.loader.exec_module = execute_then_install  # this spec's own loader object: nothing else sees it
        return spec


class _Imported(importlib.abc.Loader):
    """The loader of a module imported while the import system was looking for it: hands it that module."""

    def __init__(self, module):
        self.module, self.spec = module, module.__spec__

    def create_module(self, spec):
        return self.module

    def exec_module(self, module):
        module.__spec__ = self.spec  # the one it was imported with (reload, importlib.resources)


if "ultralytics" in sys.modules:
    install()
elif not any(isinstance(f, _InstallWithUltralytics) for f in sys.meta_path):
    sys.meta_path.insert(0, _InstallWithUltralytics())


def __getattr__(name: str):
    """detector.A2C2f, detector.set_kernel, ...: imported when first asked for (PEP 562)."""
    if name in _ATTRIBUTES:
        return getattr(importlib.import_module(f".{_ATTRIBUTES[name]}", __name__), name)
    raise AttributeError(f"module 'detector' has no attribute '{name}'")


__all__ = ["A2C2f", "AreaAttention", "DetectorTrainer", "KERNELS", "KernelUnavailable", "describe", "set_kernel",
           "use_sdpa"]
__version__ = "0.1.0"
