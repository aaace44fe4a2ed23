"""Area attention computed by torch SDPA, weight-compatible with Ultralytics YOLO12.

YOLO12's area attention (Ultralytics `AAttn`): a 1x1 conv makes q, k, v; the flattened feature map (H*W tokens,
row-major) is cut into `area` equal runs of tokens; each head attends within its run; a 7x7 depthwise conv of v
(positional encoding) is added; a 1x1 conv projects out. `AreaAttention` keeps exactly those parameters (it
subclasses `AAttn`, so a YOLO12 state dict loads unchanged) and replaces only the forward pass: one layout copy,
then whichever kernel `detector.kernels` picks, with the head dim contiguous as fused kernels want it.

Where H*W is not a multiple of `area`, runs of ceil(H*W / area) tokens are taken and the shorter last run is
attended on its own, so any feature-map size works; where it divides, the split is YOLO12's exactly.

YOLO11's attention (Ultralytics `Attention`, inside `C2PSA`): every token attends to every other, q and k have
`key_dim` channels per head (half of v's `head_dim`). `PSAttention` computes it through the same kernel policy.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn
from ultralytics.nn.modules import block

from . import kernels
from .kernels import attention, exporting, matmul_attention


class AreaAttention(block.AAttn):
    """Ultralytics `AAttn` with an SDPA forward. Same constructor (dim, num_heads, area), same parameters:
    qkv (Conv dim -> 3*all_head_dim, 1x1), proj (Conv all_head_dim -> dim, 1x1), pe (Conv 7x7 depthwise).

    Exported at a static size whose token count divides by `area`, it writes Ultralytics' own graph, op for op (so
    any runtime runs it exactly as fast as stock YOLO12's). A dynamic-size export gets ours: areas cut by graph
    arithmetic (`_attend_padded`, right at every size) and pe's input taken from the channel-major conv output (see
    below). `dynamic` says which export this is: Ultralytics' exporter sets it from its own `dynamic` argument
    (detector.glue.exporter); left alone, the safe answer (dynamic)."""

    dynamic = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        B, _, H, W = x.shape
        N, heads, hd, C = H * W, self.num_heads, self.head_dim, self.all_head_dim
        area = max(int(self.area), 1)
        tracing = exporting()  # asked once: each ask costs a few microseconds, and batch 1 on a GPU is launch-bound
        if tracing and not self.dynamic and _static(N) % area == 0:
            return super().forward(x)  # a static-size export: the stock graph
        # (B, 3C, H, W) -> (B, N, heads, 3*hd). YOLO12 groups qkv channels per head as [q_h | k_h | v_h], so after
        # this one copy (free when x is channels-last) q, k and v of a head are slices with stride 1 in head_dim.
        # permute, not flatten(2).transpose(1, 2): at batch size 1 the backward of the latter hands qkv's BatchNorm a
        # channels-last gradient with batch stride C (legal for a size-1 dim), and PyTorch's CPU BatchNorm backward
        # then returns wrong input gradients (100%+ off; tests/test_numerics.py). The backward of permute gives a
        # gradient with ordinary channels-last strides. Same values, same single copy.
        qkv_map = self.qkv(x)  # (B, 3C, H, W)
        qkv = qkv_map.permute(0, 2, 3, 1).contiguous().view(B, N, heads, 3 * hd)

        if area > 1 and tracing:
            out = self._attend_padded(qkv, area)  # a graph that is right for every input size
        else:
            run = -(-N // area)  # tokens per area, ceil(N / area)
            full = N // run  # areas of `run` tokens; a shorter remainder (N % run tokens) is attended on its own
            parts = [self._attend(qkv[:, : full * run].reshape(B * full, run, heads, 3 * hd)).reshape(B, full * run, C)]
            if full * run < N:
                parts.append(self._attend(qkv[:, full * run :]).reshape(B, N - full * run, C))
            out = parts[0] if len(parts) == 1 else torch.cat(parts, 1)  # (B, N, C)

        # Back to images: (B, N, C) -> (B, C, H, W) as channels-last views, no copy; convs accept either layout.
        out = out.reshape(B, H, W, C).permute(0, 3, 1, 2)
        if tracing:
            # Same values, sliced from the channel-major conv output. NNCF's int8 quantizes pe's (depthwise) input
            # per channel, and moves that quantizer up through reshapes onto the slice the input comes from: on the
            # token-major slice below its axis 1 is the token, so the graph held one scale per token and ran only at
            # the export size (dynamic int8 OpenVINO failed at any other). Here axis 1 is the head.
            v = qkv_map.view(B, heads, 3 * hd, H, W)[:, :, 2 * hd :].reshape(B, C, H, W)
        else:
            v = qkv[..., 2 * hd :].reshape(B, H, W, C).permute(0, 3, 1, 2)
        return self.proj(out + self.pe(v))

    @staticmethod
    def _attend_padded(qkv: torch.Tensor, area: int) -> torch.Tensor:
        """The eager path's areas, in one traceable form for ONNX export. qkv: (B, N, heads, 3*hd) -> (B, N, C).

        The eager path splits N tokens by Python arithmetic and `if`, which a trace freezes at the export size: a
        dynamic-size graph would then cut the wrong areas, or fail, at any other size. Here N stays a graph value:
        the tokens are padded to `area` runs of ceil(N / area), padded keys get a large negative score (so each
        area attends to its real tokens only, exactly the eager remainder rule) and padded queries are dropped."""
        B, N, heads, hd3 = qkv.shape
        run = (N + area - 1) // area
        tokens = F.pad(qkv, (0, 0, 0, 0, 0, area * run - N)).reshape(B * area, run, heads, hd3)
        q, k, v = tokens.transpose(1, 2).chunk(3, dim=-1)  # each (B*area, heads, run, hd)
        real = (torch.arange(area * run, device=qkv.device) < N).reshape(1, area, 1, 1, run)
        zero = torch.zeros((), dtype=q.dtype, device=q.device)
        bias = torch.where(real, zero, zero + torch.finfo(q.dtype).min / 2)  # (1, area, 1, 1, run)
        bias = bias.expand(B, area, 1, 1, run).reshape(B * area, 1, 1, run)
        out = matmul_attention(q, k, v, bias)  # (B*area, heads, run, hd)
        return out.transpose(1, 2).reshape(B, area * run, heads * (hd3 // 3))[:, :N]

    @staticmethod
    def _attend(tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (B', L, heads, 3*hd) -> attention output (B', L, heads, hd)."""
        q, k, v = tokens.transpose(1, 2).chunk(3, dim=-1)  # each (B', heads, L, hd), stride 1 in hd
        return attention(q, k, v).transpose(1, 2)


class PSAttention(block.Attention):
    """Ultralytics `Attention` (YOLO11's C2PSA, YOLOv10's PSA) with an SDPA forward: all H*W tokens attend to each
    other. Same constructor (dim, num_heads, attn_ratio), same parameters: qkv (Conv dim -> heads*(2*key_dim +
    head_dim), 1x1), proj (Conv dim -> dim, 1x1), pe (Conv 3x3 depthwise); scale key_dim**-0.5 as Ultralytics'."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        B, _, H, W = x.shape
        N, heads, kd, hd = H * W, self.num_heads, self.key_dim, self.head_dim
        if exporting() or self._plain_matmul(x, N):
            # Ultralytics' own forward is plain matmul in this layer's native layout, with none of the layout copies
            # the fused kernels need: the fastest way where the policy picks matmul, and the stock graph in exports.
            return super().forward(x)
        # (B, heads*(2kd+hd), H, W) -> (B, N, heads, 2kd+hd): Ultralytics groups the channels per head as
        # [q_h | k_h | v_h]; one copy (permute, for the batch-1 BatchNorm reason given in AreaAttention.forward).
        qkv = self.qkv(x).permute(0, 2, 3, 1).contiguous().view(B, N, heads, 2 * kd + hd)
        q, k, v = qkv.transpose(1, 2).split([kd, kd, hd], dim=-1)  # (B, heads, N, kd | kd | hd), stride 1 in dim
        out = attention(q, k, v).transpose(1, 2).reshape(B, H, W, heads * hd).permute(0, 3, 1, 2)
        v = v.transpose(1, 2).reshape(B, H, W, heads * hd).permute(0, 3, 1, 2)  # (B, C, H, W), channels-last
        return self.proj(out + self.pe(v))

    def _plain_matmul(self, x: torch.Tensor, tokens: int) -> bool:
        """Inference in float32 where the kernel policy picks plain matmul (small maps on a CPU). Not with gradients:
        training keeps one path (and our own layout, see AreaAttention.forward on the batch-1 BatchNorm bug); not in
        half precision, where Ultralytics' products could overflow and kernels.matmul_attention keeps float32 scores."""
        if torch.is_grad_enabled() or x.dtype != torch.float32 or torch.is_autocast_enabled(x.device.type):
            return False
        return kernels.select(x.device, x.dtype, self.head_dim, tokens, self.key_dim).kernel == "matmul"


def _static(n) -> int:
    """A size as a Python int. While exporting, sizes are traced values; this freezes one into the graph, which is
    what a static-size export wants (and only that: callers ask only when the export is static)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return int(n)


def use_sdpa(model: nn.Module) -> int:
    """Switch every Ultralytics layer inside `model` that has an SDPA version here (`STOCK_BASE`: `AAttn` ->
    `AreaAttention`, `A2C2f` -> our `A2C2f`, YOLO11's `Attention` -> `PSAttention`, `C2PSA` -> our `C2PSA`) to that
    version, in place, keeping its weights, device and dtype (the classes share every parameter, so only the class
    changes). For checkpoints, which record Ultralytics' classes, and models built without our registration. Returns
    how many modules were switched."""
    return _switch(model, {base: ours for ours, base in STOCK_BASE.items()})


def use_stock(model: nn.Module) -> int:
    """The reverse of `use_sdpa`: our layers back to the Ultralytics classes they subclass, in place. What a
    checkpoint should record, so that Ultralytics alone (no `detector` installed) loads it. Returns the count."""
    return _switch(model, STOCK_BASE)


def _switch(model: nn.Module, classes: dict[type, type]) -> int:
    switched = 0
    for m in model.modules():
        new = classes.get(type(m))
        if new is not None:
            if getattr(m, "type", None) == f"{type(m).__module__}.{type(m).__qualname__}":
                m.type = f"{new.__module__}.{new.__qualname__}"  # the class path Ultralytics' parser records
            m.__class__ = new
            switched += 1
    return switched


class A2C2f(block.A2C2f):
    """Ultralytics `A2C2f` (YOLO12's area-attention C2f) whose attention runs through SDPA. Same arguments, same
    parameters; `detector.glue.registry` makes YAMLs that say `A2C2f` build this class."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        use_sdpa(self)


class C2PSA(block.C2PSA):
    """Ultralytics `C2PSA` (YOLO11's backbone attention block) whose attention runs through our kernel policy. Same
    arguments, same parameters; `detector.glue.registry` makes YAMLs that say `C2PSA` build this class."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        use_sdpa(self)


# Our layer -> the Ultralytics class it subclasses, adding no parameters and changing only `forward`. Both directions
# (use_sdpa on load, use_stock for what checkpoints record) read this one table.
STOCK_BASE: dict[type[nn.Module], type[nn.Module]] = {AreaAttention: block.AAttn, A2C2f: block.A2C2f,
                                                      PSAttention: block.Attention, C2PSA: block.C2PSA}
