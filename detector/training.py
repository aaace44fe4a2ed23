"""What train.py does: its arguments, the pre-flight checks, a fresh or resumed run, then Ultralytics' trainer.

Everything that can be wrong with a request (each argument and key=value setting, model, dataset, kernel, precision,
device, a checkpoint to resume and its run folder, a --project that is not writable) is found before the run folder is
made, and reported as one line `train.py: error: ...` with exit status 2. The run folder is claimed atomically (a run
started at the same moment with the same --name gets the next number); a resumed run writes into the folder its
checkpoint is in. A write that fails during training (a full disk) stops it with one line and exit status 1; last.pt
is then the last checkpoint that was written whole. torch and Ultralytics are imported after the arguments are
parsed: --help is instant.
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import assets, choices, datasets, labels, reach
from .choices import MAX_IMGSZ
from .utils import (ArgumentParser, HelpFormatter, first_line, folder_name, number, round_up_to_stride,
                    writable_problem)

# Settings with their own option: as key=value they would clash with it (and --precision is Ultralytics' `amp`).
DEFAULT_BATCH = 16  # also what Ultralytics' AutoBatch falls back to without a GPU
# train.py's options as Ultralytics settings (dest -> key), for --resume's rule (--precision: its `amp`, see below)
RESUME_OPTIONS = {"data": "data", "epochs": "epochs", "imgsz": "imgsz", "batch": "batch", "device": "device",
                  "workers": "workers", "project": "project", "name": "name", "seed": "seed"}
OWN_OPTIONS = {"model": "--model", "data": "--data", "epochs": "--epochs", "imgsz": "--imgsz", "batch": "--batch",
               "device": "--device", "workers": "--workers", "amp": "--precision", "resume": "--resume",
               "project": "--project", "name": "--name", "seed": "--seed"}


def batch_size(text: str) -> float:
    """An argparse type for --batch: an integer >= 1, -1 (AutoBatch) or a fraction in (0, 1) (AutoBatch's share of
    GPU memory)."""
    try:
        value = float(text)
    except ValueError:
        value = 0
    if not (value == -1 or 0 < value < 1 or (value >= 1 and value.is_integer())):
        raise argparse.ArgumentTypeError(f"{text}: expected an integer >= 1, -1 (AutoBatch) or a fraction in (0, 1) "
                                         "(AutoBatch's share of GPU memory)")
    return int(value) if value >= 1 or value == -1 else value


def parser(description: str | None = None) -> argparse.ArgumentParser:
    p = ArgumentParser(prog="train.py", description=description, formatter_class=HelpFormatter)
    p.add_argument("--model", default=assets.DEFAULT_MODEL,
                   help="a .pt to fine-tune (the default: the shipped coco128 weights), or a model YAML to train from "
                        "scratch (models/ or Ultralytics', e.g. yolo11n-an.yaml)")
    p.add_argument("--data", default=assets.DEFAULT_DATA, help="dataset YAML (data/ or a path)")
    p.add_argument("--epochs", type=number(int, 1), default=10, help="epochs, >= 1")
    p.add_argument("--imgsz", type=number(int, 32, MAX_IMGSZ), default=640,
                   help=f"training size, 32 to {MAX_IMGSZ}, rounded up to the model's stride")
    p.add_argument("--batch", type=batch_size, default=DEFAULT_BATCH,
                   help="batch size >= 1; -1 or a fraction in (0, 1) for Ultralytics AutoBatch (CUDA only)")
    p.add_argument("--device", default=None,
                   help="'' or omitted for GPU if present, 'cpu', '0', or '0,1' for DDP (on --resume: the run's)")
    p.add_argument("--workers", type=number(int, 0), default=8, help="dataloader workers per process, >= 0")
    p.add_argument("--precision", choices=tuple(choices.PRECISIONS), default="fp16",
                   help="GPU training precision: fp16 = Ultralytics AMP (float16 autocast with a GradScaler), bf16 = "
                        "bfloat16 autocast without one (sm80+ GPUs), fp32 = no autocast. CPU training is float32 "
                        "(bf16 is refused there)")
    p.add_argument("--no-amp", dest="precision", action="store_const", const="fp32", help="same as --precision fp32")
    p.add_argument("--amp", dest="precision", action="store_const", const="fp16", help=argparse.SUPPRESS)
    p.add_argument("--resume", nargs="?", const=True, default=False,
                   help="resume an interrupted run: give its last.pt (or nothing, with --model last.pt); it keeps "
                        "the run's settings, except --data, --imgsz, --batch, --device, --workers and the key=value "
                        "settings Ultralytics lets a resume change (others are refused)")
    p.add_argument("--project", default=None,
                   help="parent folder of run folders (default runs/detect: Ultralytics' runs_dir setting, ./runs "
                        "unless `yolo settings` changed it, and the task); a relative path goes under runs_dir/detect, "
                        "as Ultralytics' project= does")
    p.add_argument("--name", type=folder_name, default="train", help="run folder name (numbered -2, -3 if taken)")
    p.add_argument("--seed", type=number(int, 0, 2**32 - 1), default=0, help="random seed")
    p.add_argument("--attn", default=None, choices=choices.KERNELS,
                   help=f"attention kernel (default: ${choices.KERNEL_ENV} or auto)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="any other Ultralytics training setting")
    return p


def parse_args(argv: list[str] | None = None, description: str | None = None) -> tuple[argparse.Namespace, dict]:
    """train.py's options, and the key=value Ultralytics settings as a dict (values read as the `yolo` CLI reads them),
    each checked by Ultralytics' own rules (types, ranges) now rather than after the run folder exists."""
    p = parser(description)
    args = p.parse_args(argv)  # --help ends here, before torch and Ultralytics are imported
    args.given = given_options(p, argv)
    from ultralytics.cfg import DEFAULT_CFG_DICT, check_cfg, smart_value

    from .glue.trainer import optimizer_names

    extra = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            p.error(f"argument '{item}': expected key=value")
        extra[key] = smart_value(value)  # 'true', '0.5', '[1, 2]' -> True, 0.5, [1, 2]; else the string
    clashing = sorted(set(extra) & set(OWN_OPTIONS))
    if clashing:
        p.error(", ".join(f"'{k}=...': use {OWN_OPTIONS[k]}" for k in clashing))
    unknown = sorted(set(extra) - set(DEFAULT_CFG_DICT))
    if unknown:
        p.error(f"unknown Ultralytics setting(s): {', '.join(unknown)} (see 'yolo cfg' for the valid keys)")
    try:
        check_cfg(dict(extra), hard=True)
    except (TypeError, ValueError) as e:
        p.error(f"argument {first_line(e)}")
    optimizers = optimizer_names()
    if "optimizer" in extra and str(extra["optimizer"]).lower() not in {o.lower() for o in optimizers}:
        p.error(f"argument 'optimizer={extra['optimizer']}': expected one of {', '.join(sorted(optimizers))}")
    return args, extra


def given_options(p: argparse.ArgumentParser, argv: list[str] | None) -> set[str]:
    """The destinations of the options the command line sets (given, even if to their default value)."""
    saved = [(action, action.default) for action in p._actions]
    for action, _ in saved:
        action.default = argparse.SUPPRESS
    try:
        return set(vars(p.parse_args(argv)))
    finally:
        for action, default in saved:
            action.default = default


def load_model(path: str):
    """ultralytics.YOLO for a YAML or a .pt, its failures as one-line ValueErrors (Ultralytics raises TypeError,
    KeyError, ...). A .pt's architecture is also built from the YAML it carries, as the trainer will rebuild it."""
    from ultralytics import YOLO

    from . import weights as weights_io
    from .glue.registry import UnsafeModelYAML

    if path.endswith(".pt") and (problem := weights_io.problem(path, (".pt",))):
        raise ValueError(f"model '{path}': {problem}")
    try:
        model = weights_io.load(path) if path.endswith(".pt") else YOLO(path)
    except weights_io.UnsafeCheckpoint:
        raise  # its own line says why and how to opt in
    except Exception as e:
        if path.endswith(".pt"):
            raise ValueError(f"model '{path}': cannot load it: empty, truncated or not a checkpoint "
                             f"({type(e).__name__})") from None
        said = isinstance(e, UnsafeModelYAML)  # its own line says why and how to opt in
        raise ValueError(f"model '{path}': cannot build it: {first_line(e, with_type=not said)}") from None
    if path.endswith(".pt"):
        rebuild(model, path)
    return model


def rebuild(model, path: str) -> None:
    """Build the architecture of the checkpoint `model` (a YOLO) from the YAML it carries, as the trainer does for a
    fine-tune or a resume (restricted: nothing in it is evaluated); raise a one-line ValueError if that fails."""
    from ultralytics.nn.tasks import DetectionModel

    try:
        DetectionModel(copy.deepcopy(model.model.yaml), nc=len(model.names), verbose=False)
    except Exception as e:
        raise ValueError(f"model '{path}': the architecture it records (its 'yaml') does not build: "
                         f"{first_line(e, with_type=not isinstance(e, TypeError))}") from None


@dataclass
class Plan:
    """A checked training request: the model, Ultralytics' train() arguments, and what to report first."""

    model: object  # ultralytics.YOLO
    train_args: dict
    kernel_line: str
    reports: list[labels.SplitReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # more train.py warning lines (detector.reach)


def resume_plan(args: argparse.Namespace, extra: dict) -> tuple[object, dict, str | None, str, int, list]:
    """--resume: the checkpoint's model and the settings saved in it. The options and key=value settings given that
    Ultralytics' resume takes (--data, --imgsz, --batch, --device, --workers, ...) change them; any other is refused
    (one line naming it), never dropped. Returns (model, train_args, device, precision, imgsz, reports)."""
    from . import precision
    from .glue import checkpoints, trainer

    weights = assets.resolve_model(args.model if args.resume is True else args.resume)
    model = load_model(weights)
    problem = trainer.resume_problem(model.ckpt, weights)
    if problem:
        raise ValueError(problem)
    saved = trainer.checkpoint_train_args(model.ckpt)
    given = {key: getattr(args, dest) for dest, key in RESUME_OPTIONS.items() if dest in args.given}
    if "precision" in args.given:
        given["amp"] = choices.PRECISIONS[args.precision]
    refused = [f"{OWN_OPTIONS.get(k, k + '=')}" for k in {**given, **extra} if k not in trainer.resume_allowed()]
    if args.resume is not True and "model" in args.given:  # the model is the checkpoint's
        refused.append("--model")
    if refused:
        raise ValueError(f"--resume: {', '.join(sorted(refused))}: a resumed run keeps the settings its checkpoint "
                         f"holds (epochs {saved.get('epochs')}, ...); to change them, start a new run with --model "
                         f"{weights}")
    if "data" in given:
        given["data"] = datasets.resolve(given["data"])
    data = given.get("data") or saved.get("data")
    reports = datasets.preflight(datasets.resolve(str(data)), bool(saved.get("single_cls"))) if data else []
    # Ultralytics resumes into the save_dir recorded in the checkpoint: the run the checkpoint is in (a copy of a run
    # folder resumes in the copy) is where it must write, and not through a symbolic link planted there.
    run = trainer.run_folder(weights)
    if problem := writable_problem(run) or trainer.link_problem(run):
        raise ValueError(f"--resume '{weights}': {problem}")
    best = run / "weights" / "best.pt"
    if best.is_file() and best != Path(weights).absolute():  # the final validation loads it: refuse it now, if so
        checkpoints.restricted_load(str(best))
    imgsz = given.get("imgsz") or saved.get("imgsz") or args.imgsz
    imgsz = int(max(imgsz) if isinstance(imgsz, (list, tuple)) else imgsz)
    if "imgsz" in given:
        given["imgsz"] = imgsz = round_up_to_stride("train.py", imgsz, int(max(model.model.stride)))
    train_args = {"resume": True, **extra, **given, "save_dir": str(run)}
    return (model, train_args, train_args.get("device", saved.get("device")),
            precision.precision_of(saved.get("amp", True)), imgsz, reports)


def plan(args: argparse.Namespace, extra: dict) -> Plan:
    """Check everything about the request and build the model; raises one-line errors (see main)."""
    from . import kernels, precision

    if args.attn:
        kernels.set_kernel(args.attn)
    warnings = []
    if args.resume:
        model, train_args, device, prec, imgsz, reports = resume_plan(args, extra)
    else:
        from .glue import rundirs

        if problem := writable_problem(rundirs.planned(args.project, args.name, mode="train").parent):
            raise ValueError(f"--project '{args.project or rundirs.planned(None, '').parent}': {problem}")
        data = datasets.resolve(args.data)
        reports = datasets.preflight(data, single_cls=bool(extra.get("single_cls")))
        model = load_model(assets.resolve_model(args.model))
        imgsz = round_up_to_stride("train.py", args.imgsz, int(max(model.model.stride)))
        train_args = dict(data=data, epochs=args.epochs, imgsz=imgsz, batch=args.batch, device=args.device,
                          workers=args.workers, amp=choices.PRECISIONS[args.precision], seed=args.seed, **extra)
        device, prec = args.device, args.precision
        if warning := reach.check(model, args.model, data, imgsz, bool(extra.get("single_cls"))):
            warnings.append(warning)
    torch_device, dtype = precision.training_device(device, prec)
    precision.check_precision(prec, torch_device)
    batch = train_args.get("batch", DEFAULT_BATCH)
    if batch < 1 and torch_device.type != "cuda":
        train_args["batch"] = DEFAULT_BATCH
        print(f"train.py: warning: --batch {batch}: AutoBatch needs a CUDA GPU; training with batch "
              f"{DEFAULT_BATCH} on {torch_device.type}", file=sys.stderr)
    return Plan(model, train_args, kernel_line(torch_device, dtype, imgsz), reports, warnings)


def kernel_line(device, dtype, imgsz: int) -> str:
    """The start-up line saying which attention kernel runs, for images of `imgsz`."""
    # Tokens per area at the typical call sites: YOLO12's P4 with 4 areas, the same count as yolo11-an's P5 with one
    # area ((imgsz / 32)^2).
    from . import kernels

    return kernels.describe(device, dtype, tokens=(imgsz // 16) ** 2 // 4)


def main(argv: list[str] | None = None, description: str | None = None) -> int:
    args, extra = parse_args(argv, description)
    from . import kernels

    try:
        checked = plan(args, extra)
    except (FileNotFoundError, ValueError, TypeError, kernels.KernelUnavailable, RuntimeError) as e:
        print(f"train.py: error: {first_line(e)}", file=sys.stderr)
        return 2
    for report in checked.reports:
        for warning in report.warnings():
            print(f"train.py: warning: {warning}", file=sys.stderr)
        print(f"train.py: {report.info()}", file=sys.stderr)
    for warning in checked.warnings:
        print(f"train.py: warning: {warning}", file=sys.stderr)
    import torch
    from ultralytics.utils import LOGGER

    from .glue import rundirs
    from .glue.trainer import DetectorTrainer

    if not args.resume:
        try:  # ours alone: a run started at the same moment with the same --name gets the next number
            checked.train_args["save_dir"] = str(rundirs.claim(args.project, args.name, mode="train"))
        except OSError as e:
            print(f"train.py: error: --project '{args.project}': cannot create the run folder ({first_line(e)})",
                  file=sys.stderr)
            return 2
    LOGGER.info(checked.kernel_line)
    try:
        checked.model.train(trainer=DetectorTrainer, **checked.train_args)
    except OSError as e:  # a full disk, a folder gone read-only: one line, and where training can go on from
        print(f"train.py: error: {stopped(e, checked.model.trainer)}", file=sys.stderr)
        return 1
    except (MemoryError, torch.OutOfMemoryError) as e:  # host memory, GPU memory
        print(f"train.py: error: out of memory ({first_line(e, with_type=True)[:150]}): lower --batch or --imgsz",
              file=sys.stderr)
        return 1
    return 0


def stopped(error: OSError, trainer) -> str:
    """The one line for a training stopped by a failed write: what failed, and what last.pt holds."""
    what = f"cannot write '{error.filename}': {error.strerror}" if error.filename else first_line(error)
    last = getattr(trainer, "last", None)
    if not (last and Path(last).exists()):
        return f"{what}; training stopped before any checkpoint was saved"
    from .glue.checkpoints import restricted_load

    try:
        epoch = restricted_load(str(last))[0].get("epoch", -1)
    except Exception:
        return f"{what}; training stopped ({last} does not load)"
    if epoch < 0:
        return f"{what}; training had finished: {last} holds the final weights"
    return (f"{what}; training stopped: {last} holds epoch {epoch + 1}; make room and continue with "
            f"python train.py --resume {last}")
