"""The values the tools' options accept, importable without torch, so that each tool's --help is instant.

detector.kernels and detector.precision act on them (tests/test_help.py checks that they agree).
"""

KERNELS = ("auto", "flash", "cudnn", "efficient", "math", "matmul")  # --attn, $DETECTOR_ATTN (detector.kernels)
KERNEL_ENV = "DETECTOR_ATTN"
PRECISIONS = {"fp16": True, "bf16": "bf16", "fp32": False}  # --precision -> Ultralytics' `amp` (detector.precision)
