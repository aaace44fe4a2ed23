"""Ultralytics' detection loss, with the same values and gradients and a fraction of its memory: `LeanDetectionLoss`.

Ultralytics' `v8DetectionLoss` works on dense (batch, anchors, classes) tensors: under AMP its class loss keeps fp32
copies of the logits and of the target scores for the backward, its box decode keeps the softmax of every anchor's
distribution although only the assigned (foreground) anchors get a gradient, and the task-aligned assigner builds
(batch, boxes, anchors) temporaries for the whole batch at once. That memory grows with the anchors: at batch 64 the
default's 27,600 anchors cost about 2.4 GiB more than the network alone, YOLO11n's 8,400 about 0.85 GiB.

`LeanDetectionLoss` computes the same three terms:
- the assigner (Ultralytics' own `TaskAlignedAssigner`) runs on a few images at a time: each image's assignment is
  independent of the others', so the results are those of one call; it returns each anchor's score and label, not
  the (b, anchors, classes) one-hot scores (`_ScorePerAnchorAssigner`);
- the class loss, sum over (b, a, c) of BCE-with-logits(x, y), is sum softplus(x) - sum x * y, and y is zero but for
  one class per anchor: `_SparseTargetBCE` keeps the logits as they are (a view of the head's output) and each
  anchor's label and score, and computes PyTorch's gradient, (sigmoid(x) - y) * grad, in its backward;
- the box losses (Ultralytics' `BboxLoss`: CIoU and DFL) read the foreground anchors only, so only those are decoded
  with a gradient.
The target score is rounded to the logits' dtype first, as Ultralytics' `target_scores.to(dtype)` does. Values match
to fp32 rounding (sums taken in another order); tests/test_loss.py holds the loss and every gradient to that.

`use_lean_loss(model)` gives a model this criterion where Ultralytics would build a plain `v8DetectionLoss`
(DetectorTrainer does it); end-to-end heads (YOLO26's `E2ELoss`) and other tasks keep Ultralytics' own.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from ultralytics.nn import tasks
from ultralytics.utils.loss import BboxLoss, v8DetectionLoss
from ultralytics.utils.tal import TaskAlignedAssigner, make_anchors

from . import require

# Rows (images) the assigner and the class loss take at a time are chosen so that one chunk's (images, boxes,
# anchors) tensors hold about this many elements: the assigner keeps several at once (fp32 overlaps and metrics,
# int8 and bool masks). Fewer, larger chunks launch fewer kernels and keep more memory.
CHUNK_ELEMENTS = 1 << 23


class _SparseTargetBCE(torch.autograd.Function):
    """sum over (b, a, c) of weight[c] * BCE-with-logits(logits[b, a, c], y[b, a, c]) in fp32, where y is zero except
    y[b, a, labels[b, a]] = scores[b, a]: sum weight * softplus(x) - sum weight[label] * x[label] * score.

    logits: (b, anchors, nc), any dtype and strides; labels: (b, anchors) int64; scores: (b, anchors) fp32; weight:
    (nc,) fp32 or None; rows: images per chunk. Only the logits are saved (no copy): the backward recomputes
    (sigmoid(x) - y) * weight * grad a chunk at a time, the gradient PyTorch gives, in the logits' dtype."""

    @staticmethod
    def forward(ctx, logits, labels, scores, weight, rows: int):
        ctx.save_for_backward(logits, labels, scores, weight)
        ctx.rows = rows
        total = logits.new_zeros((), dtype=torch.float32)
        for i in range(0, logits.shape[0], rows):
            softplus = F.softplus(logits[i:i + rows].float())  # (rows, anchors, nc)
            total += (softplus * weight).sum() if weight is not None else softplus.sum()
        picked = logits.gather(2, labels.unsqueeze(2)).squeeze(2).float() * scores  # (b, anchors)
        if weight is not None:
            picked = picked * weight[labels]
        return total - picked.sum()

    @staticmethod
    def backward(ctx, grad):
        logits, labels, scores, weight = ctx.saved_tensors
        out = torch.empty_like(logits)  # the logits' strides
        for i in range(0, logits.shape[0], ctx.rows):
            g = logits[i:i + ctx.rows].float().sigmoid()
            g.scatter_add_(2, labels[i:i + ctx.rows].unsqueeze(2), -scores[i:i + ctx.rows].unsqueeze(2))  # sigmoid - y
            if weight is not None:
                g *= weight
            out[i:i + ctx.rows] = g * grad
        return out, None, None, None, None


class _ScorePerAnchorAssigner(TaskAlignedAssigner):
    """Ultralytics' assigner whose target scores come out as (b, anchors, 1), each anchor's assigned score (its class
    is in the target labels), instead of the (b, anchors, nc) one-hot rows it builds, which LeanDetectionLoss would
    only sum again. Its `_forward` multiplies what `get_targets` returns by each anchor's (b, anchors, 1) normalized
    metric, so the values are the one-hot rows' nonzeros."""

    def get_targets(self, gt_labels, gt_bboxes, target_gt_idx, fg_mask):
        """(b, anchors) labels, (b, anchors, 4) boxes of each anchor's assigned box, (b, anchors, 1) foreground."""
        flat = target_gt_idx + torch.arange(self.bs, device=gt_labels.device).unsqueeze(1) * self.n_max_boxes
        labels = gt_labels.long().flatten()[flat].clamp_(0)
        boxes = gt_bboxes.view(-1, gt_bboxes.shape[-1])[flat]
        return labels, boxes, (fg_mask > 0).unsqueeze(2).to(torch.int8)


class LeanDetectionLoss(v8DetectionLoss):
    """v8DetectionLoss (same constructor, same `loss` and return values) computed without dense per-anchor tensors."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.assigner.__class__ = _ScorePerAnchorAssigner  # (a subclass adding no state: the same settings)

    def get_assigned_targets_and_loss(self, preds: dict, batch: dict, **assign_kwargs) -> tuple:
        """v8DetectionLoss.get_assigned_targets_and_loss: ((fg_mask, target_gt_idx, target_bboxes, anchor_points,
        stride_tensor), the gain-scaled (box, cls, dfl) loss not multiplied by the batch size, its detached items)."""
        distri = preds["boxes"].permute(0, 2, 1)  # (b, anchors, 4 * reg_max), a view
        logits = preds["scores"].permute(0, 2, 1)  # (b, anchors, nc), a view
        anchor_points, stride_tensor = make_anchors(preds["feats"], self.stride, 0.5)  # (anchors, 2), (anchors, 1)
        bs, na = logits.shape[:2]
        imgsz = torch.tensor(preds["feats"][0].shape[2:], device=self.device, dtype=logits.dtype) * self.stride[0]
        targets = torch.cat((batch["batch_idx"].view(-1, 1), batch["cls"].view(-1, 1), batch["bboxes"]), 1)
        targets = self.preprocess(targets.to(self.device), bs, scale_tensor=imgsz[[1, 0, 1, 0]])
        gt_labels, gt_bboxes = targets.split((1, 4), 2)  # (b, boxes, 1) class, (b, boxes, 4) xyxy pixels
        mask_gt = gt_bboxes.sum(2, keepdim=True).gt_(0.0)
        rows = max(1, CHUNK_ELEMENTS // max(1, gt_bboxes.shape[1] * na))

        labels, scores, fg_mask, target_gt_idx, target_bboxes = [], [], [], [], []
        with torch.no_grad():
            anchor_pixels = anchor_points * stride_tensor  # (anchors, 2)
            for i in range(0, bs, rows):
                part = slice(i, i + rows)
                boxes = self.bbox_decode(anchor_points, distri[part].contiguous())  # (rows, anchors, 4) xyxy, grid units
                out = self.assigner(logits[part].sigmoid(), (boxes * stride_tensor).type(gt_bboxes.dtype),
                                    anchor_pixels, gt_labels[part], gt_bboxes[part], mask_gt[part],
                                    **{k: v[part] for k, v in assign_kwargs.items()})
                # (target_labels, target_bboxes, target_scores (rows, anchors, 1), fg_mask, target_gt_idx); without
                # boxes, target_scores is Ultralytics' (rows, anchors, nc) zeros: either way its sum is each score.
                labels.append(out[0].long())  # (float where the batch has no boxes)
                target_bboxes.append(out[1])
                scores.append(out[2].sum(2))
                fg_mask.append(out[3])
                target_gt_idx.append(out[4])
        labels, target_bboxes, scores, fg_mask, target_gt_idx = (
            torch.cat(x) for x in (labels, target_bboxes, scores, fg_mask, target_gt_idx))
        target_scores_sum = scores.sum().clamp_(min=1)

        weight = None if self.class_weights is None else self.class_weights.view(-1).float()
        cls = _SparseTargetBCE.apply(logits, labels.clamp(0, self.nc - 1), scores.to(logits.dtype).float(), weight, rows)

        # Box losses over the foreground: a batch of one holding every assigned anchor, as BboxLoss reads it.
        fg_b, fg_a = fg_mask.nonzero(as_tuple=True)  # (n,), (n,)
        fg_distri = distri[fg_b, fg_a].unsqueeze(0)  # (1, n, 4 * reg_max), with a gradient
        fg_anchors = anchor_points[fg_a]  # (n, 2)
        box, dfl = self.bbox_loss(fg_distri, self.bbox_decode(fg_anchors, fg_distri), fg_anchors,
                                  (target_bboxes[fg_b, fg_a] / stride_tensor[fg_a]).unsqueeze(0),
                                  scores[fg_b, fg_a].view(1, -1, 1), target_scores_sum,
                                  torch.ones_like(fg_b, dtype=torch.bool).unsqueeze(0), imgsz, stride_tensor[fg_a])

        loss = torch.stack((box * self.hyp.box, cls / target_scores_sum * self.hyp.cls, dfl * self.hyp.dfl))
        return ((fg_mask, target_gt_idx, target_bboxes, anchor_points, stride_tensor), loss,
                dict(zip(self.loss_names, loss.detach())))


def use_lean_loss(model: torch.nn.Module) -> bool:
    """Give `model` (a DetectionModel with `args` set) a LeanDetectionLoss where Ultralytics would build a plain
    v8DetectionLoss; True if it did. The trainer strips criteria from checkpoints, so nothing of it is saved."""
    if type(model) is not tasks.DetectionModel or getattr(model.model[-1], "one2one_cv2", None) is not None:
        return False
    model.criterion = LeanDetectionLoss(model)
    return True


def check_contract() -> None:
    """Raise RuntimeError if v8DetectionLoss, its assigner or BboxLoss no longer work the way LeanDetectionLoss
    assumes."""
    own = inspect.signature(v8DetectionLoss.get_assigned_targets_and_loss).parameters
    box = list(inspect.signature(BboxLoss.forward).parameters)
    source = inspect.getsource(v8DetectionLoss.get_assigned_targets_and_loss)
    assign = inspect.getsource(TaskAlignedAssigner._forward)
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
        "BboxLoss.forward(pred_dist, pred_bboxes, anchor_points, target_bboxes, target_scores, target_scores_sum, "
        "fg_mask, imgsz, stride)": box == ["self", "pred_dist", "pred_bboxes", "anchor_points", "target_bboxes",
                                           "target_scores", "target_scores_sum", "fg_mask", "imgsz", "stride"],
        "TaskAlignedAssigner returns (labels, bboxes, scores, fg_mask, gt_idx)":
            "return target_labels, target_bboxes, target_scores, fg_mask.bool(), target_gt_idx" in assign,
        "TaskAlignedAssigner._forward scales get_targets' scores by a (b, anchors, 1) metric":
            "self.get_targets(gt_labels, gt_bboxes, target_gt_idx, fg_mask)" in assign
            and "target_scores = target_scores * norm_align_metric" in assign
            and "norm_align_metric = align_metric.amax(-2).unsqueeze(-1)" in assign
            and list(inspect.signature(TaskAlignedAssigner.get_targets).parameters)
            == ["self", "gt_labels", "gt_bboxes", "target_gt_idx", "fg_mask"],
        "DetectionModel.init_criterion builds v8DetectionLoss (E2ELoss for end-to-end heads)":
            "v8DetectionLoss" in inspect.getsource(tasks.DetectionModel.init_criterion),
        "BaseModel.loss uses model.criterion (building it only when it is None)":
            "criterion" in tasks.BaseModel.loss.__code__.co_names,
    }, "loss")
