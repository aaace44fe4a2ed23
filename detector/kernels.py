"""The attention kernel policy: which implementation computes softmax(q k^T / sqrt(d)) v, and why.

Everything that decides between kernels lives in this file. Layers call `attention(q, k, v)` and never pick a
kernel themselves.

Kernels (names accepted by `--attn` and the DETECTOR_ATTN environment variable):
    auto       choose per call site from device, dtype and GPU generation (the default, rules below)
    flash      SDPA FlashAttention-2 (CUDA fp16/bf16 on sm80+; PyTorch also has a fused CPU kernel of this name)
    cudnn      SDPA cuDNN fused attention (CUDA fp16/bf16, sm80+)
    efficient  SDPA memory-efficient attention (CUDA, any float dtype)
    math       SDPA's composite reference implementation (anywhere)
    matmul     two plain matrix products and a softmax, the way Ultralytics YOLO12 computes it (anywhere)

`auto` rules, measured (see docs/benchmarks.md for the numbers behind them):
    CUDA, fp16/bf16, sm90 (Hopper) or newer -> cudnn, else flash  (cuDNN beat flash on the H100 at our shapes)
    CUDA, fp16/bf16, sm80/sm86/sm89         -> flash
    CUDA, fp32, or GPUs older than sm80     -> efficient (flash and cuDNN need half precision and sm80+)
    CPU                                     -> flash (PyTorch's fused CPU kernel) from CPU_FLASH_MIN_TOKENS
                                               tokens per area, plain matmul below (a tie there); where q/k are
                                               narrower than v (YOLO11's attention: flash runs them zero-padded)
                                               from CPU_FLASH_MIN_TOKENS_PADDED
    anything else (mps, xpu, ...)           -> math
`auto` decides from those facts alone, with no trial run: for SDPA kernels it hands PyTorch its order of preference
(its SDPA priority order: `_priority` in eager mode, `sdpa_kernel([...], set_priority=True)` under torch.compile),
and PyTorch falls to the next kernel where one cannot run a shape (a head dim it does not support, say). A forced
kernel is tried once per (device, dtype, head dim, tokens), at its first call, and raises KernelUnavailable saying why
if it cannot run: it never falls back silently. `python -m detector.check` tries every kernel for real.

The requested kernel has one source of truth, the DETECTOR_ATTN environment variable (`set_kernel` writes it, so
child processes such as DDP ranks and dataloader workers inherit it); every decision is cached per requested name.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from .utils import dtype_name

ENV_VAR = "DETECTOR_ATTN"
KERNELS = ("auto", "flash", "cudnn", "efficient", "math", "matmul")
SDPA_BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}
HALF_DTYPES = (torch.float16, torch.bfloat16)
# On CPU, PyTorch's fused flash kernel overtakes the plain matmul path from about this many tokens per area
# (2-core CI machine, fp32, head_dim 32: a tie at 144 tokens, flash 1.5x faster at 256 and 2.8x at 400 for
# YOLO12n's P4 shape; table in docs/benchmarks.md).
CPU_FLASH_MIN_TOKENS = 192
# Where q/k have fewer channels than v (YOLO11's attention, 32 against 64), flash runs q and k zero-padded to v's width:
# a third more arithmetic. Plain matmul in the layer's own layout was faster up to 400 tokens (YOLO11n's C2PSA at 640:
# 2.10 against 2.38 ms, 1 thread) and flash from 484 (5.2 against 6.3 ms); docs/benchmarks.md, "model-v2 levers".
CPU_FLASH_MIN_TOKENS_PADDED = 448

LOGGER = logging.getLogger("detector")


class KernelUnavailable(RuntimeError):
    """A kernel was forced that cannot run on this device, dtype or shape."""


def validate_kernel(name: str, source: str = "attention kernel") -> str:
    """Return the normalised kernel name, or raise ValueError naming `source` and the valid choices."""
    key = str(name).strip().lower()
    if key not in KERNELS:
        raise ValueError(f"{source}: unknown kernel '{name}'; choose one of {', '.join(KERNELS)}")
    return key


def set_kernel(name: str | None) -> None:
    """Force a kernel for this process and its children ("auto" or None restores the policy), by setting (or
    clearing) the DETECTOR_ATTN environment variable."""
    key = None if name is None else validate_kernel(name, "set_kernel")
    if key in (None, "auto"):
        os.environ.pop(ENV_VAR, None)
    else:
        os.environ[ENV_VAR] = key


def requested_kernel() -> tuple[str, str]:
    """The kernel the user asked for and where that came from: (name, source)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return validate_kernel(env, ENV_VAR), ENV_VAR
    return "auto", "default"


def matmul_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None
                     ) -> torch.Tensor:
    """Reference attention with plain matrix products. q, k, v: (B, heads, L, head_dim) -> (B, heads, L, head_dim).
    It materialises the (B, heads, L, L) score matrix: what YOLO12 does, and what costs it memory on GPU.
    `bias`, if given, is added to the scores (broadcast to (B, heads, L, L)): large negative values mask keys out.

    For fp16/bf16 inputs (or under autocast) it computes in float32 and rounds the output once, as SDPA's math
    kernel does: logits grow with the square of the activations and pass fp16's 65504 at activations of a few
    hundred (inf, then NaN out of the softmax), bf16's 8-bit mantissa loses the logit differences the softmax
    needs, and in the backward pass dO @ v^T overflows fp16 once v is large. float32 inputs (ONNX export) take
    exactly the two plain products and a softmax."""
    scale = q.shape[-1] ** -0.5
    if q.dtype in HALF_DTYPES or torch.is_autocast_enabled(q.device.type):
        with torch.autocast(q.device.type, enabled=False):  # autocast would cast the products back to half
            scores = (q.float() * scale) @ k.float().transpose(-2, -1)  # (B, heads, L, L), float32
            if bias is not None:
                scores = scores + bias.float()
            return (scores.softmax(dim=-1) @ v.float()).to(v.dtype)
    scores = (q * scale) @ k.transpose(-2, -1)  # (B, heads, L, L)
    if bias is not None:
        scores = scores + bias
    return scores.softmax(dim=-1) @ v


def _run(kernel: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, fallbacks: tuple[str, ...] = ()
         ) -> torch.Tensor:
    """`kernel`, or where PyTorch cannot run it for this shape, the first of `fallbacks` (SDPA kernels) that can."""
    if kernel == "matmul":
        return matmul_attention(q, k, v)
    scale, value_dim = None, v.shape[-1]
    if q.shape[-1] != value_dim:
        # Fused kernels (flash on CPU and CUDA, cuDNN) want one head dim for q, k and v; YOLO11's attention has q/k
        # half as wide as v. Zero channels change no q.k product, so pad the narrower side and pass q's own scale.
        scale, width = q.shape[-1] ** -0.5, max(q.shape[-1], value_dim)
        q, k, v = (t if t.shape[-1] == width else F.pad(t, (0, width - t.shape[-1])) for t in (q, k, v))
    if not fallbacks:
        with sdpa_kernel(SDPA_BACKENDS[kernel]):
            out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    elif torch.compiler.is_compiling():
        # torch.compile knows sdpa_kernel (no graph break) and bakes the choice into the graph: no cost per call.
        with sdpa_kernel([SDPA_BACKENDS[name] for name in (kernel, *fallbacks)], set_priority=True):
            out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    else:
        with _priority(_order(kernel, *fallbacks)):
            out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    return out if out.shape[-1] == value_dim else out[..., :value_dim]


@functools.lru_cache(maxsize=None)
def _order(*names: str) -> tuple[int, ...]:
    """PyTorch's SDPA priority order with `names` first, the other backends after in PyTorch's default order."""
    first = [int(SDPA_BACKENDS[name]) for name in names]
    return tuple(first + [b for b in _DEFAULT_ORDER if b not in first])


_DEFAULT_ORDER = tuple(torch._C._get_sdp_priority_order())  # PyTorch's own, read before anyone changes it


class _priority:
    """`sdpa_kernel(backends, set_priority=True)` for the eager path, at about a sixth of its cost (2.6 against 17 us
    per call on the 2-core CI CPU). That context reads and writes all five backend switches and the order on entry and
    again on exit: with 8 attention layers, a few percent of an eager batch-1 GPU forward, which is launch-bound. This
    one writes the priority order only, and only when it differs from ours (then restores it). The backend switches
    stay as the user left them (all on by default): a backend switched off globally stays off, where sdpa_kernel
    would have switched it back on; every backend that `auto` lists is on in a default PyTorch. Uses the same two
    private functions sdpa_kernel uses (torch._C._get/_set_sdp_priority_order); tests/test_kernels.py checks that
    they exist and that the order is restored."""

    __slots__ = ("order", "previous")

    def __init__(self, order: tuple[int, ...]):
        self.order = order

    def __enter__(self):
        previous = tuple(torch._C._get_sdp_priority_order())
        self.previous = None if previous == self.order else previous
        if self.previous is not None:
            torch._C._set_sdp_priority_order(list(self.order))

    def __exit__(self, *exc):
        if self.previous is not None:
            torch._C._set_sdp_priority_order(list(self.previous))


@functools.lru_cache(maxsize=None)
def kernel_runs(kernel: str, device: torch.device, dtype: torch.dtype, head_dim: int, tokens: int = 64) -> tuple[bool, str]:
    """Can `kernel` run forward and backward for this device, dtype, head dim and sequence length? Answered by
    trying it once on a one-sequence input of that shape (the only test that is always right, whatever the PyTorch
    build: cuDNN, for one, refuses some lengths), then cached."""
    if kernel in ("matmul", "math"):
        return True, "always available"
    if device.type == "cpu" and kernel != "flash":
        return False, f"SDPA's {kernel} kernel exists only on CUDA"
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if kernel in ("flash", "cudnn"):
            if dtype not in HALF_DTYPES:
                return False, f"{kernel} needs float16 or bfloat16, not {dtype_name(dtype)}"
            if major < 8:
                return False, f"{kernel} needs compute capability 8.0 or newer, this GPU is {major}.{minor}"
    if torch.compiler.is_compiling():
        # torch.compile traces through the cache (it ignores lru_cache) and cannot trace a backward pass: a forced
        # kernel is tried by the first eager call, or by `python -m detector.check`; compiled, PyTorch's own error
        # says if it cannot run.
        return True, "not tried under torch.compile"
    try:
        # Runs inside whatever the caller is in (no_grad, inference_mode, autocast): step out of all of them.
        with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device.type, enabled=False):
            q = torch.randn(1, 1, tokens, head_dim, device=device, dtype=dtype, requires_grad=True)
            _run(kernel, q, q, q).sum().backward()
    except RuntimeError as e:  # SDPA says "No available kernel" with the reasons as warnings
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return False, f"PyTorch refused it for head_dim={head_dim}, {tokens} tokens: {first}"
    return True, "ran"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"{device} ({torch.cuda.get_device_name(device)}, sm{major}{minor})"
    return str(device)


@dataclass(frozen=True)
class Choice:
    kernel: str  # one of KERNELS other than "auto"
    reason: str  # why, in words, for the start-up log line and `python -m detector.check`
    fallbacks: tuple[str, ...] = ()  # SDPA kernels PyTorch may use instead, in order, where `kernel` cannot run


def _auto(device: torch.device, dtype: torch.dtype, tokens: int, padded: bool = False) -> Choice:
    """The policy's choice from device, dtype, GPU generation and tokens per area (`padded`: q/k narrower than v, run
    zero-padded by fused kernels): no kernel is run to decide."""
    dt = dtype_name(dtype)
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        if dtype in HALF_DTYPES and major >= 8:
            if major >= 9:
                return Choice("cudnn", f"{dt} on sm{major}x: fused cuDNN is fastest on Hopper", ("flash", "efficient", "math"))
            return Choice("flash", f"{dt} on sm{major}x: fused FlashAttention", ("cudnn", "efficient", "math"))
        return Choice("efficient", f"{dt} on sm{major}x: flash/cuDNN need fp16/bf16 on sm80+, memory-efficient kernel "
                                   "instead", ("math",))
    if device.type == "cpu":
        if tokens >= (CPU_FLASH_MIN_TOKENS_PADDED if padded else CPU_FLASH_MIN_TOKENS):
            return Choice("flash", f"CPU, {tokens} tokens per area: the fused CPU kernel is faster here", ("math",))
        return Choice("matmul", f"CPU, {tokens} tokens per area{', q/k narrower than v' if padded else ''}: plain "
                                "matmul is faster at this size")
    return Choice("math", f"{device.type}: SDPA's portable math kernel")


@functools.lru_cache(maxsize=None)
def _select(requested: str, source: str, device: torch.device, dtype: torch.dtype, head_dim: int, tokens: int,
            qk_dim: int) -> Choice:
    if requested == "auto":
        choice = _auto(device, dtype, tokens, padded=qk_dim < head_dim)
    else:
        ok, why = (kernel_runs.__wrapped__ if torch.compiler.is_compiling() else kernel_runs)(
            requested, device, dtype, head_dim, tokens)
        if not ok:
            raise KernelUnavailable(f"attention kernel '{requested}' (from {source}) cannot run on {device} in "
                                    f"{dtype_name(dtype)}: {why}")
        choice = Choice(requested, f"forced by {source}")
    if not torch.compiler.is_compiling():  # a log call is a graph break under torch.compile
        LOGGER.debug("attention: %s on %s, %s, head_dim=%d, %d tokens (%s)", choice.kernel, device, dtype, head_dim,
                     tokens, choice.reason)
    return choice


def select(device: torch.device, dtype: torch.dtype, head_dim: int, tokens: int, qk_dim: int | None = None) -> Choice:
    """The kernel for one call site (device, dtype, head dim of v, tokens per area, head dim of q/k if narrower),
    cached per requested kernel. Raises KernelUnavailable when a forced kernel cannot run here."""
    # torch.compile traces the decision once per graph, with the cache's wrapped function (it would ignore the cache,
    # with a warning): the kernel is then part of the compiled graph.
    decide = _select.__wrapped__ if torch.compiler.is_compiling() else _select
    return decide(*requested_kernel(), device, dtype, head_dim, tokens, head_dim if qk_dim is None else qk_dim)


def describe(device: torch.device | str, dtype: torch.dtype, head_dim: int = 32, tokens: int = 400) -> str:
    """One line for the start-up log: which kernel runs on which device, and why."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    choice = select(device, dtype, head_dim, tokens)
    then = f"; PyTorch falls back to {', '.join(choice.fallbacks)} where it cannot run a shape" if choice.fallbacks else ""
    return (f"attention kernel: {choice.kernel} on {_device_name(device)}, {dtype_name(dtype)}, head_dim {head_dim}, "
            f"{tokens} tokens per area ({choice.reason}{then})")


def exporting() -> bool:
    """True while torch.onnx / torch.jit trace the model: shapes then become graph inputs, not Python numbers."""
    return torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(qk_dim)) v with the kernel the policy picks. q, k: (B, heads, L, qk_dim), v: (B, heads,
    L, head_dim) (qk_dim may differ from head_dim, as in YOLO11's attention), the head dim contiguous (stride 1) so
    fused kernels take them without a copy. Returns (B, heads, L, head_dim)."""
    if exporting():
        # Exported graphs get plain MatMul/Softmax: every runtime and opset runs them (see docs on ONNX).
        return matmul_attention(q, k, v)
    choice = select(q.device, q.dtype, v.shape[-1], q.shape[-2], q.shape[-1])
    return _run(choice.kernel, q, k, v, choice.fallbacks)

