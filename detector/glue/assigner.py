"""Ultralytics' task-aligned assignment computed over candidate (box, anchor) pairs only: `assign`.

Ultralytics' `TaskAlignedAssigner` works on dense (images, boxes, anchors) tensors: some 30 passes over them (which
anchors lie in which box, the metrics, a top-k along the anchors, the conflicts, the normalization), although only
anchors inside a box can be assigned to it. With the default's 27,600 anchors that is 28 M elements per pass at batch
64 with 16 boxes per image, and the loss's largest cost. Here the candidates of each box are listed level by level
(the anchors inside a box form a rectangle of each level's grid) and every step runs on that list, about 5% of the
dense size for that batch.

The rules are Ultralytics' (8.4.190, `topk2 == topk`), step for step with the same floating-point operations:
- candidates: anchor centers strictly inside the box, its sides first floored to `stride_val` (comparisons as its
  `select_candidates_in_gts`, one axis at a time);
- metric: score ** alpha * CIoU ** beta, the score the sigmoid of the box's class logit, CIoU clamped at zero;
- each box's `topk` candidates by metric, of metric above zero;
- an anchor picked by several boxes goes to the box it overlaps most of all boxes it lies in, picked or not (the
  first such box on a tie), as Ultralytics' `select_highest_overlaps` does;
- target score: metric * (the box's largest overlap) / (the box's largest metric + eps) over its final anchors.
Where they may differ is ties in the top-k, which `torch.topk` breaks as its implementation does (differently on CPU
and CUDA) and this by anchor order. A box with fewer than `topk` candidates of nonzero metric ties its candidates of
metric zero (CIoU clamped) with every anchor outside it; the CPU top-k then picks outside anchors, which the box's
mask drops, and so does this. tests/test_loss.py and `check_contract` hold it to Ultralytics' assignment on CPU.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from ultralytics.utils.ops import xywh2xyxy, xyxy2xywh
from ultralytics.utils.tal import TaskAlignedAssigner

from . import require

# Candidate slots one pass handles (images are grouped up to this; one image may exceed it). A slot holds some 120
# bytes of index temporaries, plus its box decode's while its boxes are decoded (DECODE_SLOTS). A batch of 64 images
# with 16 boxes of 2-40% of the side at 640 lays out 1.35 M slots for the default (one pass), 0.46 M for YOLO11n.
# Smaller passes cost time: on one H100 at 2^19 slots the default's `detector train` step took 1.14x YOLO11n's, in
# one pass 1.03x (each pass moves its layout to the GPU and runs its own sort and scatters).
CANDIDATES_PER_PASS = 1 << 21
# Slots whose boxes are decoded at a time: the gathered bins (fp16) and their softmax (fp32 under autocast) take some
# 380 bytes a slot. Made for a whole pass at once they were the default's peak training memory (b64@640 on one H100:
# 7941 MiB, 7677 decoding 2^18 slots at a time, YOLO11n 7379 -> 7355; the step's time unchanged within that machine's
# noise, paired ratios 0.99-1.00).
DECODE_SLOTS = 1 << 18
INSIDE_EPS = 1e-9  # select_candidates_in_gts' default eps


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on `device` without waiting for the GPU (a plain copy to CUDA waits for the stream's work)."""
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t.to(device)


def _inside(centers: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """centers (k,) of one axis, low/high (b, n, 1) box edges -> (b, n, k) strictly inside, as Ultralytics compares."""
    return ((centers - low) > INSIDE_EPS) & ((high - centers) > INSIDE_EPS)


def _first_and_count(inside: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, n, k) bool, true on one contiguous run per row -> (b, n) its first index, (b, n) its length."""
    return inside.to(torch.uint8).argmax(-1), inside.sum(-1)


def candidate_bounds(boxes: torch.Tensor, stride_val: float, levels: list[tuple[int, int]],
                     strides: list[float]) -> torch.Tensor:
    """(b, n, 4) xyxy pixel boxes (zeros: padding) -> (b, n, levels) int64, at least the number of anchors of each
    level inside each box (its sides floored to stride_val): a side of length d holds at most floor(d / s) + 1 anchor
    centers s apart, one more for the rounding of the box's edges."""
    sides = xyxy2xywh(boxes)[..., 2:].clamp(min=stride_val)  # (b, n, 2)
    real = boxes.sum(2) > 0
    bounds = []
    for (h, w), s in zip(levels, strides):
        across = (sides / s).floor().long() + 2
        bounds.append(across[..., 0].clamp(max=w) * across[..., 1].clamp(max=h))
    return torch.stack(bounds, -1) * real.unsqueeze(-1)


@torch.no_grad()
def assign(tal: TaskAlignedAssigner, decode, logits: torch.Tensor, distri: torch.Tensor, anchor_points: torch.Tensor,
           stride_tensor: torch.Tensor, levels: list[tuple[int, int]], strides: list[float], gt_labels: torch.Tensor,
           gt_bboxes: torch.Tensor, mask_gt: torch.Tensor, host_bboxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Ultralytics' assignment of a batch, without waiting for the GPU.

    tal: the loss's TaskAlignedAssigner (its settings and CIoU); decode: the loss's `bbox_decode`;
    logits (b, A, nc) and distri (b, A, 4 * reg_max): the head's outputs, any strides; anchor_points (A, 2) and
    stride_tensor (A, 1): make_anchors' (grid units); levels, strides: each level's (h, w) and stride, in anchor
    order; gt_labels (b, n, 1), gt_bboxes (b, n, 4) xyxy pixels, mask_gt (b, n, 1): the loss's padded targets;
    host_bboxes: gt_bboxes' values on the CPU, from which the candidate list is sized (on the host, so no step waits
    for the GPU's results).
    Returns labels (b, A) int64, boxes (b, A, 4), scores (b, A) fp32, fg (b, A) bool, gt_idx (b, A) int64: what
    Ultralytics' assigner returns, with each anchor's target score in place of its one-hot (b, A, nc) row.
    """
    b, na, nc = logits.shape
    n, device = gt_bboxes.shape[1], logits.device
    gt_idx = torch.zeros(b * na, dtype=torch.long, device=device)
    fg = torch.zeros(b * na, dtype=torch.bool, device=device)
    scores = torch.zeros(b * na, dtype=torch.float32, device=device)
    if n == 0:  # Ultralytics: every anchor background, label nc
        return (torch.full((b, na), nc, dtype=torch.long, device=device), torch.zeros(b, na, 4, device=device),
                scores.view(b, na), fg.view(b, na), gt_idx.view(b, na))

    # Which anchors of each level lie in each box: one range per axis (the box sides floored as Ultralytics does)
    xywh = xyxy2xywh(gt_bboxes)
    floor = torch.full((), tal.stride_val, dtype=xywh.dtype, device=device)
    xywh[..., 2:] = torch.where(((xywh[..., 2:] < tal.stride_val) * mask_gt).bool(), floor, xywh[..., 2:])
    edges = xywh2xyxy(xywh)  # (b, n, 4)
    centers = anchor_points * stride_tensor  # (A, 2) pixels
    first_x, count_x, first_y, count_y, width, start = [], [], [], [], [], []
    offset = 0
    for h, w in levels:
        x0, cx = _first_and_count(_inside(centers[offset:offset + w, 0], edges[..., 0:1], edges[..., 2:3]))
        y0, cy = _first_and_count(_inside(centers[offset:offset + h * w:w, 1], edges[..., 1:2], edges[..., 3:4]))
        first_x.append(x0), count_x.append(cx), first_y.append(y0), count_y.append(cy)
        width.append(w), start.append(offset)
        offset += h * w
    layout = [torch.stack(t, -1).view(-1) for t in (first_x, count_x, first_y)]  # each (b * n * levels,)
    count = layout[1] * torch.stack(count_y, -1).view(-1) * mask_gt.bool().expand(-1, -1, len(levels)).reshape(-1)
    level_width, level_start = (to_device(torch.tensor(t), device) for t in (width, start))
    bounds = candidate_bounds(host_bboxes, tal.stride_val, levels, strides).view(-1)  # on the host
    per_image = bounds.view(b, -1).sum(1).tolist()

    labels_flat = gt_labels.long().view(-1)  # (b * n,)
    boxes_flat = gt_bboxes.view(-1, 4)
    i = 0
    while i < b:  # images in groups of at most CANDIDATES_PER_PASS slots (at least one image)
        j, total = i + 1, per_image[i]
        while j < b and total + per_image[j] <= CANDIDATES_PER_PASS:
            total += per_image[j]
            j += 1
        if total:
            _assign_slots(tal, decode, logits, distri, anchor_points, stride_tensor, layout, count, level_width,
                          level_start, bounds, len(levels), n, na, (i, j), total, labels_flat, boxes_flat, gt_idx, fg,
                          scores)
        i = j
    gt_idx = gt_idx.view(b, na)
    flat = gt_idx + torch.arange(b, device=device).unsqueeze(1) * n  # (b, A) index into the (b * n) boxes
    return labels_flat[flat].clamp_(0), boxes_flat[flat], scores.view(b, na), fg.view(b, na), gt_idx


def _assign_slots(tal, decode, logits, distri, anchor_points, stride_tensor, layout, count, level_width, level_start,
                  bounds, nl, n, na, images, total, labels_flat, boxes_flat, gt_idx, fg, scores) -> None:
    """Assign the anchors of images [i, j): lay out `total` candidate slots (each (image, box, level) its bound of
    them, the first `count` of which are its candidates), score them, pick, and write the results into the flat
    (b * A) gt_idx, fg, scores. No boolean indexing (it waits for the GPU): slots that are not candidates, or not
    picked, take part with neutral values."""
    i, j = images
    device = logits.device
    first_x, count_x, first_y = layout
    p0, p1 = i * n * nl, j * n * nl  # this group's (image, box, level) ranges
    slots_host = bounds[p0:p1]
    slots = to_device(slots_host, device)
    rng = torch.repeat_interleave(torch.arange(p0, p1, device=device), slots, output_size=total)  # (S,) range
    within = torch.arange(total, device=device) - (slots.cumsum(0) - slots)[rng - p0]  # slot in its range
    valid = within < count[rng]  # a candidate
    cols = count_x[rng].clamp(min=1)
    level = rng % nl
    y, x = first_y[rng] + within // cols, first_x[rng] + within % cols
    anchor = torch.where(valid, level_start[level] + y * level_width[level] + x, 0)  # (S,) index into the A anchors
    box = rng // nl  # (S,) index into the (b * n) boxes
    image = box // n
    local_box, nb = box - i * n, (j - i) * n  # (S,) index into this group's boxes

    # The metric (TaskAlignedAssigner.get_box_metrics, on the same values)
    score = logits[image, anchor, labels_flat[box]].sigmoid()
    pd = torch.empty(total, 4, dtype=boxes_flat.dtype, device=device)  # (S, 4) predicted boxes, pixels
    for s in range(0, total, DECODE_SLOTS):  # (the decode's bins and their fp32 softmax: the pass's largest buffers)
        a = anchor[s:s + DECODE_SLOTS]
        part = decode(anchor_points[a].unsqueeze(0), distri[image[s:s + DECODE_SLOTS], a].unsqueeze(0))[0]
        pd[s:s + DECODE_SLOTS] = part * stride_tensor[a]
    overlap = tal.iou_calculation(boxes_flat[box], pd).masked_fill_(~valid, 0)  # (S,) CIoU clamped at 0
    metric = (score.pow(tal.alpha) * overlap.pow(tal.beta)).masked_fill_(~valid, 0)  # (S,) fp32

    # Each box's topk candidates: sort by (box, metric descending), stable; rank within the box's run of slots
    bits = metric.view(torch.int32).long() & 0x7FFFFFFF  # a metric >= 0 orders as its bits (-0.0 as 0)
    order = torch.sort(local_box * (1 << 31) + (0x7FFFFFFF - bits), stable=True).indices
    per_box = slots_host.view(-1, nl).sum(1)  # (boxes of the group,), on the host
    box_start = to_device(per_box.cumsum(0) - per_box, device)
    rank = torch.arange(total, device=device) - box_start[local_box[order]]
    picked = torch.zeros(total, dtype=torch.bool, device=device).scatter_(0, order, rank < tal.topk)
    picked &= metric > 0  # a candidate of metric zero is a tie with every anchor outside the box: none is picked

    # Per anchor of these images: how many boxes picked it; of several, the box it overlaps most of all the boxes it
    # lies in (the first on a tie: Ultralytics' argmax over the image's boxes; a picked anchor's overlaps are not all 0)
    cell = (image - i) * na + anchor  # (S,) index into this group's (images, A)
    m = (j - i) * na
    picks = torch.zeros(m, dtype=torch.int32, device=device).scatter_add_(0, cell, picked.int())
    best = torch.zeros(m, dtype=overlap.dtype, device=device).scatter_reduce_(0, cell, overlap, "amax")
    gt = box - image * n  # (S,) the box's index in its image
    top = valid & (overlap == best[cell])
    most = torch.full((m,), n, dtype=torch.long, device=device).scatter_reduce_(0, cell, gt.where(top, n), "amin")
    only = torch.zeros(m, dtype=torch.long, device=device).scatter_reduce_(0, cell, gt.where(picked, 0), "amax")
    target = torch.where(picks == 1, only, torch.where(picks > 1, most, 0))

    # The pair each foreground anchor ends with, and the normalization over each box's final anchors
    final = (picked & (picks[cell] == 1)) | (valid & (picks[cell] > 1) & (gt == most[cell]))
    top_metric = torch.zeros(nb, dtype=metric.dtype, device=device).scatter_reduce_(
        0, local_box, metric.where(final, 0), "amax")
    top_overlap = torch.zeros(nb, dtype=overlap.dtype, device=device).scatter_reduce_(
        0, local_box, overlap.where(final, 0), "amax")
    norm = metric * top_overlap[local_box] / (top_metric[local_box] + tal.eps)

    out = slice(i * na, j * na)
    gt_idx[out] = target
    fg[out] = picks > 0
    scores[out] = torch.zeros(m, dtype=scores.dtype, device=device).scatter_reduce_(
        0, cell, norm.float().where(final, 0), "amax")


def check_contract() -> None:
    """Raise RuntimeError if Ultralytics' assigner no longer assigns as `assign` does: both run on a small batch with
    boxes that share anchors, and must agree on every anchor of nonzero target score."""
    from ultralytics.utils.loss import v8DetectionLoss

    g = torch.Generator().manual_seed(0)
    levels, nc, b, n = [(16, 16), (8, 8), (4, 4)], 5, 3, 6
    feats = [torch.zeros(b, 1, h, w) for h, w in levels]
    from ultralytics.utils.tal import make_anchors

    anchor_points, stride_tensor = make_anchors(feats, torch.tensor([8.0, 16.0, 32.0]), 0.5)
    na = anchor_points.shape[0]
    logits = torch.randn(b, na, nc, generator=g)
    distri = torch.randn(b, na, 64, generator=g) * 3
    xy = torch.rand(b, n, 2, generator=g) * 100 + 14
    wh = torch.rand(b, n, 2, generator=g) * 60 + 4
    gt_bboxes = torch.cat((xy - wh / 2, xy + wh / 2), -1)
    gt_bboxes[-1, 4:] = 0  # padding rows
    mask_gt = gt_bboxes.sum(2, keepdim=True).gt_(0.0)
    gt_labels = torch.randint(0, nc, (b, n, 1), generator=g).float()

    def decode(points, dist):
        return v8DetectionLoss.bbox_decode(SimpleNamespace(use_dfl=True, proj=torch.arange(16.0)), points, dist)

    tal = TaskAlignedAssigner(topk=10, num_classes=nc, alpha=0.5, beta=6.0, stride=[8, 16, 32])
    labels, boxes, scores, _, idx = tal(logits.sigmoid(), decode(anchor_points, distri) * stride_tensor,
                                         anchor_points * stride_tensor, gt_labels, gt_bboxes, mask_gt)
    ours = assign(tal, decode, logits, distri, anchor_points, stride_tensor, levels, [8.0, 16.0, 32.0], gt_labels,
                  gt_bboxes, mask_gt, gt_bboxes)
    scored = scores.sum(2) > 0
    require({
        "TaskAlignedAssigner keeps topk2 == topk by default": tal.topk2 == tal.topk,
        "TaskAlignedAssigner's assignment (anchors of nonzero score: box, label, target box, score) is detector.glue."
        "assigner.assign's": bool(scored.sum() > 20) and torch.equal(scored, ours[2] > 0)
        and torch.equal(idx[scored], ours[4][scored]) and torch.equal(labels[scored], ours[0][scored])
        and torch.equal(boxes[scored], ours[1][scored]) and torch.equal(scores.sum(2)[scored], ours[2][scored]),
    }, "assigner")
