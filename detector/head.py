"""A Detect head whose finest level predicts on a grid twice as fine as its features: anchors at stride 4 from the
stride-8 (P3) features, without a stride-4 neck.

Why: on small objects a stride-4 detection level pays (finer anchors: four times as many candidate points per small
box, box sides regressed in 4-px instead of 8-px DFL bins), but its 160x160 feature maps cost. This head gets the
finer anchors without them: the level's last 1x1 convs predict a 2x2 sub-grid per cell (4x their outputs), laid out
at half the level's stride. Everything after it is Ultralytics' own: anchors, strides and the loss read the level's
grid from the shape of its output. The evidence: docs/models.md.

Shapes (level 0 at imgsz 640, P3 features c x 80 x 80):
    box branch   (b, c, 80, 80) -> 3x3, 3x3 -> 1x1 to 4 x 4 * reg_max -> sub-grid -> (b, 4 * reg_max, 160, 160)
    class branch (b, c, 80, 80) -> ...      -> 1x1 to 4 x nc          -> sub-grid -> (b, nc, 160, 160)
so Detect's `stride` reads [4, 16, 32] for a P3/P4/P5 model, and 160^2 + 40^2 + 20^2 = 27600 anchors (8400 in YOLO11n).
`SubgridThinDetect`, the default's head (models/yolo11-an.yaml), narrows the box branch's 3x3 convs to pay for it.

Decoding four times the P3 anchors is this head's cost, so three steps of it are done differently from Ultralytics'
Detect, with the same results (tests/test_head.py):
- the sub-grid layout: channel s * k + o of a level-0 last conv (k outputs) is output o at sub-cell s = i * 2 + j
  (row i, column j of its cell). `flatten_levels` writes it, row-major at stride 4, and the other levels straight into
  one (b, anchors, k) buffer: from channels-last maps whole k-channel pixels move, and Ultralytics' loss, which wants
  (b, anchors, k), copies nothing more. An exported graph skips the layout: anchors in sub-cell-major order decode the
  same boxes, and no loss reads an export;
- the DFL: its softmax runs over the last axis of (b, anchors, 4, reg_max) (`LastAxisDFL`), contiguous in PyTorch;
  ONNX Runtime runs Ultralytics' middle-axis softmax through transposes (28 ms against 5 ms on 27600 anchors);
- the class probabilities are written into the output in place rather than concatenated.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from ultralytics.nn.modules.conv import Conv
from ultralytics.nn.modules.head import Detect
from ultralytics.utils.tal import make_anchors

SUBGRID = 2  # sub-cells per side on the finest level
CELLS = SUBGRID**2
THIN_BOX_WIDTH = 32  # SubgridThinDetect's box-branch width floor: what Detect gives 8 DFL bins (4 * 8)


class LastAxisDFL(nn.Module):
    """Ultralytics' DFL (the expected bin of a softmax over `c1` bins, per box side) with the softmax over the last
    axis of (b, anchors, 4, c1). (b, 4 * c1, a) -> (b, 4, a). No parameters: the bin values are a buffer, not saved.

    In PyTorch the head's maps are (b, anchors, 4 * c1) in memory (`flatten_levels`), so the softmax runs over
    contiguous rows and nothing is copied; an export's are (b, 4 * c1, anchors), where one transpose makes the last
    axis the bins. ONNX Runtime runs Ultralytics' middle-axis softmax through transposes (28 ms against 5 ms on 27600
    anchors, one CPU thread)."""

    def __init__(self, c1: int = 16):
        super().__init__()
        self.c1 = c1
        self.register_buffer("bins", torch.arange(c1, dtype=torch.float).view(c1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, a = x.shape
        p = x.transpose(1, 2).reshape(b, a, 4, self.c1).softmax(-1)  # (b, a, 4, c1)
        return (p @ self.bins.to(p.dtype)).view(b, a, 4).transpose(1, 2)


def flatten_levels(ys: list[torch.Tensor], k: int) -> torch.Tensor:
    """Detect's per-level maps flattened and concatenated, level 0 laid out on its finer grid:
    (b, CELLS * k, h0, w0), (b, k, h1, w1), ... -> (b, k, CELLS * h0 * w0 + h1 * w1 + ...), where level 0's channel
    s * k + o lands at (SUBGRID * y + i, SUBGRID * x + j) of a row-major SUBGRID * h0 x SUBGRID * w0 grid, s = i *
    SUBGRID + j.

    The result is a transposed view of (b, anchors, k) memory, each level copied once straight into it. Detect's
    concatenation of (b, k, anchors) maps would write level 0 twice (its layout, then the concatenation), and
    Ultralytics' loss transposes to (b, anchors, k) and makes that contiguous, which then copies nothing. From
    channels-last maps (Ultralytics trains in channels-last on CUDA and predicts in it on x86 CPUs) every copy moves
    whole k-channel pixels: on the GPU a tie with the plain concatenation, on the CPU 1-15% less time."""
    b, _, h, w = ys[0].shape
    n0 = CELLS * h * w
    out = ys[0].new_empty(b, n0 + sum(y.shape[2] * y.shape[3] for y in ys[1:]), k).transpose(1, 2)
    level0 = out[..., :n0].unflatten(2, (h, SUBGRID, w, SUBGRID))  # (b, o, y, i, x, j)
    level0.copy_(ys[0].unflatten(1, (SUBGRID, SUBGRID, k)).permute(0, 3, 4, 1, 5, 2))
    start = n0
    for y in ys[1:]:
        end = start + y.shape[2] * y.shape[3]
        out[..., start:end].unflatten(2, y.shape[2:]).copy_(y)
        start = end
    return out


class SubgridDetect(Detect):
    """Ultralytics' Detect with its first (finest) level predicting at half that level's stride (see module doc).
    Same arguments as Detect; same outputs, with level 0 on a SUBGRID-times finer grid.

    Level 0's last 1x1 convs are plain `nn.Conv2d`s with CELLS times the outputs. The layout is applied here, not in
    the conv, so that Ultralytics' `load()`, which rebuilds a class branch's last conv as a plain Conv2d of the same
    width when a checkpoint's class count differs, keeps a working head."""

    thin_box = False  # True: the box branch's 3x3 convs as wide as with 8 bins, still 16 bins (SubgridThinDetect)

    def __init__(self, nc: int = 80, reg_max: int = 16, end2end: bool = False, ch: list[int] | tuple[int, ...] = ()):
        super().__init__(nc, reg_max, end2end, ch)
        if self.thin_box:  # Detect's box branch, max(16, ch[0] // 4, THIN_BOX_WIDTH) wide instead of (..., 4 * reg_max)
            c2 = max(16, ch[0] // 4, THIN_BOX_WIDTH)
            self.cv2 = nn.ModuleList(
                nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1)) for x in ch)
            if end2end:
                self.one2one_cv2 = copy.deepcopy(self.cv2)
        for branches in (getattr(self, name, None) for name in ("cv2", "cv3", "one2one_cv2", "one2one_cv3")):
            if branches is not None:
                last = branches[0][-1]
                branches[0][-1] = nn.Conv2d(last.in_channels, last.out_channels * CELLS, 1)
        if reg_max > 1:
            self.dfl = LastAxisDFL(reg_max)

    def forward_head(self, x: list[torch.Tensor], box_head: nn.Module | None = None,
                     cls_head: nn.Module | None = None) -> dict:
        """Detect.forward_head with level 0 on the sub-grid. Training and evaluation lay it out row-major on the finer
        grid, as Ultralytics' anchors and loss expect; "feats"[0] is level 0's box map, whose shape (not its values)
        they read. An export (`self.export`) keeps it sub-cell-major and "feats" the input features, for
        `_get_decode_boxes`."""
        if box_head is None or cls_head is None:  # for fused inference, as Detect
            return {}
        bs = x[0].shape[0]
        boxes = [box_head[i](x[i]) for i in range(self.nl)]  # (b, 4 * reg_max, h_i, w_i); level 0: CELLS times it
        scores = [cls_head[i](x[i]) for i in range(self.nl)]  # (b, nc, h_i, w_i); level 0: CELLS times it
        if self.export:  # (b, CELLS * k, h, w) -> (b, k, CELLS * h * w): sub-cell-major, one transpose
            hw = x[0].shape[2] * x[0].shape[3]
            boxes[0] = boxes[0].reshape(bs, CELLS, -1, hw).transpose(1, 2)
            scores[0] = scores[0].reshape(bs, CELLS, -1, hw).transpose(1, 2)
            return {"boxes": torch.cat([b.reshape(bs, 4 * self.reg_max, -1) for b in boxes], dim=-1),
                    "scores": torch.cat([s.reshape(bs, self.nc, -1) for s in scores], dim=-1), "feats": x}
        boxes, scores = flatten_levels(boxes, 4 * self.reg_max), flatten_levels(scores, self.nc)
        h, w = x[0].shape[2:]
        level0 = boxes[..., :CELLS * h * w].unflatten(2, (SUBGRID * h, SUBGRID * w))  # a view, for its shape
        return {"boxes": boxes, "scores": scores, "feats": [level0, *x[1:]]}

    def _inference(self, x: dict) -> torch.Tensor:
        """Detect's (b, 4 + nc, anchors) output: decoded xywh boxes, then class probabilities. Outside an export the
        probabilities are written straight into the output (Detect concatenates a copy of them)."""
        scores = x["scores"]
        if self.export or scores.requires_grad:  # (autograd: Detect's concatenation)
            return super()._inference(x)
        b, _, n = scores.shape
        y = scores.new_empty(b, n, 4 + self.nc).transpose(1, 2)  # (b, anchors, 4 + nc) memory, as the scores'
        y[:, 4:].copy_(scores).sigmoid_()  # in place, no second scores-sized tensor (compile takes no strided out=)
        y[:, :4] = self._get_decode_boxes(x)
        return y

    def _get_decode_boxes(self, x: dict) -> torch.Tensor:
        """Detect's decode; in an export, with level 0's anchors in the sub-cell-major order `forward_head` gives."""
        if not self.export:
            return super()._get_decode_boxes(x)
        key = ("sub-cell-major", x["feats"][0].shape)  # never equal to the key Detect caches (a shape)
        if self.dynamic or self.shape != key:
            self.anchors, self.strides = (a.transpose(0, 1) for a in self._subcell_major_anchors(x["feats"]))
            self.shape = key
        return self.decode_bboxes(self.dfl(x["boxes"]), self.anchors.unsqueeze(0)) * self.strides

    def _subcell_major_anchors(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Anchor points (n, 2), in grid units of their level's stride, and strides (n, 1), as make_anchors gives for
        `feats` (level 0 at its h x w cells), with level 0's points replaced by its sub-cells': s = 0..CELLS-1 in
        turn, each over the h x w cells."""
        anchors, strides = make_anchors(feats, self.stride, 0.5)
        n0 = feats[0].shape[2] * feats[0].shape[3]
        centres = anchors[:n0] * SUBGRID  # cell (x, y) -> (2x + 1, 2y + 1) on the finer grid
        first = torch.cat([centres + centres.new_tensor([j + 0.5 - SUBGRID / 2, i + 0.5 - SUBGRID / 2])
                           for i in range(SUBGRID) for j in range(SUBGRID)])
        return torch.cat((first, anchors[n0:])), torch.cat((strides[:n0].repeat(CELLS, 1), strides[n0:]))

    def bias_init(self):
        """Detect's priors, with level 0's class prior set on every sub-cell (Detect sets the first nc channels of the
        last conv, which here are the first sub-cell's)."""
        super().bias_init()
        prior = math.log(5 / self.nc / (640 / float(self.stride[0])) ** 2)  # ~0.01 objects per anchor, as Detect
        for branches in (self.cv3, getattr(self, "one2one_cv3", None)):
            if branches is not None:
                branches[0][-1].bias.data[:] = prior


class SubgridThinDetect(SubgridDetect):
    """SubgridDetect with a thinner box branch, the default's head: its two 3x3 convs per level are max(16, ch[0] // 4,
    THIN_BOX_WIDTH) wide (32 at the n and s scales; m-x unchanged) instead of Detect's max(16, ch[0] // 4, 4 * reg_max)
    (64), while the 16 bins (and the 960-px box cap at 640) stay. Why: Detect's box-branch 3x3 convs are 0.72 G of
    YOLO11n's 3.3 G multiply-adds at 640, most at P3; at 0.28 G they pay for the sub-grid's larger last convs (6.1
    GFLOPs at 80 classes, against YOLO11n's 6.7 and SubgridDetect's 7.1), as accurate (docs/models.md)."""

    thin_box = True
