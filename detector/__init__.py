"""detector: YOLO detectors whose area attention runs on fused SDPA kernels, trained with Ultralytics.

Importing this package registers our layers with Ultralytics (see `detector.ultralytics_glue`), so that YAMLs
naming `A2C2f` build the SDPA version, and checkpoints that pickle our classes load.
"""

import os

# This project never downloads at run time (air-gapped users): tell Ultralytics it is offline before it is imported,
# so it skips its connectivity probes. Set YOLO_OFFLINE=0 to let Ultralytics go online anyway.
os.environ.setdefault("YOLO_OFFLINE", "1")

from .attention import A2C2f, AreaAttention, use_sdpa  # noqa: E402
from .kernels import KERNELS, KernelUnavailable, describe, set_kernel  # noqa: E402
from .ultralytics_glue import register  # noqa: E402

register()

__all__ = ["A2C2f", "AreaAttention", "KERNELS", "KernelUnavailable", "describe", "set_kernel", "use_sdpa"]
__version__ = "0.1.0"
