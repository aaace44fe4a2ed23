"""detector: YOLO detectors whose area attention runs on fused SDPA kernels, trained with Ultralytics.

Importing this package hooks our layers into Ultralytics (`detector.glue.install`): YAMLs naming `A2C2f` build the
SDPA version; every .pt loads through Ultralytics' restricted loader (weights only, an allow-list of model classes)
onto our SDPA layers; our model YAMLs and bundled datasets are found by bare name from any folder. It changes no
environment variable: the entry points (train.py, predict.py, the `detector` command, `python -m detector.*`) set
what they need.

Where things are: attention.py (the layer), kernels.py (which SDPA kernel runs), glue/ (everything that touches
Ultralytics internals), assets.py and datasets.py (names -> files), labels.py (label-line rules), precision.py,
weights.py (checkpoints), training.py and predicting.py (what train.py and predict.py do), sources.py
(predict.py's inputs), export.py, bench.py, check.py (command-line tools), utils.py (atomic writes, error lines).
"""

from .attention import A2C2f, AreaAttention, use_sdpa
from .glue import install
from .kernels import KERNELS, KernelUnavailable, describe, set_kernel

install()

__all__ = ["A2C2f", "AreaAttention", "KERNELS", "KernelUnavailable", "describe", "set_kernel", "use_sdpa"]
__version__ = "0.1.0"
