"""`DetectorTrainer`: Ultralytics' DetectionTrainer with these changes, each explained where it is made.

- label files are checked line by line: a bad line is skipped, not the whole image (`LineFilteredDataset`);
- checkpoints are written atomically, one file at a time, after checking there is room (`CheckpointPath`,
  `strip_atomically`), and record Ultralytics' layer classes (`save_model`); the final strip loads them through the
  restricted loader, as every other load (Ultralytics' strip_optimizer unpickles in full);
- a resumed run writes into the run folder its checkpoint is in, never where the checkpoint says it once was, and
  not into a folder holding symbolic links, which its writes would follow (`check_resume`);
- results.csv gets each row atomically (`save_metrics`), and a resumed run's keeps exactly one row per epoch, and no
  row that is not one (`resume_training`);
- the AMP check runs offline, on the model being trained (`check_amp_offline`);
- the batch's targets are kept on the host for the loss (`keep_host_targets`), so that it never waits for the GPU:
  the loss is Ultralytics' own, computed without its dense per-anchor tensors (detector.glue.loss), as it is under
  every trainer once detector is imported.
Its assumptions about BaseTrainer and YOLODataset are checked by `check_contract()` whenever a trainer is built.
DDP workers re-import the trainer by its module path (this module), which registers our layers in every worker
before it builds the model. `resume_problem` says up front why a checkpoint cannot be resumed; `optimizer_names` is
what Ultralytics accepts as `optimizer=`, for train.py's argument checks.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
import shutil
import tempfile
from pathlib import Path

import torch
from ultralytics.data import build as data_build
from ultralytics.data.dataset import YOLODataset
from ultralytics.engine import trainer as trainer_module
from ultralytics.engine.trainer import BaseTrainer
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils import ASSETS, LOGGER, RANK, WEIGHTS_DIR, torch_utils
from ultralytics.utils.checks import check_amp
from ultralytics.utils.torch_utils import strip_optimizer

from .. import labels, reach
from ..attention import use_stock
from ..utils import AtomicFile, atomic_path, atomic_write, check_free_space, dtype_name, log_renamed
from . import require
from .checkpoints import restricted_load
from .loss import keep_host_targets


# --- Label lines ----------------------------------------------------------------------------------------------
def _verify_keeping_good_lines(verify, args: tuple):
    """Ultralytics' per-image check (`verify_image_label`), run on the label file's good lines only.

    `args` is Ultralytics' tuple (im_file, lb_file, prefix, keypoint, num_cls, nkpt, ndim, single_cls). A file
    with no bad line, or none good, goes to Ultralytics untouched (it drops the latter's image, as train.py's
    pre-flight says). Otherwise Ultralytics checks a temporary copy holding just the good lines: it still reads the
    image, its size and the boxes itself, and the image keeps its good boxes."""
    im_file, label_file, prefix, keypoint, num_cls, _nkpt, _ndim, single_cls = args
    if keypoint or not os.path.isfile(label_file):
        return verify(args)
    checked = labels.check_label_file(label_file, None if single_cls else num_cls)
    if not checked.problems or not checked.usable:
        return verify(args)
    with tempfile.TemporaryDirectory(prefix="detector-labels-") as tmp:
        clean = Path(tmp) / Path(label_file).name
        clean.write_text("\n".join(checked.kept) + "\n", encoding="utf-8")
        result = list(verify((im_file, str(clean), *args[2:])))
    # The last field is Ultralytics' message for this image; it logs (and caches) these for the scan.
    lines = ", ".join(str(n) for n, _ in checked.problems)
    result[-1] = "\n".join(filter(None, [result[-1], f"{prefix}{label_file}: bad label lines {lines} skipped"]))
    return result


class LineFilteredDataset(YOLODataset):
    """Ultralytics' YOLODataset, except that a label file with some bad lines keeps its good ones (Ultralytics drops
    the whole image), and label files named with other letter case than it looks for get a warning. Uses the
    dataset's documented scanning hooks: `verify_args` (the per-image check), `get_cache_hash` (tagged, so a labels
    cache written by stock Ultralytics, without these images, is not reused) and `get_labels`."""

    CACHE_TAG = "+detector.labels/1"

    def get_labels(self) -> list[dict]:
        found = super().get_labels()
        looked_for = self.get_label_files()  # where Ultralytics looked for each image's labels
        if warning := labels.case_warning("train" if self.augment else "val", labels.other_case(looked_for)):
            LOGGER.warning(warning)
        return found

    def verify_args(self) -> tuple:
        verify, iterable = super().verify_args()
        return (lambda args: _verify_keeping_good_lines(verify, args)), iterable

    def get_cache_hash(self) -> str:
        return super().get_cache_hash() + self.CACHE_TAG


@contextlib.contextmanager
def _rebound(module, name: str, value):
    """While open, `module.name` is `value`; restored after. For Ultralytics code that looks a class or function up
    by module-global name and takes no argument for it: rebound for one DetectorTrainer call, in the main thread,
    so nothing outside our trainer (prediction, `yolo val`, a stock trainer) is affected."""
    saved = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, saved)


# --- AMP check ------------------------------------------------------------------------------------------------------
AMP_CHECK_WEIGHTS = WEIGHTS_DIR / "yolo26n.pt"  # what Ultralytics' own check runs, downloading it if missing


def amp_outputs_agree(model: torch.nn.Module, dtype: torch.dtype = torch.float16) -> tuple[bool, str]:
    """Does `model` give the same outputs in float32 and under autocast to `dtype`, on its own device?

    Ultralytics' test, applied to the model about to be trained instead of a downloaded YOLO26n, on Ultralytics'
    bundled bus.jpg at 256 px: every output finite, and within 1% of the image size (2.56) of its fp32 value.
    Ultralytics allows 0.5 px, but on the few confident boxes left after NMS; this compares every anchor's box,
    low-confidence ones included, which move more (a trained n model in fp16: up to 0.43 px). GPUs whose half
    precision is broken give inf/NaN or boxes off by far more, which is what the check is for."""
    import cv2

    device = next(model.parameters()).device
    m = copy.deepcopy(model).eval()  # eval: BatchNorm normalises with its running stats in both passes
    size = 256
    image = cv2.resize(cv2.imread(str(ASSETS / "bus.jpg")), (size, size))[..., ::-1]  # BGR -> RGB, (256, 256, 3)
    x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float().div(255).to(device)  # (1, 3, size, size)
    with torch.no_grad():
        ref = m(x)
        with torch.autocast(device.type, dtype=dtype):
            low = m(x)
    ref, low = (out[0] if isinstance(out, (list, tuple)) else out for out in (ref, low))  # Detect: (decoded, raw)
    low = low.float()
    if not torch.isfinite(low).all():
        return False, f"{int((~torch.isfinite(low)).sum())} of {low.numel()} outputs inf/NaN"
    diff = float((ref - low).abs().max())
    return diff <= 0.01 * size, f"max |fp32 - {dtype_name(dtype)}| {diff:.3g}"


def check_amp_offline(model: torch.nn.Module) -> bool:
    """Ultralytics' AMP check without its download. Its `check_amp` compares a downloaded YOLO26n in fp32 and fp16;
    offline it only warns "checks skipped" after trying. With that file present, or on CPU (where it just says
    no), it runs as is; otherwise the same comparison runs on the model being trained."""
    if next(model.parameters()).device.type != "cuda" or AMP_CHECK_WEIGHTS.is_file():
        return check_amp(model)
    ok, detail = amp_outputs_agree(model)
    if ok:
        LOGGER.info(f"AMP: checks passed on the model being trained, fp32 vs fp16 ({detail})")
    else:
        LOGGER.warning(f"AMP: checks failed on the model being trained ({detail}): fp16 looks broken on this GPU, "
                       "so AMP is disabled, as Ultralytics does (try --precision bf16)")
    return ok


# --- Checkpoints ----------------------------------------------------------------------------------------------------
class CheckpointPath(type(Path())):
    """A checkpoint path whose `write_bytes`, all BaseTrainer.save_model writes with, is atomic: the bytes go to a
    temporary file next to it that replaces the checkpoint only when complete (detector.utils.atomic_write, which first
    checks the disk has room and raises ENOSPC, saying how much, if not). last.pt is always a whole checkpoint, the
    previous one or the new one, and a save needs room for one new file, not a second set.

    save_model writes the same bytes to last.pt, then to best.pt (an improving epoch) and epochN.pt: those become hard
    links to the file just written, not copies. While best.pt is last.pt they take one file's space (Ultralytics keeps
    two), so an improving epoch's save peaks at two files, as Ultralytics' in-place writes do."""

    written: tuple[bytes, Path] | None = None  # the bytes of this save's first write, and where (see save_model)

    def write_bytes(self, data: bytes) -> int:
        first = CheckpointPath.written
        if not (first and first[0] is data and _hard_link(first[1], self)):
            atomic_write(self, data)
            CheckpointPath.written = (data, Path(self))
        return len(data)


def _hard_link(src: Path, dst: Path) -> bool:
    """Make `dst` a hard link to `src`, atomically; False where the file system has no hard links."""
    try:
        with atomic_path(dst) as tmp:
            tmp.unlink()
            os.link(src, tmp)
    except OSError:
        return False
    return True


def _restricted_torch_load(f, map_location=None, **_) -> dict:
    """torch_load's signature, loading through the restricted loader (on the CPU, as every checkpoint load)."""
    return restricted_load(f)[0]


def strip_atomically(f, s: str = "", updates: dict | None = None) -> dict:
    """Ultralytics' strip_optimizer (which final_eval runs on last.pt and best.pt, saving over them in place), loading
    through the restricted loader, its output written to a temporary file that replaces the target when complete
    (its log line names the target, not the temporary file). A file the restricted loader refuses is skipped with
    Ultralytics' warning, as one that does not load."""
    target = AtomicFile(s or f)
    # "Optimizer stripped from {f}, saved as {tmp}, 5.5MB": the line of an in-place strip, or one naming s
    renamed = {f" saved as {target.tmp},": ""} if not s else {str(target.tmp): str(target.dst)}
    try:
        with _rebound(torch_utils, "torch_load", _restricted_torch_load), log_renamed(LOGGER, renamed):
            stripped = strip_optimizer(f, str(target.tmp), updates)
    except BaseException as e:
        target.discard()
        if isinstance(e, RuntimeError):  # torch.save's words for a failed write: "unexpected pos ..."
            check_free_space(target.dst.parent, os.path.getsize(f), target.dst)  # say it, if it was the disk
        raise
    target.commit() if stripped else target.discard()  # {}: f did not load; Ultralytics warned and saved nothing
    return stripped


def _set_literal(function, member: str) -> frozenset[str]:
    """The set literal in `function`'s code that holds `member` (empty if none)."""
    found = [c for c in function.__code__.co_consts if isinstance(c, frozenset) and member in c]
    return found[0] if found else frozenset()


def optimizer_names() -> frozenset[str]:
    """The `optimizer=` values BaseTrainer.build_optimizer accepts (compared case-insensitively), from its own code."""
    return _set_literal(BaseTrainer.build_optimizer, "auto")


def _stock_deepcopy(x, memo=None):
    """copy.deepcopy, with our layers in the copy switched to the Ultralytics classes they subclass (`use_stock`)."""
    copied = copy.deepcopy(x, memo)
    if isinstance(copied, torch.nn.Module):
        use_stock(copied)
    return copied


def resume_problem(ckpt: dict | None, path: str) -> str | None:
    """Why the loaded checkpoint `ckpt` (from `path`) cannot be resumed, or None if it can. Ultralytics itself starts
    a NEW training when given a finished checkpoint to resume, and fails with an assertion on one whose epochs all
    ran: say so up front instead."""
    if not ckpt or ckpt.get("epoch", -1) < 0 or ckpt.get("optimizer") is None:
        return (f"'{path}' is not a resumable checkpoint (a finished run's weights, or not from training): "
                "to train it further, start a new run with --model")
    epochs = (ckpt.get("train_args") or {}).get("epochs")
    if epochs is not None and ckpt["epoch"] + 1 >= epochs:
        return (f"'{path}': all {epochs} epochs were trained (the run stopped in its final validation), "
                "nothing to resume")
    return None


def checkpoint_train_args(ckpt: dict | None) -> dict:
    """The training settings saved in a checkpoint (device, imgsz, amp, ...)."""
    return dict((ckpt or {}).get("train_args") or {})


def run_folder(checkpoint: str | Path) -> Path:
    """The run folder a checkpoint is in (<run>/weights/last.pt -> <run>), where resuming it writes."""
    folder = Path(checkpoint).absolute().parent
    return folder.parent if folder.name == "weights" else folder


def links_in(folder: str | Path) -> list[Path]:
    """The symbolic links inside `folder`, at any depth (links to folders are not followed)."""
    found = []
    for parent, dirs, files in os.walk(folder):
        found += [Path(parent, name) for name in (*dirs, *files) if os.path.islink(os.path.join(parent, name))]
    return sorted(found)


def link_problem(folder: str | Path) -> str | None:
    """Why a run may not write into `folder` (an existing run folder, resumed): a symbolic link in it, which the run's
    writes (args.yaml, plots, checkpoints) would follow to wherever it points. None: no link."""
    links = links_in(folder)
    if not links:
        return None
    more = f" (and {len(links) - 1} more)" if len(links) > 1 else ""
    return (f"'{links[0]}' is a symbolic link{more}: a run writes its files in place, and would write through it to "
            f"'{os.readlink(links[0])}'; replace it with the file itself, or resume from a copy of the run without it")


def resume_allowed() -> frozenset[str]:
    """The settings Ultralytics' resume takes from the caller (the rest come from the checkpoint): its `allowed` set,
    read from BaseTrainer.check_resume, and `data` (which it copies into the checkpoint's settings)."""
    return _set_literal(BaseTrainer.check_resume, "save_dir") | {"data"}


def check_contract() -> None:
    """Raise RuntimeError if BaseTrainer/dataset internals no longer work the way DetectorTrainer assumes."""
    needs = {
        "BaseTrainer.save_model writes via self.wdir/last/best": {"wdir", "last", "best", "write_bytes"}
        <= set(BaseTrainer.save_model.__code__.co_names),
        "BaseTrainer.save_model pickles a copy made by module-global deepcopy": "deepcopy"
        in BaseTrainer.save_model.__code__.co_names and trainer_module.deepcopy is copy.deepcopy,
        "BaseTrainer.final_eval strips self.last/best by strip_optimizer's module-global name": {
            "last", "best", "strip_optimizer"} <= set(BaseTrainer.final_eval.__code__.co_names)
        and trainer_module.strip_optimizer is strip_optimizer,
        "BaseTrainer.save_metrics writes results.csv through self.csv (DetectorTrainer swaps it for a temporary file)":
        "csv" in BaseTrainer.save_metrics.__code__.co_names,
        "BaseTrainer.check_resume takes save_dir, imgsz and batch from the caller (its `allowed` set)":
        {"save_dir", "imgsz", "batch"} <= resume_allowed(),
        "BaseTrainer.__init__ checks resume before it picks save_dir and writes args.yaml": _resume_checked_first(),
        "strip_optimizer loads with torch_load, a module-global name": "torch_load"
        in strip_optimizer.__code__.co_names and hasattr(torch_utils, "torch_load"),
        "BaseTrainer.build_optimizer lists its optimizers in a set": {"SGD", "AdamW"} <= optimizer_names(),
        "BaseTrainer understands amp='bf16'": "bf16" in BaseTrainer._do_train.__code__.co_consts
        and "bf16" in BaseTrainer._setup_train.__code__.co_consts,
        "build_yolo_dataset resolves YOLODataset from module globals": "YOLODataset"
        in data_build.build_yolo_dataset.__code__.co_names,
        "BaseTrainer._setup_train calls check_amp by module-global name": "check_amp"
        in BaseTrainer._setup_train.__code__.co_names and trainer_module.check_amp is check_amp,
        "YOLODataset has the verify_args/get_cache_hash/get_labels hooks, get_labels reads get_label_files": all(
            callable(getattr(YOLODataset, name, None))
            for name in ("verify_args", "get_cache_hash", "get_labels", "get_label_files"))
        and "get_label_files" in YOLODataset.get_labels.__code__.co_names,
        "DetectionTrainer.preprocess_batch moves the batch's tensors, leaving other values (the kept host targets)":
        "isinstance(v, torch.Tensor)" in inspect.getsource(DetectionTrainer.preprocess_batch),
    }
    require(needs, "trainer")


def _resume_checked_first() -> bool:
    """BaseTrainer.__init__ calls check_resume before get_save_dir and its write of args.yaml."""
    source = inspect.getsource(BaseTrainer.__init__)
    where = [source.find(mark) for mark in ("self.check_resume(", "get_save_dir(", '"args.yaml"')]
    return -1 not in where and where == sorted(where)


class DetectorTrainer(DetectionTrainer):
    """Ultralytics' DetectionTrainer with line-level label checking, atomic checkpoints, a clean resume and an
    offline AMP check.

    DDP workers re-import it by its module path, and importing this module registers our layers in every worker
    before it builds the model."""

    def __init__(self, *args, **kwargs):
        check_contract()
        super().__init__(*args, **kwargs)
        self.wdir, self.last, self.best = (CheckpointPath(p) for p in (self.wdir, self.last, self.best))
        if RANK in {-1, 0}:
            # A killed run's half-written checkpoint, or results.csv copy (in save_dir: only that file's temporaries)
            for leftover in (*AtomicFile.leftovers(self.wdir), *AtomicFile.leftovers(self.csv.parent, self.csv.name)):
                leftover.unlink()

    def check_resume(self, overrides):
        """Ultralytics' resume, writing into the run folder the checkpoint is in (where train.py's --resume also puts
        it), not the save_dir recorded in the checkpoint, which may be anywhere; refused if that folder holds a
        symbolic link (`link_problem`). Runs before BaseTrainer picks save_dir and writes args.yaml there."""
        super().check_resume(overrides)
        if not self.resume:
            return
        self.args.save_dir = overrides.get("save_dir") or str(run_folder(self.args.resume))
        if RANK in {-1, 0} and (problem := link_problem(self.args.save_dir)):
            raise ValueError(f"resume '{self.args.resume}': {problem}")

    def get_dataset(self) -> dict:
        """Ultralytics' dataset check, whose own one-line errors (a missing split, a YAML that is not UTF-8) it wraps in
        a RuntimeError with the message twice: raised as they are."""
        try:
            return super().get_dataset()
        except RuntimeError as e:
            if isinstance(e.__cause__, (FileNotFoundError, ValueError)):
                raise e.__cause__ from None
            raise

    def build_dataset(self, img_path, mode="train", batch=None):
        """Ultralytics' dataset, keeping the good lines of label files that have bad ones (see LineFilteredDataset).
        Its `build_yolo_dataset` picks the class by module-global name; building the dataset ourselves would repeat
        its argument logic (padding, rect, fraction, prefix)."""
        with _rebound(data_build, "YOLODataset", LineFilteredDataset):
            return super().build_dataset(img_path, mode, batch)

    def _setup_train(self):
        """Ultralytics' set-up, with check_amp_offline as its AMP check (it calls `check_amp` by module-global name),
        then the warning of detector.reach where the model cannot predict boxes as large as the dataset's (train.py
        gave it already before the run folder was made: it is said once per process). The set-up's last callback has
        switched the model's and its EMA's loss to LeanDetectionLoss (detector.glue.loss.lean_loss_for_training, as
        for every trainer once detector is imported)."""
        with _rebound(trainer_module, "check_amp", check_amp_offline):
            out = super()._setup_train()
        if RANK in {-1, 0} and not self.args.resume:
            imgsz = self.args.imgsz
            imgsz = int(max(imgsz) if isinstance(imgsz, (list, tuple)) else imgsz)
            try:
                warning = reach.check(self.model, str(self.args.model), str(self.args.data), imgsz,
                                      bool(self.args.single_cls))
            except Exception as e:  # a warning must never stop a training that Ultralytics has accepted
                warning = None
                LOGGER.debug(f"detector.reach: no box-size check ({type(e).__name__}: {e})")
            if warning:
                LOGGER.warning(warning)
        return out

    def preprocess_batch(self, batch: dict) -> dict:
        """Ultralytics' (the batch moved to the GPU, images scaled), the targets' CPU tensors kept beside it: from
        them LeanDetectionLoss sizes its work without waiting for the GPU (detector.glue.loss.keep_host_targets)."""
        keep_host_targets(batch)
        return super().preprocess_batch(batch)

    def save_model(self):
        """Ultralytics' checkpoint, each file written atomically (see CheckpointPath), recording Ultralytics' own layer
        classes, so that Ultralytics without `detector` loads it (after `import detector` it loads onto our SDPA layers:
        detector.glue.checkpoints). BaseTrainer.save_model pickles a deep copy of the EMA model, made with its
        module-global `deepcopy`: that copy gets the stock classes; the live model is not touched."""
        try:
            with _rebound(trainer_module, "deepcopy", _stock_deepcopy):
                return super().save_model()
        finally:
            CheckpointPath.written = None  # this save's bytes: let them go

    def save_metrics(self, metrics):
        """Ultralytics' results.csv row, appended to a copy of the file that replaces it only when complete: a run
        killed mid-write (or a full disk) leaves the previous results.csv whole, not a half row. Ultralytics writes
        the header where the file does not exist yet: the temporary copy exists exactly when results.csv does."""
        csv = self.csv
        csv.parent.mkdir(parents=True, exist_ok=True)  # as Ultralytics does, before the temporary file goes there
        with atomic_path(csv) as tmp:
            if csv.exists():
                shutil.copyfile(csv, tmp)
            else:
                tmp.unlink()  # atomic_path made it empty; Ultralytics writes the header where no file exists
            self.csv = Path(tmp)
            try:
                super().save_metrics(metrics)
            finally:
                self.csv = csv

    def final_eval(self):
        """Ultralytics' final strip of last.pt/best.pt and validation of best.pt, with the strip written atomically."""
        with _rebound(trainer_module, "strip_optimizer", strip_atomically):
            return super().final_eval()

    def resume_training(self, ckpt):
        """Ultralytics' resume, then results.csv cut back to the epochs the checkpoint holds.

        BaseTrainer appends a row to results.csv before it saves that epoch's checkpoint, and on resume appends to the
        file as it is: a run killed between the two would get that epoch's row twice."""
        super().resume_training(ckpt)
        if self.resume and ckpt and RANK in {-1, 0} and self.csv.exists():
            if garbage := _keep_epochs(self.csv, self.start_epoch):
                LOGGER.warning(f"{self.csv}: line{'s' if len(garbage) > 1 else ''} {', '.join(map(str, garbage))} "
                               "not a row of epoch results, dropped")


def _epoch(row: str, fields: int) -> float | None:
    """The epoch of a results.csv row (its first column), or None for a line that is not a row of `fields` values."""
    values = row.split(",")
    try:
        return float(values[0]) if len(values) == fields else None
    except ValueError:
        return None


def _keep_epochs(csv: Path, epochs: int) -> list[int]:
    """Rewrite results.csv (atomically) with its header and the rows of epochs 1..`epochs` (first column, 1-based).
    Returns the line numbers (1-based) of lines that were not rows (garbage, a half row, bytes not UTF-8): dropped."""
    header, *rows = csv.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    fields = len(header.split(","))
    epoch_of = [_epoch(r, fields) for r in rows]
    kept = [r for r, e in zip(rows, epoch_of) if e is not None and e <= epochs]
    if len(kept) != len(rows):
        atomic_write(csv, header + "".join(kept))
    return [n for n, (r, e) in enumerate(zip(rows, epoch_of), start=2) if e is None and r.strip()]
