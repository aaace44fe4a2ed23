"""A Detect head whose finest level predicts on a grid twice as fine as its features: anchors at stride 4 from the
stride-8 (P3) features, without a stride-4 neck. The level's last 1x1 convs predict a 2x2 sub-grid per cell (4x their
outputs), laid out at half the level's stride; Ultralytics' anchors, strides and loss read the finer grid from the
output's shape. At 640 with P3/P4/P5: strides [4, 16, 32], 160^2 + 40^2 + 20^2 = 27600 anchors (YOLO11n: 8400).
`SubgridThinDetect`, the default's head (models/yolo11-an.yaml), narrows the box branch's 3x3 convs to pay for it.

The head's outputs are Detect's, computed with fewer copies of its 27600-anchor tensors (tests/test_head.py).
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
# Export formats (Ultralytics' `format=`) whose runtime does the DFL's softmax faster over the bins' axis read in place
# than after a transposing copy: on 27,600 anchors, 2 CPU threads, OpenVINO 2026.4 1.3 against 4.3 ms; ONNX Runtime
# 1.32 the other way, 4.3 against 3.6 ms (docs/benchmarks.md#openvino-and-the-dfl).
MIDDLE_AXIS_DFL_FORMATS = frozenset({"openvino"})


class LastAxisDFL(nn.Module):
    """Ultralytics' DFL (the expected bin of a softmax over `c1` bins, per box side), (b, 4 * c1, a) -> (b, 4, a),
    with the softmax along the axis the input's memory makes contiguous: no copy of the anchors' bins. No parameters
    (the bin values are a buffer, not saved). An export takes the form its runtime runs faster
    (MIDDLE_AXIS_DFL_FORMATS)."""

    def __init__(self, c1: int = 16):
        super().__init__()
        self.c1 = c1
        self.register_buffer("bins", torch.arange(c1, dtype=torch.float).view(c1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.over_last_axis(x) if x.stride(1) == 1 else self.over_middle_axis(x)

    def over_last_axis(self, x: torch.Tensor) -> torch.Tensor:
        """From (b, anchors, 4 * c1) memory (from other memory, after one transposing copy)."""
        b, _, a = x.shape
        p = x.transpose(1, 2).reshape(b, a, 4, self.c1).softmax(-1)  # (b, a, 4, c1)
        return (p @ self.bins.to(p.dtype)).view(b, a, 4).transpose(1, 2)

    def over_middle_axis(self, x: torch.Tensor) -> torch.Tensor:
        """From (b, 4 * c1, anchors) memory, read in place: softmax over the bins' axis, then a (1, c1) product."""
        b, _, a = x.shape
        p = x.view(b, 4, self.c1, a).softmax(2)  # (b, 4, c1, a)
        return (self.bins.to(p.dtype).view(1, self.c1) @ p).view(b, 4, a)


def _pixels_first(y: torch.Tensor) -> bool:
    """A (b, c, h, w) map in channels-last memory (each pixel's channels contiguous)."""
    return y.stride(1) == 1 and y.shape[2] * y.shape[3] > 1


def flatten_levels(ys: list[torch.Tensor], k: int, pixels_first: bool | None = None) -> torch.Tensor:
    """Detect's per-level maps flattened and concatenated, level 0 laid out on its finer grid:
    (b, CELLS * k, h0, w0), (b, k, h1, w1), ... -> (b, k, CELLS * h0 * w0 + h1 * w1 + ...), where level 0's channel
    s * k + o lands at (SUBGRID * y + i, SUBGRID * x + j) of a row-major SUBGRID * h0 x SUBGRID * w0 grid, s = i *
    SUBGRID + j. Each level is copied once into the result, whose memory follows the maps' unless `pixels_first`
    says: (b, anchors, k) from channels-last maps (a transposed view; whole k-channel pixels move, and Ultralytics'
    loss, which wants that layout, copies nothing more), (b, k, anchors) from NCHW maps (rows move).
    With autograd, the backward is one copy of level 0's gradient back (`_FlattenLevels`)."""
    if pixels_first is None:
        pixels_first = _pixels_first(ys[0])
    if torch.is_grad_enabled() and any(y.requires_grad for y in ys):
        return _FlattenLevels.apply(k, pixels_first, *ys)
    return _flatten_into(ys, k, pixels_first)


class _FlattenLevels(torch.autograd.Function):
    """flatten_levels for autograd. Written as in-place copies into slices of one tensor, autograd's backward would
    copy the whole (b, k, anchors) gradient once per level (CopySlices); here level 0's gradient slice is copied back
    into its map's layout once and the other levels' are views of the gradient."""

    @staticmethod
    def forward(ctx, k: int, pixels_first: bool, *ys: torch.Tensor) -> torch.Tensor:
        ctx.k = k
        ctx.level0 = (ys[0].shape, _pixels_first(ys[0]))
        ctx.sizes = [y.shape[2:] for y in ys[1:]]
        return _flatten_into(ys, k, pixels_first)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (b, c, h, w), channels_last = ctx.level0
        n0 = c // ctx.k * h * w
        g0 = torch.empty(b, c, h, w, dtype=grad.dtype, device=grad.device,
                         memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        copy_level0(grad[..., :n0], g0, ctx.k, to_fine=False)
        grads, start = [g0], n0
        for size in ctx.sizes:
            end = start + size[0] * size[1]
            grads.append(grad[..., start:end].unflatten(2, size))
            start = end
        return None, None, *grads


def copy_level0(fine: torch.Tensor, cells: torch.Tensor, k: int, to_fine: bool = True) -> None:
    """Level 0 between its maps' layout and the finer grid's: fine (b, k, SUBGRID * h * SUBGRID * w), a view of the
    flattened levels, and cells (b, CELLS * k, h, w), where channel s * k + o of pixel (y, x) is output o at fine-grid
    pixel (SUBGRID * y + i, SUBGRID * x + j), s = i * SUBGRID + j. Copies cells into fine (or back: to_fine=False).

    Where both keep each pixel's outputs contiguous (channels-last maps, pixels-first rows), the values move as 8-byte
    words: a strided copy's cost is per element, not per byte (one H100, b64@640 fp16, 80 classes: 0.41 -> 0.21 ms
    each way; the CPU: no change). The words are a sub-cell row's SUBGRID * k values, contiguous on both sides where
    the rows hold k values each, else each anchor's k values (rows with room for more, as the output's). Other layouts
    (or sizes and strides Tensor.view(dtype) refuses), and copies autograd records (a dtype view has no gradient), copy
    element by element."""
    b, _, h, w = cells.shape
    recorded = torch.is_grad_enabled() and (fine.requires_grad or cells.requires_grad)
    if fine.stride(1) == 1 and cells.stride(1) == 1 and not recorded:
        for run in ((SUBGRID * k,), (SUBGRID, k)):  # a sub-cell row (j, o) of values, or (j, each anchor's o)
            try:
                words_cells = cells.permute(0, 2, 3, 1).unflatten(3, (SUBGRID, *run)).view(torch.int64)  # (b,y,x,i,..)
                words_fine = fine.transpose(1, 2).view(b, h, SUBGRID, w, *run).view(torch.int64)  # (b, y, i, x, ..)
            except RuntimeError:  # not a whole number of words, or strides not aligned to words
                continue
            order = (0, 1, 3, 2, *range(4, words_cells.dim()))  # (b, y, x, i, ..) <-> (b, y, i, x, ..)
            if to_fine:
                words_fine.copy_(words_cells.permute(order))
            else:
                words_cells.permute(order).copy_(words_fine)
            return
    fine = fine.unflatten(2, (h, SUBGRID, w, SUBGRID))  # (b, o, y, i, x, j)
    cells = cells.unflatten(1, (SUBGRID, SUBGRID, k)).permute(0, 3, 4, 1, 5, 2)  # (b, o, y, i, x, j)
    if to_fine:
        fine.copy_(cells)
    else:
        cells.copy_(fine)


def _flatten_into(ys: list[torch.Tensor], k: int, pixels_first: bool, out: torch.Tensor | None = None) -> torch.Tensor:
    """flatten_levels' copies (see there), into `out` (b, k, anchors) if given."""
    b, _, h, w = ys[0].shape
    n = CELLS * h * w + sum(y.shape[2] * y.shape[3] for y in ys[1:])
    if out is None:
        out = ys[0].new_empty(b, n, k).transpose(1, 2) if pixels_first else ys[0].new_empty(b, k, n)
    n0 = CELLS * h * w
    copy_level0(out[..., :n0], ys[0], k)
    start = n0
    for y in ys[1:]:
        end = start + y.shape[2] * y.shape[3]
        out[..., start:end].unflatten(2, y.shape[2:]).copy_(y)
        start = end
    return out


class SubgridDetect(Detect):
    """Ultralytics' Detect (same arguments, same outputs) with level 0 on a SUBGRID-times finer grid. Level 0's last
    1x1 convs are plain `nn.Conv2d`s with CELLS times the outputs, laid out here rather than in the conv, so that
    Ultralytics' `load()` (which rebuilds a class branch's last conv for a new class count) keeps a working head."""

    thin_box = False  # True: the box branch's 3x3 convs as wide as with 8 bins, still 16 bins (SubgridThinDetect)
    level0_output_major = False  # level 0's last convs in the export's channel order (reorder_level0_for_export)

    def __init__(self, nc: int = 80, reg_max: int = 16, end2end: bool = False, ch: list[int] | tuple[int, ...] = ()):
        super().__init__(nc, reg_max, end2end, ch)
        if self.thin_box:  # Detect's box branch, max(16, ch[0] // 4, THIN_BOX_WIDTH) wide instead of (..., 4 * reg_max)
            c2 = max(16, ch[0] // 4, THIN_BOX_WIDTH)
            self.cv2 = nn.ModuleList(
                nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1)) for x in ch)
            if end2end:
                self.one2one_cv2 = copy.deepcopy(self.cv2)
        for branches in self._branches():
            last = branches[0][-1]
            branches[0][-1] = nn.Conv2d(last.in_channels, last.out_channels * CELLS, 1)
        if reg_max > 1:
            self.dfl = LastAxisDFL(reg_max)

    def forward_head(self, x: list[torch.Tensor], box_head: nn.Module | None = None,
                     cls_head: nn.Module | None = None) -> dict:
        """Detect.forward_head with level 0 row-major on the finer grid ("feats"[0]: a view of its shape, which
        Ultralytics' anchors and loss read). An export lays level 0 out sub-cell-major, all of sub-cell s = i * SUBGRID
        + j's anchors, then s + 1's, with its own anchors (`_get_decode_boxes`): a reshape of the last convs' output
        once `reorder_level0_for_export` has run (Ultralytics' exporter's copy, through detector.glue.exporter), else
        one transpose."""
        if box_head is None or cls_head is None:  # for fused inference, as Detect
            return {}
        bs = x[0].shape[0]
        boxes = [box_head[i](x[i]) for i in range(self.nl)]  # (b, 4 * reg_max, h_i, w_i); level 0: CELLS times it
        scores = [cls_head[i](x[i]) for i in range(self.nl)]  # (b, nc, h_i, w_i); level 0: CELLS times it
        if self.export:  # level 0 (b, CELLS * k, h, w) -> (b, k, CELLS * h * w), sub-cell-major
            if not self.level0_output_major:  # channel s * k + o: one transpose
                hw = x[0].shape[2] * x[0].shape[3]
                boxes[0] = boxes[0].reshape(bs, CELLS, -1, hw).transpose(1, 2)
                scores[0] = scores[0].reshape(bs, CELLS, -1, hw).transpose(1, 2)
            # (output-major, channel o * CELLS + s: the reshape below is the layout)
            return {"boxes": torch.cat([b.reshape(bs, 4 * self.reg_max, -1) for b in boxes], dim=-1),
                    "scores": torch.cat([s.reshape(bs, self.nc, -1) for s in scores], dim=-1), "feats": x}
        if self.level0_output_major:
            raise RuntimeError("this SubgridDetect head was reordered for an export (reorder_level0_for_export): it "
                               "computes export outputs only; reorder a copy, not the model you train or predict with")
        # The boxes (b, anchors, 4 * reg_max) in memory whatever the maps' format: the DFL's softmax then runs over
        # contiguous bins (on one H100 at b64@640 fp16, over the anchors' axis of NCHW maps it took 0.95 ms)
        boxes = flatten_levels(boxes, 4 * self.reg_max, pixels_first=True)
        h, w = x[0].shape[2:]
        level0 = boxes[..., :CELLS * h * w].unflatten(2, (SUBGRID * h, SUBGRID * w))  # a view, for its shape
        if self.training or not _pixels_first(scores[0]) or (torch.is_grad_enabled() and scores[0].requires_grad):
            return {"boxes": boxes, "scores": flatten_levels(scores, self.nc), "feats": [level0, *x[1:]]}
        # Inference from channels-last maps: the class logits go straight into the rows of Detect's output, (b,
        # anchors, 4 + nc) memory, so that `_inference` takes their sigmoid in one contiguous (vectorized) pass; a
        # sigmoid into the rows' last nc columns is a strided store (one H100, b64@640 fp16: 0.43 ms against YOLO11n's
        # 0.06 over a third of the anchors). "scores" is the logits' view, as everyone else reads them.
        rows = scores[0].new_empty(bs, boxes.shape[2], 4 + self.nc)
        logits = _flatten_into(scores, self.nc, pixels_first=True, out=rows[..., 4:].transpose(1, 2))
        return {"boxes": boxes, "scores": logits, "feats": [level0, *x[1:]], "output_rows": rows}

    def reorder_level0_for_export(self) -> None:
        """Put level 0's last convs' output channels in the export's order: output-major, channel o * CELLS + s (their
        own order is sub-cell-major, s * k + o, which `flatten_levels` reads), so the export's level 0 is a reshape of
        their output rather than a transpose (the default at 640 on 2 CPU threads: about 1.5% of OpenVINO's and ONNX
        Runtime's forward). The convs stay the modules they were, so OpenVINO's int8 export still quantizes them
        (Ultralytics keeps only ops of the head's own scope in float). In place and for good: for the copy of a model
        that is about to be exported, which then runs in export mode only. Idempotent."""
        if self.level0_output_major:
            return
        for branches in self._branches():
            conv = branches[0][-1]
            order = torch.arange(conv.out_channels, device=conv.weight.device).view(CELLS, -1).t().reshape(-1)
            with torch.no_grad():  # new channel o * CELLS + s <- old s * k + o
                conv.weight.copy_(conv.weight[order])
                if conv.bias is not None:
                    conv.bias.copy_(conv.bias[order])
        self.level0_output_major = True

    def _branches(self) -> list[nn.ModuleList]:
        """The box and class branches (per level), the end-to-end head's too where it has them."""
        return [b for b in (getattr(self, n, None) for n in ("cv2", "cv3", "one2one_cv2", "one2one_cv3")) if b is not None]

    def _inference(self, x: dict) -> torch.Tensor:
        """Detect's (b, 4 + nc, anchors) output, the probabilities written straight into it (Detect concatenates a
        copy): from channels-last maps one sigmoid over the rows the logits already lie in (forward_head's
        "output_rows"), else into a (b, 4 + nc, anchors) tensor."""
        scores = x["scores"]
        if self.export or scores.requires_grad:  # (autograd: Detect's concatenation)
            return super()._inference(x)
        if "output_rows" in x:  # the logits lie in the rows' last nc columns: one contiguous sigmoid
            y = x["output_rows"].sigmoid().transpose(1, 2)  # (its first 4 columns: overwritten with the boxes below)
            y[:, :4] = self._get_decode_boxes(x)
            return y
        b, _, n = scores.shape
        y = scores.new_empty(b, 4 + self.nc, n)
        if torch.compiler.is_compiling():  # compile takes no strided out=
            y[:, 4:].copy_(scores).sigmoid_()
        else:
            torch.sigmoid(scores, out=y[:, 4:])
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
        dfl = self.dfl.over_middle_axis if self.format in MIDDLE_AXIS_DFL_FORMATS else self.dfl.over_last_axis
        return self.decode_bboxes(dfl(x["boxes"]), self.anchors.unsqueeze(0)) * self.strides

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
    """SubgridDetect with the box branch's two 3x3 convs max(16, ch[0] // 4, THIN_BOX_WIDTH) wide (32 at n and s)
    instead of Detect's (64), 16 bins kept: the default's head. The thin convs (0.28 G multiply-adds at 640 against
    0.72 G) pay for the sub-grid's larger last convs: 6.1 GFLOPs at 80 classes (YOLO11n 6.7)."""

    thin_box = True
