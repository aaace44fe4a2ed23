"""A memory-lean class loss for Ultralytics' detection loss, with the same values and gradients: a prototype.

    python research/scripts/lean_bce.py                 # CPU (bf16 autocast), batch 2: exactness and saved bytes
    python research/scripts/lean_bce.py --batch 64      # a GPU (fp16 autocast): also peak memory and step time

Ultralytics' `v8DetectionLoss` computes its class loss as `BCEWithLogitsLoss(reduction="none")(pred_scores,
target_scores.to(dtype))` on (batch, anchors, classes) tensors in the autocast dtype. Autocast runs
binary_cross_entropy_with_logits in fp32, so autograd keeps fp32 copies of both inputs for the backward: at b64 with
the default's 27,600 anchors and 80 classes, 2 x 565 MB. The upcast is exact, so a function that keeps the fp16 (or
bf16) inputs and upcasts them again in its backward gives the same loss and the same gradients while keeping half the
bytes. This script swaps `criterion.bce` for that function and compares losses, gradients, the bytes autograd saves
during the loss, and on a GPU the training step's peak memory and time.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn


class _BCEKeepingLowPrecision(torch.autograd.Function):
    """binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none"), saving the low-precision
    inputs: the backward recomputes PyTorch's gradient, (sigmoid(x) - t) * grad, from their exact fp32 upcasts."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(logits, target)
        return F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, target = ctx.saved_tensors
        return ((logits.float().sigmoid() - target.float()) * grad).to(logits.dtype), None


class LeanBCE(nn.Module):
    """Drop-in for `nn.BCEWithLogitsLoss(reduction="none")` as Ultralytics' detection loss calls it."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.dtype == torch.float32:
            return F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return _BCEKeepingLowPrecision.apply(logits, target)


def saved_bytes(fn) -> tuple[object, int]:
    """fn()'s result and the bytes of the distinct storages autograd saves for the backward while it runs."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(storages.values())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--model", default="yolo11n-an (ours)", help="a detector.bench model label")
    a = p.parse_args(argv)

    from ultralytics.cfg import get_cfg

    from detector import bench

    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    model = bench.as_ultralytics_runs(bench.build(a.model, device).train(), device, training=True)
    model.args = get_cfg()
    batch = {"img": torch.randn(a.batch, 3, a.imgsz, a.imgsz, device=device),
             **bench.random_targets(a.batch, model.model[-1].nc, device)}
    results = {}
    for name, bce in (("Ultralytics' BCEWithLogitsLoss", nn.BCEWithLogitsLoss(reduction="none")), ("LeanBCE", LeanBCE())):
        model.zero_grad(set_to_none=True)
        model.loss(batch)  # builds the criterion
        model.criterion.bce = bce

        def loss_fn():
            with torch.autocast(device.type, dtype=dtype):
                return model.loss(batch)[0].sum()

        loss, saved = saved_bytes(loss_fn)
        loss.backward()
        grads = [q.grad.clone() for q in model.parameters() if q.grad is not None]
        row = dict(loss=loss.item(), saved_mib=saved / 2**20, grads=grads)
        if device.type == "cuda":
            opt = torch.optim.SGD(model.parameters(), lr=0.0)

            def step():
                opt.zero_grad(set_to_none=True)
                loss_fn().backward()
                opt.step()

            row["peak_mib"] = bench.peak_mib(step, device)
            row["ms"] = bench.interleaved({name: step}, device, iters=20, rounds=5)[name][0]
        results[name] = row
    (ref_name, ref), (lean_name, lean) = results.items()
    same_loss = ref["loss"] == lean["loss"]
    same_grads = all(torch.equal(g, h) for g, h in zip(ref["grads"], lean["grads"]))
    print(f"{bench.where(device)}, {a.model}, batch {a.batch} at {a.imgsz}, autocast {dtype}")
    for name, row in results.items():
        extra = f", peak {row['peak_mib']:.0f} MiB, step {row['ms']:.1f} ms" if "ms" in row else ""
        print(f"{name}: loss {row['loss']:.6f}, autograd saved {row['saved_mib']:.1f} MiB during the loss{extra}")
    print(f"same loss: {same_loss}; same gradients (bitwise, {len(ref['grads'])} tensors): {same_grads}")
    return 0 if same_loss and same_grads else 1


if __name__ == "__main__":
    raise SystemExit(main())
