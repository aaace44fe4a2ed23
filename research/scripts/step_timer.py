"""train.py with a per-step timer on every rank (issue 14: where a DDP run's time goes).

    python research/scripts/step_timer.py OUT_DIR <train.py arguments>

Each training process (every DDP rank, or the one process) appends one JSON line per epoch to OUT_DIR/rank<R>.jsonl:
per step, the seconds Ultralytics' loop spent getting the next batch from the DataLoader (`wait`: from the end of
one step to the start of the next, the `for i, batch in pbar` fetch) and the seconds of the step itself (`step`:
preprocess, forward, backward with DDP's gradient all-reduce, optimizer step; the step ends in a host sync, the AMP
scaler's inf check, so host time here is GPU time too). A loader-bound loop shows long waits; a step-bound one, waits
near zero.

The timer is an Ultralytics callback added to the model before train.py starts training; Ultralytics pickles the
trainer's callbacks into the DDP state file, so every rank runs it. It measures, and changes nothing else.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _state(trainer) -> dict:
    return trainer.__dict__.setdefault("_step_timer", {"wait": [], "step": [], "t_end": None, "t_start": None})


def on_train_epoch_start(trainer):
    st = _state(trainer)
    st.update(wait=[], step=[], t_end=time.perf_counter(), t_start=None)


def on_train_batch_start(trainer):
    st = _state(trainer)
    st["t_start"] = time.perf_counter()
    if st["t_end"] is not None:
        st["wait"].append(st["t_start"] - st["t_end"])


def on_train_batch_end(trainer):
    st = _state(trainer)
    st["t_end"] = time.perf_counter()
    if st["t_start"] is not None:
        st["step"].append(st["t_end"] - st["t_start"])


def on_train_epoch_end(trainer):
    st = _state(trainer)
    out = Path(os.environ["STEP_TIMER_DIR"])
    rank = int(os.environ.get("RANK", -1))
    line = dict(rank=rank, epoch=trainer.epoch + 1, steps=len(st["step"]), wait_s=round(sum(st["wait"]), 4),
                step_s=round(sum(st["step"]), 4), wait_ms=[round(w * 1e3, 2) for w in st["wait"]],
                step_ms=[round(s * 1e3, 2) for s in st["step"]], t=time.time())
    with open(out / f"rank{rank}.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")


def on_pretrain_routine_start(trainer):
    """With DDP_KWARGS set (JSON), every rank wraps its model in DistributedDataParallel with these keyword arguments
    on top of Ultralytics' own: for A/B runs of DDP settings (static_graph, find_unused_parameters, ...)."""
    kw = json.loads(os.environ.get("DDP_KWARGS") or "{}")
    if not kw:
        return
    import torch.nn.parallel as parallel

    base = parallel.DistributedDataParallel

    class TunedDDP(base):
        def __init__(self, *args, **kwargs):
            kwargs.update(kw)
            super().__init__(*args, **kwargs)

    parallel.DistributedDataParallel = TunedDDP


CALLBACKS = {f.__name__: f for f in (on_pretrain_routine_start, on_train_epoch_start, on_train_batch_start,
                                     on_train_batch_end, on_train_epoch_end)}


def main() -> int:
    out = Path(sys.argv[1]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ["STEP_TIMER_DIR"] = str(out)  # inherited by the DDP ranks (torch.distributed.run passes the environment)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    from detector import training

    plan = training.plan

    def timed_plan(args, extra):
        checked = plan(args, extra)
        for event, fn in CALLBACKS.items():
            checked.model.add_callback(event, fn)
        return checked

    training.plan = timed_plan
    return training.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
