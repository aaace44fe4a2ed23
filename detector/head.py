"""A Detect head whose finest level predicts on a grid twice as fine as its features: anchors at stride 4 from the
stride-8 (P3) features, without a stride-4 neck.

Why: on the hard-hat split (small boxes, median 24 px at imgsz 320) every design that beat YOLO11n did it with a
stride-4 detection level, and paid for the 160x160 feature maps it runs on (docs/accuracy.md). A stride-4 level
brings two things: finer features, and finer anchors (four times as many candidate points per small box, with box
sides regressed in 4-px instead of 8-px DFL bins). Fusing stride-4 features into P3 without finer anchors (-p2f) did
not pay; this head tests the other half at about YOLO11n's cost: the level's last 1x1 convs predict a 2x2 sub-grid
per cell (4x their outputs), and a pixel shuffle lays those out at half the level's stride. Everything after it is
Ultralytics' own: anchors, strides, the loss and export read the level's grid from the shape of its output.

Shapes (level 0 at imgsz 640, P3 features c x 80 x 80):
    box branch   (b, c, 80, 80) -> 3x3, 3x3 -> 1x1 to 4 * 4 * reg_max -> pixel shuffle -> (b, 4 * reg_max, 160, 160)
    class branch (b, c, 80, 80) -> ...      -> 1x1 to 4 * nc          -> pixel shuffle -> (b, nc, 160, 160)
so Detect's `stride` reads [4, 16, 32] for a P3/P4/P5 model, and 160^2 + 40^2 + 20^2 = 27600 anchors (8400 in YOLO11n).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from ultralytics.nn.modules.head import Detect

SUBGRID = 2  # sub-cells per side on the finest level


class SubgridDetect(Detect):
    """Ultralytics' Detect with its first (finest) level predicting at half that level's stride (see module doc).
    Same arguments as Detect; same outputs, with level 0 on a SUBGRID-times finer grid.

    Level 0's last 1x1 convs are plain `nn.Conv2d`s with SUBGRID^2 times the outputs; channel k * SUBGRID^2 +
    i * SUBGRID + j is output k at sub-cell (row i, column j), pixel shuffle's layout. The shuffle is applied here, not
    in the conv, so that Ultralytics' `load()`, which rebuilds a class branch's last conv as a plain Conv2d of the same
    width when a checkpoint's class count differs, keeps a working head."""

    def __init__(self, nc: int = 80, reg_max: int = 16, end2end: bool = False, ch: list[int] | tuple[int, ...] = ()):
        super().__init__(nc, reg_max, end2end, ch)
        for branches in (self.cv2, self.cv3, getattr(self, "one2one_cv2", None), getattr(self, "one2one_cv3", None)):
            if branches is not None:
                last = branches[0][-1]
                branches[0][-1] = nn.Conv2d(last.in_channels, last.out_channels * SUBGRID**2, 1)

    def forward_head(self, x: list[torch.Tensor], box_head: nn.Module | None = None,
                     cls_head: nn.Module | None = None) -> dict:
        """Detect.forward_head, with level 0's grid the sub-grid: "feats"[0] is level 0's box map, whose shape (not its
        values) Ultralytics reads for anchors, strides and the loss's image size."""
        if box_head is None or cls_head is None:  # for fused inference, as Detect
            return {}
        bs = x[0].shape[0]
        # (b, 4 * reg_max, h_i, w_i) and (b, nc, h_i, w_i); level 0 at SUBGRID h_0 x SUBGRID w_0
        boxes = [box_head[i](x[i]) for i in range(self.nl)]
        scores = [cls_head[i](x[i]) for i in range(self.nl)]
        boxes[0], scores[0] = F.pixel_shuffle(boxes[0], SUBGRID), F.pixel_shuffle(scores[0], SUBGRID)
        return {"boxes": torch.cat([b.view(bs, 4 * self.reg_max, -1) for b in boxes], dim=-1),
                "scores": torch.cat([s.view(bs, self.nc, -1) for s in scores], dim=-1),
                "feats": [boxes[0], *x[1:]]}

    def bias_init(self):
        """Detect's priors, with level 0's class prior set on every sub-cell (Detect sets the first nc channels of the
        last conv, which here are sub-cells of the first nc / SUBGRID^2 classes)."""
        super().bias_init()
        prior = math.log(5 / self.nc / (640 / float(self.stride[0])) ** 2)  # ~0.01 objects per anchor, as Detect
        for branches in (self.cv3, getattr(self, "one2one_cv3", None)):
            if branches is not None:
                branches[0][-1].bias.data[:] = prior
