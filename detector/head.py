"""A Detect head whose finest level predicts on a grid twice as fine as its features: anchors at stride 4 from the
stride-8 (P3) features, without a stride-4 neck.

Why: on the hard-hat split (small boxes, median 24 px at imgsz 320) every design that beat YOLO11n did it with a
stride-4 detection level, and paid for the 160x160 feature maps it runs on (docs/accuracy.md). A stride-4 level
brings two things: finer features, and finer anchors (four times as many candidate points per small box, with box
sides regressed in 4-px instead of 8-px DFL bins). Fusing stride-4 features into P3 without finer anchors (-p2f) did
not pay; this head gives the other half at about YOLO11n's cost: the level's last 1x1 convs predict a 2x2 sub-grid
per cell (4x their outputs), laid out at half the level's stride. Everything after it is Ultralytics' own: anchors,
strides and the loss read the level's grid from the shape of its output.

Shapes (level 0 at imgsz 640, P3 features c x 80 x 80):
    box branch   (b, c, 80, 80) -> 3x3, 3x3 -> 1x1 to 4 x 4 * reg_max -> sub-grid -> (b, 4 * reg_max, 160, 160)
    class branch (b, c, 80, 80) -> ...      -> 1x1 to 4 x nc          -> sub-grid -> (b, nc, 160, 160)
so Detect's `stride` reads [4, 16, 32] for a P3/P4/P5 model, and 160^2 + 40^2 + 20^2 = 27600 anchors (8400 in YOLO11n).

Decoding four times the P3 anchors is this head's cost, so two steps of it are done differently from Ultralytics'
Detect, with the same results (tests/test_head.py):
- the sub-grid layout: channel s * k + o of a level-0 last conv (k outputs) is output o at sub-cell s = i * 2 + j
  (row i, column j of its cell). Laying that out row-major at stride 4 moves whole k-channel pixels in a
  channels-last tensor (2 ms on one CPU thread, where torch's pixel shuffle of the transposed layout took 19), and an
  exported graph skips it: anchors in sub-cell-major order decode the same boxes, and no loss reads an export;
- the DFL: the softmax over each side's bins runs over the last axis (`LastAxisDFL`); ONNX Runtime runs Ultralytics'
  middle-axis softmax through transposes (28 ms against 5 ms on 27600 anchors, one CPU thread).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from ultralytics.nn.modules.head import Detect
from ultralytics.utils.tal import make_anchors

SUBGRID = 2  # sub-cells per side on the finest level
CELLS = SUBGRID**2


class LastAxisDFL(nn.Module):
    """Ultralytics' DFL (the expected bin of a softmax over `c1` bins, per box side) with the softmax taken over the
    last axis. (b, 4 * c1, a) -> (b, 4, a). No parameters: the bin values are a buffer, not saved."""

    def __init__(self, c1: int = 16):
        super().__init__()
        self.c1 = c1
        self.register_buffer("bins", torch.arange(c1, dtype=torch.float).view(c1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, a = x.shape
        p = x.view(b, 4, self.c1, a).transpose(2, 3).softmax(-1)  # (b, 4, a, c1)
        return (p @ self.bins.to(p.dtype)).view(b, 4, a)


def to_subgrid(y: torch.Tensor, k: int) -> torch.Tensor:
    """(b, CELLS * k, h, w), channel s * k + o -> (b, k, SUBGRID * h, SUBGRID * w), row-major on the finer grid. Keeps
    the memory format of `y` (channels-last or not) and copies along its contiguous axis."""
    b, _, h, w = y.shape
    if y.is_contiguous():  # NCHW: (b, i, j, o, y, x) -> (b, o, y, i, x, j)
        return y.view(b, SUBGRID, SUBGRID, k, h, w).permute(0, 3, 4, 1, 5, 2).reshape(b, k, SUBGRID * h, SUBGRID * w)
    hwc = y.permute(0, 2, 3, 1).reshape(b, h, w, SUBGRID, SUBGRID, k)  # channels-last: (b, y, x, i, j, o)
    return hwc.permute(0, 1, 3, 2, 4, 5).reshape(b, SUBGRID * h, SUBGRID * w, k).permute(0, 3, 1, 2)


class SubgridDetect(Detect):
    """Ultralytics' Detect with its first (finest) level predicting at half that level's stride (see module doc).
    Same arguments as Detect; same outputs, with level 0 on a SUBGRID-times finer grid.

    Level 0's last 1x1 convs are plain `nn.Conv2d`s with CELLS times the outputs. The layout is applied here, not in
    the conv, so that Ultralytics' `load()`, which rebuilds a class branch's last conv as a plain Conv2d of the same
    width when a checkpoint's class count differs, keeps a working head."""

    def __init__(self, nc: int = 80, reg_max: int = 16, end2end: bool = False, ch: list[int] | tuple[int, ...] = ()):
        super().__init__(nc, reg_max, end2end, ch)
        for branches in (self.cv2, self.cv3, getattr(self, "one2one_cv2", None), getattr(self, "one2one_cv3", None)):
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
            boxes[0], scores[0] = (y.reshape(bs, CELLS, -1, y.shape[2] * y.shape[3]).transpose(1, 2)
                                   for y in (boxes[0], scores[0]))
            feats = x
        else:
            boxes[0], scores[0] = to_subgrid(boxes[0], 4 * self.reg_max), to_subgrid(scores[0], self.nc)
            feats = [boxes[0], *x[1:]]
        return {"boxes": torch.cat([b.reshape(bs, 4 * self.reg_max, -1) for b in boxes], dim=-1),
                "scores": torch.cat([s.reshape(bs, self.nc, -1) for s in scores], dim=-1),
                "feats": feats}

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
