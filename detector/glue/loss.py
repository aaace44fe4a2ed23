"""Ultralytics' detection loss, with the same values and gradients, a fraction of its memory and no wait for the GPU:
`LeanDetectionLoss`.

Ultralytics' `v8DetectionLoss` works on dense (batch, anchors, classes) tensors: under AMP its class loss keeps fp32
copies of the logits and of the target scores for the backward, its box decode keeps the softmax of every anchor's
distribution although only the assigned (foreground) anchors get a gradient, and the task-aligned assigner builds
(batch, boxes, anchors) temporaries for the whole batch at once. That memory grows with the anchors: at batch 64 the
default's 27,600 anchors cost about 2.4 GiB more than the network alone, YOLO11n's 8,400 about 0.85 GiB. It also
reads values of the GPU on the host several times per step (the largest box count when it pads the targets, the
anchors' grids, boolean masks), and from the first such wait the GPU idles while the host launches each of the
loss's small kernels.

`LeanDetectionLoss` computes the same three terms:
- the assignment is Ultralytics' task-aligned assignment computed over the (box, anchor) pairs that can match
  (`detector.glue.assigner`); it returns each anchor's score and label, not (b, anchors, classes) one-hot scores;
- the class loss, sum over (b, a, c) of BCE-with-logits(x, y), is sum softplus(x) - sum x * y, and y is zero but for
  one class per anchor: `_SparseTargetBCE` keeps the logits as they are (a view of the head's output) and each
  anchor's label and score, and computes PyTorch's gradient, (sigmoid(x) - y) * grad, in its backward;
- the box losses (Ultralytics' CIoU and DFL, as its `BboxLoss` weighs them) read the foreground anchors only, so only
  those are decoded with a gradient.
Where the batch carries its targets' CPU tensors (`keep_host_targets`, which DetectorTrainer calls before moving a
batch to the GPU), everything the host must know is computed from them: Ultralytics' target padding runs on the CPU,
the candidate and foreground lists have sizes known there, and nothing waits for the GPU. Without them the loss
copies the targets back once.
The target score is rounded to the logits' dtype first, as Ultralytics' `target_scores.to(dtype)` does. Values match
to fp32 rounding (sums taken in another order); tests/test_loss.py holds the loss and every gradient to that. (The
assignment may break a top-k tie otherwise than torch.topk, whose order among equal metrics is its implementation's.)

`use_lean_loss(model)` gives a model this criterion where Ultralytics would build a plain `v8DetectionLoss`; `import
detector` makes every Ultralytics trainer do it at the end of its set-up (`lean_loss_for_training`, a default
callback), DetectorTrainer and Ultralytics' own alike. End-to-end heads (YOLO26's `E2ELoss`) and other tasks keep
Ultralytics' own.
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import torch
from ultralytics.engine.trainer import BaseTrainer
from ultralytics.nn import tasks
from ultralytics.utils import callbacks
from ultralytics.utils.loss import BboxLoss, v8DetectionLoss
from ultralytics.utils.metrics import bbox_iou
from ultralytics.utils.tal import bbox2dist, make_anchors
from ultralytics.utils.torch_utils import unwrap_model

from . import require
from .assigner import assign, to_device

# The batch fields the loss reads its targets from; the trainer keeps their CPU tensors under HOST_TARGETS
# (keep_host_targets) before it moves the batch to the GPU.
TARGET_KEYS = ("batch_idx", "cls", "bboxes")
HOST_TARGETS = "detector_host_targets"
_ON_HOST = SimpleNamespace(device=torch.device("cpu"))  # what v8DetectionLoss.preprocess reads of its instance
_DECODE = SimpleNamespace(use_dfl=True, proj=torch.arange(16, dtype=torch.float))  # what bbox_decode reads (16 bins)

# Images the class loss takes at a time are chosen so that one chunk's fp32 (images, anchors, classes) temporaries hold
# about this many elements (128 MiB): fewer, larger chunks launch fewer kernels and keep more memory.
CHUNK_ELEMENTS = 1 << 25


class _SparseTargetBCE(torch.autograd.Function):
    """sum over (b, a, c) of weight[c] * BCE-with-logits(logits[b, a, c], y[b, a, c]) in fp32, where y is zero except
    y[b, a, labels[b, a]] = scores[b, a]: sum weight * softplus(x) - sum weight[label] * x[label] * score.

    logits: (b, anchors, nc), any dtype and strides; labels: (b, anchors) int64; scores: (b, anchors) fp32; weight:
    (nc,) fp32 or None; rows: images per chunk. Only the logits are saved (no copy): the backward recomputes
    (sigmoid(x) - y) * weight * grad a chunk at a time, the gradient PyTorch gives, in the logits' dtype.

    Each pass over the (b, anchors, nc) elements costs memory traffic, so each is made once: softplus as
    logaddexp(x, 0) against an fp32 operand reads fp16 logits and computes in fp32 without an fp32 copy of them
    first, and the gradient is rounded into the logits' dtype by the multiplication that makes it."""

    @staticmethod
    def forward(ctx, logits, labels, scores, weight, rows: int):
        ctx.save_for_backward(logits, labels, scores, weight)
        ctx.rows = rows
        total = logits.new_zeros((), dtype=torch.float32)
        zero = logits.new_zeros((1, 1, 1), dtype=torch.float32)  # (a dimensioned operand: it sets the op's dtype)
        for i in range(0, logits.shape[0], rows):
            softplus = torch.logaddexp(logits[i:i + rows], zero)  # (rows, anchors, nc) fp32: log(1 + e^x)
            total += (softplus.mul_(weight) if weight is not None else softplus).sum()
        picked = logits.gather(2, labels.unsqueeze(2)).squeeze(2).float() * scores  # (b, anchors)
        if weight is not None:
            picked = picked * weight[labels]
        return total - picked.sum()

    @staticmethod
    def backward(ctx, grad):
        logits, labels, scores, weight = ctx.saved_tensors
        out = torch.empty_like(logits)  # the logits' strides
        for i in range(0, logits.shape[0], ctx.rows):
            g = logits[i:i + ctx.rows].float().sigmoid_()  # (rows, anchors, nc) fp32
            g.scatter_add_(2, labels[i:i + ctx.rows].unsqueeze(2), -scores[i:i + ctx.rows].unsqueeze(2))  # sigmoid - y
            if weight is not None:
                g *= weight
            torch.mul(g, grad, out=out[i:i + ctx.rows])  # computed in fp32, rounded once into the logits' dtype
        return out, None, None, None, None


class LeanDetectionLoss(v8DetectionLoss):
    """v8DetectionLoss (same constructor, same `loss` and return values) computed without dense per-anchor tensors,
    and without waiting for the GPU where the batch carries its targets' host copies (`keep_host_targets`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.host_strides = self.stride.tolist()  # each level's stride, read once here rather than at every step
        self._anchors = {}  # (levels, dtype) -> make_anchors' (anchor_points, stride_tensor) on self.device

    def anchors(self, levels: list[tuple[int, int]], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """make_anchors' (A, 2) points and (A, 1) strides for these levels, made on the host once per image size
        (made on the GPU they wait for it: their aranges and strides are copied there)."""
        key = (tuple(levels), dtype)
        if key not in self._anchors:
            feats = [torch.empty(0, 0, h, w, dtype=dtype) for h, w in levels]
            with torch.inference_mode(False):  # (made during validation, they still serve training steps)
                points, strides = make_anchors(feats, torch.tensor(self.host_strides), 0.5)
                self._anchors[key] = (points.to(self.device), strides.to(self.device))
        return self._anchors[key]

    def get_assigned_targets_and_loss(self, preds: dict, batch: dict, **assign_kwargs) -> tuple:
        """v8DetectionLoss.get_assigned_targets_and_loss: ((fg_mask, target_gt_idx, target_bboxes, anchor_points,
        stride_tensor), the gain-scaled (box, cls, dfl) loss not multiplied by the batch size, its detached items)."""
        if assign_kwargs or self.assigner.topk2 != self.assigner.topk:
            raise NotImplementedError("LeanDetectionLoss assigns as TaskAlignedAssigner does with topk2 == topk and "
                                      "no extra tensors; use Ultralytics' v8DetectionLoss for other settings")
        distri = preds["boxes"].permute(0, 2, 1)  # (b, anchors, 4 * reg_max), a view
        logits = preds["scores"].permute(0, 2, 1)  # (b, anchors, nc), a view
        bs, na = logits.shape[:2]
        levels = [tuple(f.shape[2:]) for f in preds["feats"]]
        anchor_points, stride_tensor = self.anchors(levels, preds["feats"][0].dtype)  # (anchors, 2), (anchors, 1)

        # Ultralytics' padded targets, (b, boxes, 5) class and xyxy pixels, made on the host from the targets' copies
        # there (its own preprocess, run on the CPU), then copied over without waiting
        host = batch.get(HOST_TARGETS) or tuple(batch[k].cpu() for k in TARGET_KEYS)  # (else one wait for the GPU)
        imgsz = torch.tensor(levels[0], dtype=logits.dtype) * self.host_strides[0]  # (h, w), as Ultralytics makes it
        targets = torch.cat((host[0].view(-1, 1), host[1].view(-1, 1), host[2]), 1)  # (targets, 6) image, class, xywh
        padded = v8DetectionLoss.preprocess(_ON_HOST, targets, bs, scale_tensor=imgsz[[1, 0, 1, 0]])
        gt_labels, gt_bboxes = to_device(padded, self.device).split((1, 4), 2)  # (b, boxes, 1), (b, boxes, 4)
        mask_gt = gt_bboxes.sum(2, keepdim=True).gt_(0.0)
        labels, target_bboxes, scores, fg_mask, target_gt_idx = assign(
            self.assigner, self.bbox_decode, logits, distri, anchor_points, stride_tensor, levels, self.host_strides,
            gt_labels, gt_bboxes, mask_gt, padded[..., 1:])
        target_scores_sum = scores.sum().clamp_(min=1)

        weight = None if self.class_weights is None else self.class_weights.view(-1).float()
        rows = max(1, CHUNK_ELEMENTS // (na * self.nc))
        cls = _SparseTargetBCE.apply(logits, labels.clamp(0, self.nc - 1), scores.to(logits.dtype).float(), weight, rows)

        # Box losses over the foreground anchors, in a number of slots known on the host: a box picks at most topk
        # anchors. Unused slots (index -1) read anchor 0 with weight 0.
        fg = torch.nonzero_static(fg_mask.view(-1), size=self.assigner.topk * len(host[0])).squeeze(1)  # (F,)
        used, fg = fg >= 0, fg.clamp(min=0)
        fg_b, fg_a = fg // na, fg % na
        fg_distri = distri[fg_b, fg_a]  # (F, 4 * reg_max), with a gradient
        fg_anchors = anchor_points[fg_a]  # (F, 2)
        fg_weight = scores.view(-1)[fg].where(used, 0).unsqueeze(1)  # (F, 1) target scores
        box, dfl = self.box_losses(fg_distri, fg_anchors, target_bboxes.view(-1, 4)[fg] / stride_tensor[fg_a],
                                   fg_weight, target_scores_sum)

        loss = torch.stack((box * self.hyp.box, cls / target_scores_sum * self.hyp.cls, dfl * self.hyp.dfl))
        return ((fg_mask, target_gt_idx, target_bboxes, anchor_points, stride_tensor), loss,
                dict(zip(self.loss_names, loss.detach())))

    def box_losses(self, distri: torch.Tensor, anchors: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor,
                   target_scores_sum: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ultralytics' BboxLoss (CIoU and DFL, weighted by the target scores) over rows that are all foreground:
        distri (F, 4 * reg_max), anchors (F, 2) and targets (F, 4) xyxy in grid units, weight (F, 1). BboxLoss itself
        selects its rows with a boolean mask, which waits for the GPU."""
        iou = bbox_iou(self.bbox_decode(anchors, distri.unsqueeze(0))[0], targets, xywh=False, CIoU=True)  # (F, 1)
        loss_iou = ((1.0 - iou) * weight).sum() / target_scores_sum
        dfl = self.bbox_loss.dfl_loss
        target_ltrb = bbox2dist(anchors, targets, dfl.reg_max - 1)
        loss_dfl = (dfl(distri.view(-1, dfl.reg_max), target_ltrb) * weight).sum() / target_scores_sum
        return loss_iou, loss_dfl


def keep_host_targets(batch: dict) -> None:
    """Keep a batch's target tensors, still on the CPU, under HOST_TARGETS (the trainer calls this before moving the
    batch to the GPU): LeanDetectionLoss sizes its work from them without waiting for the GPU."""
    if all(batch[k].device.type == "cpu" for k in TARGET_KEYS):
        batch[HOST_TARGETS] = tuple(batch[k] for k in TARGET_KEYS)


def use_lean_loss(model: torch.nn.Module) -> bool:
    """Give `model` (a DetectionModel with `args` set) a LeanDetectionLoss where Ultralytics would build a plain
    v8DetectionLoss; True if it did. The trainer strips criteria from checkpoints, so nothing of it is saved."""
    head = model.model[-1]
    if type(model) is not tasks.DetectionModel or getattr(head, "one2one_cv2", None) is not None or head.reg_max < 2:
        return False  # (reg_max 1: Ultralytics' L1 box loss, not DFL)
    model.criterion = LeanDetectionLoss(model)
    return True


def lean_loss_for_training(trainer) -> None:
    """An `on_pretrain_routine_end` callback (Ultralytics' trainers run it at the end of their set-up, when the model
    has its `args` and the EMA exists): the trained model and its EMA, whose loss is the validation loss, get a
    LeanDetectionLoss where they would build a plain v8DetectionLoss (use_lean_loss). So Ultralytics' own trainer
    (`model.train()` without `trainer=`) computes the same loss in less memory too; without DetectorTrainer's host
    copies of the targets, each step waits for the GPU once, where Ultralytics' loss waits several times."""
    use_lean_loss(unwrap_model(trainer.model))
    if getattr(trainer, "ema", None) is not None:
        use_lean_loss(unwrap_model(trainer.ema.ema))


def install() -> None:
    """Add `lean_loss_for_training` to Ultralytics' default training callbacks (trainers made from now on).
    Idempotent."""
    hooks = callbacks.default_callbacks["on_pretrain_routine_end"]
    if lean_loss_for_training not in hooks:
        hooks.append(lean_loss_for_training)


def check_contract() -> None:
    """Raise RuntimeError if v8DetectionLoss, its assigner or BboxLoss no longer work the way LeanDetectionLoss
    assumes: their signatures, and LeanDetectionLoss.box_losses and the host-side preprocess against Ultralytics' own
    on a small example."""
    own = inspect.signature(v8DetectionLoss.get_assigned_targets_and_loss).parameters
    source = inspect.getsource(v8DetectionLoss.get_assigned_targets_and_loss)
    setup = inspect.getsource(BaseTrainer._setup_train)
    g = torch.Generator().manual_seed(0)
    n, reg_max = 40, 16
    distri = torch.randn(1, n, 4 * reg_max, generator=g)
    anchors = torch.rand(n, 2, generator=g) * 20
    targets = torch.cat((anchors - torch.rand(n, 2, generator=g) * 5, anchors + torch.rand(n, 2, generator=g) * 5), 1)
    scores = torch.rand(n, 1, generator=g)
    lean = SimpleNamespace(bbox_decode=lambda a, d: v8DetectionLoss.bbox_decode(_DECODE, a, d),
                           bbox_loss=BboxLoss(reg_max))
    decoded = v8DetectionLoss.bbox_decode(_DECODE, anchors, distri)
    stock = BboxLoss(reg_max)(distri, decoded, anchors, targets.unsqueeze(0), scores.unsqueeze(0), scores.sum(),
                              torch.ones(1, n, dtype=torch.bool), torch.tensor([640.0, 640.0]), torch.ones(n, 1))
    ours = LeanDetectionLoss.box_losses(lean, distri[0], anchors, targets, scores, scores.sum())
    rows = torch.tensor([[0, 1, 0.5, 0.5, 0.2, 0.1], [0, 2, 0.3, 0.3, 0.1, 0.1], [2, 0, 0.5, 0.5, 0.9, 0.9]])
    scale = torch.tensor([640.0, 320.0, 640.0, 320.0], dtype=torch.float16)
    padded = v8DetectionLoss.preprocess(_ON_HOST, rows, 3, scale_tensor=scale)
    expected = torch.zeros(3, 2, 5)
    expected[0, 0], expected[0, 1], expected[2, 0] = rows[0, 1:], rows[1, 1:], rows[2, 1:]
    xywh = expected[..., 1:5] * scale.float()
    expected[..., 1:5] = torch.cat((xywh[..., :2] - xywh[..., 2:] / 2, xywh[..., :2] + xywh[..., 2:] / 2), -1)
    require({
        "v8DetectionLoss.loss calls get_assigned_targets_and_loss(preds, batch)":
            "get_assigned_targets_and_loss" in v8DetectionLoss.loss.__code__.co_names,
        "v8DetectionLoss.get_assigned_targets_and_loss(preds, batch, **assign_kwargs)":
            list(own)[:3] == ["self", "preds", "batch"],
        "its class loss is self.bce(pred_scores, target_scores.to(dtype)) over every anchor":
            "self.bce(pred_scores, target_scores.to(dtype))" in source,
        "v8DetectionLoss has bbox_decode and preprocess, and sets class_weights":
            all(hasattr(v8DetectionLoss, m) for m in ("bbox_decode", "preprocess")) and "class_weights" in
            inspect.getsource(v8DetectionLoss.__init__),
        "BboxLoss (CIoU and DFL over the foreground, weighted by the target scores) is LeanDetectionLoss.box_losses":
            all(torch.allclose(a, b, rtol=1e-6, atol=0) for a, b in zip(stock, ours)),
        "v8DetectionLoss.preprocess(targets, batch_size, scale_tensor) pads (image, class, xywh) rows into "
        "(images, boxes, class + xyxy pixels), reading only self.device": torch.equal(padded, expected),
        "v8DetectionLoss's assigner is a TaskAlignedAssigner (detector.glue.assigner assigns as it does)":
            "self.assigner = TaskAlignedAssigner(" in inspect.getsource(v8DetectionLoss.__init__),
        "DetectionModel.init_criterion builds v8DetectionLoss (E2ELoss for end-to-end heads)":
            "v8DetectionLoss" in inspect.getsource(tasks.DetectionModel.init_criterion),
        "BaseModel.loss uses model.criterion (building it only when it is None)":
            "criterion" in tasks.BaseModel.loss.__code__.co_names,
        "BaseTrainer._setup_train makes the EMA, then runs the on_pretrain_routine_end callbacks":
            "on_pretrain_routine_end" in callbacks.default_callbacks
            and 0 <= setup.find("self.ema = ModelEMA(") < setup.find('run_callbacks("on_pretrain_routine_end")'),
    }, "loss")
