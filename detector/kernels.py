"""The attention kernel policy: which implementation computes softmax(q k^T / sqrt(d)) v. Layers call `attention`.

`auto` decides from device, dtype, GPU generation and tokens per area, with no trial run (`_auto`; the measurements:
docs/benchmarks.md#attention-kernels), and PyTorch falls back through the choice's list where a kernel cannot run a
shape. A kernel forced by `set_kernel`, `--attn` or DETECTOR_ATTN is tried once per shape and raises KernelUnavailable
saying why if it cannot run: it never falls back silently. DETECTOR_ATTN is read once, at the first decision;
`set_kernel` changes the choice for this process and, through the variable, for its children (DDP ranks, workers).
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from .choices import KERNEL_ENV as ENV_VAR
from .choices import KERNELS
from .utils import dtype_name

SDPA_BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                 "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
HALF_DTYPES = (torch.float16, torch.bfloat16)
CPU_FLASH_MIN_TOKENS = 192  # 2-core CPU, fp32, head_dim 32: a tie with matmul at 144 tokens, flash 1.5x faster at 256
CPU_FLASH_MIN_TOKENS_PADDED = 448  # q/k half as wide as v (YOLO11's attention): flash runs them zero-padded
LOGGER = logging.getLogger("detector")
_requested: tuple[str, str] | None = None  # (kernel, where the request came from), read once: see requested_kernel


class KernelUnavailable(RuntimeError):
    """A kernel was forced that cannot run on this device, dtype or shape."""


@dataclass(frozen=True)
class Choice:
    kernel: str  # one of KERNELS other than "auto"
    reason: str  # why, for the start-up line and `python -m detector.check`
    fallbacks: tuple[str, ...] = ()  # SDPA kernels PyTorch may use instead, in order, where `kernel` cannot run


def validate_kernel(name: str, source: str = "attention kernel") -> str:
    """The normalised kernel name, or ValueError naming `source` and the valid choices."""
    key = str(name).strip().lower()
    if key not in KERNELS:
        raise ValueError(f"{source}: unknown kernel '{name}'; choose one of {', '.join(KERNELS)}")
    return key


def set_kernel(name: str | None) -> None:
    """Force a kernel for this process and its children ("auto" or None: the policy again)."""
    global _requested
    key = "auto" if name is None else validate_kernel(name, "set_kernel")
    if key == "auto":
        os.environ.pop(ENV_VAR, None)
        _requested = None  # read at the next decision: the policy, unless DETECTOR_ATTN is set again
    else:
        os.environ[ENV_VAR] = key
        _requested = (key, ENV_VAR)


def read_environment() -> tuple[str, str]:
    """(kernel, source) from DETECTOR_ATTN, read again (after a change to os.environ in this process)."""
    global _requested
    env = os.environ.get(ENV_VAR)
    _requested = (validate_kernel(env, ENV_VAR), ENV_VAR) if env else ("auto", "default")
    return _requested


def requested_kernel() -> tuple[str, str]:
    return _requested or read_environment()


def matmul_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None
                     ) -> torch.Tensor:
    """Two plain matrix products, as YOLO12 computes attention. q, k: (B, heads, L, qk_dim), v: (B, heads, L, head_dim)
    -> (B, heads, L, head_dim); `bias` is added to the (B, heads, L, L) scores. Half precision is computed in float32
    (fp16 logits overflow at activations of a few hundred; bf16 loses the differences the softmax needs)."""
    scale = q.shape[-1] ** -0.5
    if q.dtype in HALF_DTYPES or torch.is_autocast_enabled(q.device.type):
        with torch.autocast(q.device.type, enabled=False):
            scores = (q.float() * scale) @ k.float().transpose(-2, -1)
            scores = scores if bias is None else scores + bias.float()
            return (scores.softmax(dim=-1) @ v.float()).to(v.dtype)
    scores = (q * scale) @ k.transpose(-2, -1)
    scores = scores if bias is None else scores + bias
    return scores.softmax(dim=-1) @ v


class _priority:
    """PyTorch's SDPA priority order set to `order` for one call, then restored: what `sdpa_kernel(backends,
    set_priority=True)` does, at a sixth of its cost (2.6 against 17 us per call, 2-core CPU), which pays on a
    launch-bound batch-1 GPU forward. The one use of private torch API here (torch._C._get/_set_sdp_priority_order,
    the functions sdpa_kernel itself calls; tests/test_kernels.py checks they still exist and restore)."""

    __slots__ = ("order", "previous")

    def __init__(self, order: list[int]):
        self.order = order

    def __enter__(self):
        previous = torch._C._get_sdp_priority_order()
        self.previous = None if previous == self.order else previous
        if self.previous is not None:
            torch._C._set_sdp_priority_order(self.order)

    def __exit__(self, *exc):
        if self.previous is not None:
            torch._C._set_sdp_priority_order(self.previous)


_DEFAULT_ORDER = torch._C._get_sdp_priority_order()  # PyTorch's own, read before anyone changes it


@functools.lru_cache(maxsize=None)
def _order(*names: str) -> list[int]:
    """PyTorch's SDPA priority order with `names` first and the other backends after, in PyTorch's order."""
    first = [int(SDPA_BACKENDS[name]) for name in names]
    return first + [b for b in _DEFAULT_ORDER if b not in first]


def _run(kernel: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, fallbacks: tuple[str, ...] = ()
         ) -> torch.Tensor:
    """`kernel`, or where PyTorch cannot run it for this shape, the first of `fallbacks` (SDPA kernels) that can."""
    if kernel == "matmul":
        return matmul_attention(q, k, v)
    scale, value_dim = None, v.shape[-1]
    if q.shape[-1] != value_dim:
        # Fused kernels want one head dim; YOLO11's attention has q/k half as wide as v. Zero channels change no q.k
        # product: pad the narrower side and pass q's own scale.
        scale, width = q.shape[-1] ** -0.5, max(q.shape[-1], value_dim)
        q, k, v = (t if t.shape[-1] == width else F.pad(t, (0, width - t.shape[-1])) for t in (q, k, v))
    if not fallbacks:
        context = sdpa_kernel(SDPA_BACKENDS[kernel])
    elif torch.compiler.is_compiling():  # compile bakes the order into the graph: no cost per call
        context = sdpa_kernel([SDPA_BACKENDS[name] for name in (kernel, *fallbacks)], set_priority=True)
    else:
        context = _priority(_order(kernel, *fallbacks))
    with context:
        out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    return out if out.shape[-1] == value_dim else out[..., :value_dim]


@functools.lru_cache(maxsize=None)
def kernel_runs(kernel: str, device: torch.device, dtype: torch.dtype, head_dim: int, tokens: int = 64
                ) -> tuple[bool, str]:
    """Can `kernel` run forward and backward here? Answered by trying it once on a one-sequence input of that shape
    (the only test that is right for every PyTorch build: cuDNN, for one, refuses some lengths), then cached."""
    if kernel in ("matmul", "math"):
        return True, "always available"
    if device.type == "cpu" and kernel != "flash":
        return False, f"SDPA's {kernel} kernel exists only on CUDA"
    if device.type == "cuda" and kernel in ("flash", "cudnn"):
        major, minor = torch.cuda.get_device_capability(device)
        if dtype not in HALF_DTYPES:
            return False, f"{kernel} needs float16 or bfloat16, not {dtype_name(dtype)}"
        if major < 8:
            return False, f"{kernel} needs compute capability 8.0 or newer, this GPU is {major}.{minor}"
    if torch.compiler.is_compiling():  # a backward pass cannot be traced: the first eager call, or `check`, tries it
        return True, "not tried under torch.compile"
    try:  # step out of the caller's no_grad, inference_mode and autocast
        with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device.type, enabled=False):
            q = torch.randn(1, 1, tokens, head_dim, device=device, dtype=dtype, requires_grad=True)
            _run(kernel, q, q, q).sum().backward()
    except RuntimeError as e:  # SDPA says "No available kernel", with the reasons as warnings
        return False, f"PyTorch refused it for head_dim={head_dim}, {tokens} tokens: {str(e).strip()[:200]}"
    return True, "ran"


def _auto(device: torch.device, dtype: torch.dtype, tokens: int, padded: bool) -> Choice:
    dt = dtype_name(dtype)
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        if dtype in HALF_DTYPES and major >= 9:
            return Choice("cudnn", f"{dt} on sm{major}x: fused cuDNN is fastest on Hopper", ("flash", "efficient", "math"))
        if dtype in HALF_DTYPES and major == 8:
            return Choice("flash", f"{dt} on sm{major}x: fused FlashAttention", ("cudnn", "efficient", "math"))
        return Choice("efficient", f"{dt} on sm{major}x: flash/cuDNN need fp16/bf16 on sm80+", ("math",))
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
        runs = kernel_runs.__wrapped__ if torch.compiler.is_compiling() else kernel_runs
        ok, why = runs(requested, device, dtype, head_dim, tokens)
        if not ok:
            raise KernelUnavailable(f"attention kernel '{requested}' (from {source}) cannot run on {device} in "
                                    f"{dtype_name(dtype)}: {why}")
        choice = Choice(requested, f"forced by {source}")
    if not torch.compiler.is_compiling():  # a log call is a graph break
        LOGGER.debug("attention: %s on %s, %s, head_dim=%d, %d tokens (%s)", choice.kernel, device, dtype, head_dim,
                     tokens, choice.reason)
    return choice


def select(device: torch.device, dtype: torch.dtype, head_dim: int, tokens: int, qk_dim: int | None = None) -> Choice:
    """The kernel for one call site (v's head dim, tokens per area, q/k's head dim if narrower), cached per requested
    kernel. Raises KernelUnavailable when a forced kernel cannot run here."""
    decide = _select.__wrapped__ if torch.compiler.is_compiling() else _select  # compile traces it into the graph
    return decide(*requested_kernel(), device, dtype, head_dim, tokens, head_dim if qk_dim is None else qk_dim)


def describe(device: torch.device | str, dtype: torch.dtype, head_dim: int = 32, tokens: int = 400) -> str:
    """One line for the start-up log: which kernel runs on which device, and why."""
    device = torch.device(device)
    name = str(device)
    if device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
        major, minor = torch.cuda.get_device_capability(device)
        name = f"{device} ({torch.cuda.get_device_name(device)}, sm{major}{minor})"
    choice = select(device, dtype, head_dim, tokens)
    then = f"; PyTorch falls back to {', '.join(choice.fallbacks)} where it cannot run a shape" if choice.fallbacks else ""
    return (f"attention kernel: {choice.kernel} on {name}, {dtype_name(dtype)}, head_dim {head_dim}, {tokens} tokens "
            f"per area ({choice.reason}{then})")


def exporting() -> bool:
    """True while torch.onnx / torch.jit trace the model: shapes are then graph values, not Python numbers."""
    return torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(qk_dim)) v with the kernel the policy picks. q, k: (B, heads, L, qk_dim), v: (B, heads,
    L, head_dim), head dims contiguous (fused kernels take them without a copy) -> (B, heads, L, head_dim). Exports
    get plain MatMul/Softmax, which every runtime and opset runs."""
    if exporting():
        return matmul_attention(q, k, v)
    choice = select(q.device, q.dtype, v.shape[-1], q.shape[-2], q.shape[-1])
    return _run(choice.kernel, q, k, v, choice.fallbacks)
