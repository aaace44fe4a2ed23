"""The values the tools' options accept, importable without torch, so that each tool's --help is instant.

detector.kernels and detector.precision act on them (tests/test_help.py checks that they agree).
"""

KERNELS = ("auto", "flash", "cudnn", "efficient", "math", "matmul")  # --attn, $DETECTOR_ATTN (detector.kernels)
KERNEL_ENV = "DETECTOR_ATTN"
PRECISIONS = {"fp16": True, "bf16": "bf16", "fp32": False}  # --precision -> Ultralytics' `amp` (detector.precision)
# The largest training imgsz: 16x the pixels of the default 640. A batch of 16 is 3.2 GB of float32 input alone (and
# mosaic builds canvases twice as wide); images larger than this are better tiled.
MAX_IMGSZ = 4096
