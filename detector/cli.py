"""The `detector` command: Ultralytics' `yolo` command with our layers, our trainer and the attention-kernel line.

    detector predict                                                 # shipped weights on the bundled coco8 images
    detector predict model=runs/detect/train/weights/best.pt source=photos/
    detector train data=coco128.yaml epochs=100 imgsz=640            # fine-tunes the shipped weights
    detector train model=yolo11n-an.yaml data=coco8.yaml epochs=10   # from scratch
    detector val model=runs/detect/train/weights/best.pt data=coco8.yaml
    detector export model=best.pt format=onnx
    detector check                                                   # python -m detector.check
    detector bench small=True                                        # python -m detector.bench --small

train, val, predict, export (and Ultralytics' other modes and commands) take the `yolo` command's key=value
arguments and run Ultralytics' own CLI, after `import detector`: model YAMLs and datasets by bare name from models/
and data/, every .pt through Ultralytics' restricted loader onto our SDPA layers, and train with our trainer
(detector.glue.cli). Defaults are Ultralytics' (`yolo cfg` lists them), except: model= the shipped weights
(weights/yolo11n-an-coco128.pt), predict's source= the bundled coco8 val images, and on a GPU predict and val run
a PyTorch model channels-last (channels_last=True; Ultralytics leaves it NCHW there), and on the CPU they keep
freed memory for the next image (detector.allocator). A checkpoint predicts at the imgsz it was trained at unless
imgsz= is given. Runs go to runs/<task>/<name> (`predict`, then `predict-2`, ...), each folder claimed as it is
chosen, so runs started together never share one. attn=<kernel> picks the attention kernel, as train.py's --attn
does. check and bench run our tools; bench's key=value arguments become its options
(small=True -> --small). Errors are one line, `detector: error: ...`, exit status 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from . import assets, choices

KERNEL_MODES = ("train", "val", "predict", "track")  # the modes that run our attention
SOURCE_MODES = ("predict", "track")
DEFAULT_SOURCE = assets.DATA_DIR / "coco8/images/val"


def options(args: list[str]) -> list[str]:
    """key=value arguments as command-line options: small=True -> --small, iters=20 -> --iters 20."""
    out = []
    for a in args:
        key, sep, value = a.partition("=")
        if not sep or a.startswith("-"):
            out.append(a)
        elif value.lower() == "true":
            out.append(f"--{key}")
        elif value.lower() != "false":
            out += [f"--{key}", value]
    return out


def prepare(args: list[str]) -> tuple[list[str], str | None]:
    """Ultralytics' arguments from ours: attn= taken out (it sets the kernel), model= and predict's source= added if
    missing. Returns them and the kernel line to print (None for modes that do not run attention). Raises ValueError
    for a bad attn=, device= or source=, KernelUnavailable for a kernel that cannot run there."""
    from ultralytics.cfg import MODES

    from . import allocator, kernels, precision, sources

    values = dict(a.split("=", 1) for a in args if "=" in a and not a.startswith("-"))
    mode = next((a for a in args if a in MODES), None)
    if "attn" in values:
        kernels.set_kernel(kernels.validate_kernel(values["attn"], "attn="))
        args = [a for a in args if not a.startswith("attn=")]
    if mode and "model" not in values and assets.DEFAULT_WEIGHTS.is_file():
        args = [*args, f"model={assets.DEFAULT_WEIGHTS}"]
    if mode in SOURCE_MODES and "source" not in values:
        args = [*args, f"source={DEFAULT_SOURCE}"]
    elif mode in SOURCE_MODES and (problem := sources.unreadable_special(values["source"])):
        raise ValueError(problem)  # Ultralytics' loader would read a FIFO or a device forever
    model = values.get("model", "")
    if model.endswith(".pt") and "://" not in model and not os.path.isfile(model):
        raise FileNotFoundError(f"model '{model}': no such file (weights are never downloaded: bring the file)")
    export_format = values.get("format", "").lower()
    if mode == "export" and export_format in ("onnx", "openvino"):
        from .export import missing_message, missing_packages

        int8 = values.get("int8", "False").lower() == "true" or values.get("quantize", "").lower() in ("8", "int8")
        if missing := missing_packages(export_format, int8 and export_format == "openvino"):
            raise ValueError(missing_message(export_format, missing))
    if mode not in KERNEL_MODES:
        return args, None
    from .training import kernel_line

    half = values.get("half", "False").lower() == "true"
    prec = precision.precision_of(values.get("amp", "True")) if mode == "train" else "fp16" if half else "fp32"
    device, dtype = precision.training_device(values.get("device"), prec)
    weights = next((a.split("=", 1)[1] for a in args if a.startswith("model=")), "")
    if (mode != "train" and "channels_last" not in values and precision.predicts_channels_last(device)
            and Path(weights).suffix in (".pt", ".yaml", ".yml")):  # (exported models: their runtime's own format)
        args = [*args, "channels_last=True"]
    if mode != "train" and device.type == "cpu":
        allocator.keep_freed_memory()  # no page faults in every forward pass (detector.allocator)
    imgsz = int(values.get("imgsz", "640").strip("[]()").split(",")[0])
    if mode == "train" and not 32 <= imgsz <= choices.MAX_IMGSZ:
        raise ValueError(f"imgsz={imgsz}: expected an integer from 32 to {choices.MAX_IMGSZ} for training")
    return args, kernel_line(device, dtype, imgsz)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("YOLO_OFFLINE", "1")  # as train.py/predict.py: no connectivity probes when downloading
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("help", "-h", "--help"):
        print(__doc__.strip())  # before torch or Ultralytics is imported: help is instant
        return 0
    if args[0] == "check":
        from . import check

        return check.main()
    if args[0] == "bench":
        from . import bench

        return bench.main(options(args[1:]))
    from ultralytics.utils import LOGGER

    from . import kernels
    from .glue import cli
    from .utils import first_line

    try:
        args, line = prepare(args)
        if line:
            LOGGER.info(line)
        cli.entrypoint(args)
    except KeyboardInterrupt:
        print("detector: interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, TypeError, SyntaxError, ModuleNotFoundError, kernels.KernelUnavailable) as e:
        print(f"detector: error: {first_line(e)}", file=sys.stderr)  # Ultralytics' own checks raise these
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
