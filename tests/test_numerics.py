"""Numerics of the attention kernels and the area-attention layers.

1. Large-magnitude activations in half precision. Attention logits q.k/sqrt(d) grow with the square of the
   activations: features of a few hundred already give logits past fp16's largest number (65504), and bf16's
   8-bit mantissa rounds logits of that size by whole units or more. A kernel must keep the scores in float32 (all
   SDPA kernels do, and since this file detector.kernels.matmul_attention does too) or it returns inf/NaN (fp16)
   or a wrong softmax (bf16). Scenarios, each checked for "finite" and for "correct against a float64 reference
   computed from the very same half-precision inputs":
     saturating  q, k, v uniform in [-M, M], M = 1e3 and 3e4: logits ~1e6..1e9, the softmax is one-hot.
     moderate    logits with a standard deviation of 30 / 1000: no overflow, but half-precision logits lose
                 the differences the softmax needs.
     massive     one channel of every q and k holds a large constant ("massive activations": a few channels far
                 larger than the rest, the same in every token). Logits ~7e4 (past fp16) that differ between
                 keys by O(1) only, so the softmax is NOT saturated and the reference is a real average.
   Forward and backward; then the whole AreaAttention and A2C2f layers with inputs scaled until their logits pass
   65504, in fp16 and bf16, and under CPU autocast. PyTorch's fused backward kernels have a limit of their own
   at |logits| >= 1e5 (LSE_RECOMPUTE below): marked xfail, not hidden.
1c. Batch size 1: AreaAttention's gradients used to be wrong there through a PyTorch CPU BatchNorm bug.
2. A property-based test (hypothesis): AreaAttention over random batch, heads, head dims, areas, feature-map sizes
   and memory formats against a plain float64 reference, forward and backward, for every kernel that runs on the
   CPU, and against Ultralytics' AAttn where that can run.
3. The same large-magnitude checks on CUDA (`gpu` marker; conftest skips them without a GPU) for fp16 and bf16 and
   each of flash / cudnn / efficient / math / matmul, forward and backward: `pytest -m gpu tests/test_numerics.py`.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # the GPU machine may lack it (CI installs it with .[test]): only section 2 needs it
    st = None
from ultralytics.nn.modules import block

from detector import kernels
from detector.attention import A2C2f, AreaAttention

CPU = torch.device("cpu")
FP16_MAX = torch.finfo(torch.float16).max  # 65504
HALF = (torch.float16, torch.bfloat16)
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
B, HEADS, L, D = 2, 2, 64, 32  # kernel-level shape: (batch, heads, tokens, head_dim)


def runnable(device: torch.device, dtype: torch.dtype, head_dim: int = D, tokens: int = L) -> list[str]:
    """Every concrete kernel (not `auto`) that kernels.kernel_runs() says runs here, forward and backward."""
    return [k for k in kernels.KERNELS[1:] if kernels.kernel_runs(k, device, dtype, head_dim, tokens)[0]]


CPU_CASES = [pytest.param(dt, k, id=f"{k}-{str(dt)[6:]}") for dt in DTYPES for k in runnable(CPU, dt)]


def dtype_id(dt: torch.dtype) -> str:
    return str(dt).replace("torch.", "")


# --------------------------------------------------------------------------------------------------------------
# references and inputs


def reference_attention(q, k, v):
    """softmax(q k^T / sqrt(d)) v in float64 from the given (already rounded) inputs; also the largest |logit|."""
    q, k, v = q.double(), k.double(), v.double()
    logits = torch.einsum("bhid,bhjd->bhij", q, k) / math.sqrt(q.shape[-1])
    return torch.einsum("bhij,bhjd->bhid", logits.softmax(-1), v), logits.abs().max().item()


# Largest error, relative to max |reference|, each dtype can be held to when scores are kept in float32: the output's
# own rounding (fp16 2^-11, bf16 2^-8) plus slack; fp32 at the level of its accumulation error.
BASE_TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.2e-2}
# Plus float32's own limit where the softmax is not saturated: a float32 logit of size |s| is off by ~|s| * 2^-24 per
# rounding, and each softmax weight by that much relative. At the massive scenario's 7e4 (ulp 2^-7) that alone is
# ~1e-2 in ANY kernel that computes scores in float32: SDPA's math kernel (which upcasts half inputs) and its CPU
# flash kernel both land at 1.0e-2..1.7e-2, in float32 as well. A saturated softmax (one-hot) is immune to it.
LOGIT_ROUNDING = 8 * 2.0**-24

SCENARIOS = ("saturating-1e3", "saturating-3e4", "moderate-30", "moderate-1000", "massive")


def make_qkv(scenario: str, dtype: torch.dtype, device=CPU, seed: int = 0, shape=(B, HEADS, L, D)):
    """q, k, v for one scenario (module docstring), generated in float32 and rounded once to `dtype`."""
    g = torch.Generator().manual_seed(seed)
    d = shape[-1]
    if scenario.startswith("saturating"):
        m = float(scenario.split("-")[1])  # uniform in [-m, m]: representable in fp16 (max 65504)
        q, k, v = ((torch.rand(*shape, generator=g) * 2 - 1) * m for _ in range(3))
    elif scenario.startswith("moderate"):
        s = float(scenario.split("-")[1]) ** 0.5  # q, k ~ N(0, s^2): logits ~ N(0, s^4) = N(0, std^2)
        q, k = (torch.randn(*shape, generator=g) * s for _ in range(2))
        v = torch.randn(*shape, generator=g)
    elif scenario == "massive":
        q, k, v = (torch.randn(*shape, generator=g) for _ in range(3))
        big = round(math.sqrt(7e4 * math.sqrt(d)))  # q.k/sqrt(d) = big^2/sqrt(d) + O(1) ~ 7e4 > 65504
        q[..., 0] = big
        k[..., 0] = big
    else:
        raise ValueError(scenario)
    return tuple(t.to(device, dtype) for t in (q, k, v))


def tolerance(scenario: str, dtype: torch.dtype, max_logit: float) -> float:
    saturated = scenario.startswith("saturating")
    return BASE_TOL[dtype] + (0.0 if saturated else LOGIT_ROUNDING * max_logit)


def rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return ((y.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


def random_weights(m: torch.nn.Module, seed: int, std: float = 0.2) -> torch.nn.Module:
    """Non-trivial weights (every parameter ~ N(0, std^2)); BatchNorm in eval mode with its default statistics."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, std)
    return m.eval()


def area_reference(m: block.AAttn, x: torch.Tensor, stats: dict | None = None, pinned_qkv=None) -> torch.Tensor:
    """The intended area-attention semantics, written independently of both AreaAttention and Ultralytics' AAttn:

    the H*W tokens in row-major order are cut into consecutive runs of ceil(H*W / area) tokens, the last run shorter
    when that does not divide H*W (so there may be fewer than `area` runs, e.g. 9 tokens, area 4 -> 3 runs of 3);
    every token attends, per head, to exactly the tokens of its own run with softmax(q.k / sqrt(head_dim)); pe(v)
    is added and proj applied. Written as one full N x N score matrix per head with a block-diagonal mask, no
    reshaping into areas at all. qkv's channels are grouped per head as [q_h | k_h | v_h] (YOLO12's layout).

    Runs in x's dtype; `stats["max_logit"]` records the largest |logit| seen. `pinned_qkv`: use these q, k, v values
    (the half-precision layer's own) while gradients still flow through this module's qkv conv (see float64_twin)."""
    Bn, _, H, W = x.shape
    N, h, d = H * W, m.num_heads, m.head_dim
    qkv = m.qkv(x)
    if pinned_qkv is not None:
        qkv = qkv + (pinned_qkv.to(qkv) - qkv).detach()
    q, k, v = qkv.reshape(Bn, h, 3 * d, N).split(d, dim=2)  # each (B, heads, d, N)
    run = -(-N // max(int(m.area), 1))
    region = torch.arange(N, device=x.device) // run
    logits = torch.einsum("bhdn,bhdm->bhnm", q, k) / math.sqrt(d)
    if stats is not None:
        stats["max_logit"] = max(stats.get("max_logit", 0.0), logits.abs().max().item())
    logits = logits.masked_fill(region[:, None] != region[None, :], float("-inf"))
    out = torch.einsum("bhnm,bhdm->bhdn", logits.softmax(-1), v).reshape(Bn, h * d, H, W)
    return m.proj(out + m.pe(v.reshape(Bn, h * d, H, W)))


def float64_twin(m: torch.nn.Module, stats: dict | None = None, pin_to_half: bool = False) -> torch.nn.Module:
    """A float64 copy of `m` (same weights: the rounded ones if `m` is half) whose every area attention computes
    `area_reference` instead of any kernel.

    pin_to_half: each area attention of the twin takes its q, k, v VALUES from the matching layer of `m` (captured
    on m's last forward, so call m first). Attention with large logits is ill-conditioned in its inputs: an fp16
    qkv conv's rounding (2^-11 relative) moves logits of 1e4 by ~5 and the softmax with them, whatever the kernel.
    Pinned, the reference attends over exactly the numbers the kernel was given, and measures the kernel."""
    twin = copy.deepcopy(m).double()
    captured = {}
    if pin_to_half:
        for name, sub in m.named_modules():
            if isinstance(sub, block.AAttn):
                sub.qkv.register_forward_hook(lambda mod, inp, out, n=name: captured.__setitem__(n, out.detach()))
    for name, sub in twin.named_modules():
        if isinstance(sub, block.AAttn):
            sub.forward = (lambda s, n: lambda x: area_reference(s, x, stats, captured.get(n)))(sub, name)
    return twin


def grads(params) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in params]


# --------------------------------------------------------------------------------------------------------------
# 1. kernels on the CPU with large-magnitude inputs

# A limitation of PyTorch's fused kernels, not of this project: their backward pass is far less robust to large
# logits than their forward. (a) It recomputes the softmax as exp(s - logsumexp) from logits it recomputes in float32;
# at |logits| of 1e5 and more these differ from the forward's by float32 ulps (|s| * 2^-23: 0.06 at 1e6, 64 at 1e9),
# so P comes back off by a factor exp(ulps). (b) On GPU it also rounds dS to fp16/bf16 for the tensor-core products
# dS @ K and dS^T @ Q: each row of dS sums to zero, a cancellation the rounding breaks, so whatever all keys share
# (a large constant channel, large activations) leaks into dq/dk in proportion to its size. Measured: CPU flash
# (torch 2.14): dv 20% off at logits 1e6, NaN at 1e9 in fp32/fp16, dq 8x off at 7e4 (massive). H100 (torch 2.11),
# flash, cuDNN and efficient alike: dq 50% (fp16) to 175% (bf16) off at 7e4 (massive), AreaAttention's dx 140% off
# in bf16 at logits 6.8e4, dv 5% off at 1e6 (fp16), NaN/inf (fp16; flash bf16) or 1e13-fold off (cuDNN/efficient
# bf16) at 1e9. Forward outputs are right everywhere, and the math and matmul kernels have no such limit. Marked
# xfail (not strict: other CPUs, GPUs and builds may do better) so the tests keep reporting it.
LSE_RECOMPUTE = ("PyTorch's fused attention backward (softmax recomputed from the saved logsumexp, dS rounded to "
                 "half on GPU) gives wrong gradients at |logits| >~ 5e4 and inf/NaN by ~1e9")
FUSED_BWD_LIMIT = 5e4  # |logit| from which fused backward kernels are not held to the reference
FUSED = ("flash", "cudnn", "efficient")


def test_cpu_kernels_cover_every_dtype_that_runs():
    """What the numerics tests below cover on this machine (flash, math and matmul on CPU in all three dtypes with
    torch 2.14); fails loudly if math/matmul ever stopped running, rather than silently testing less."""
    for dt in DTYPES:
        names = runnable(CPU, dt)
        assert {"math", "matmul"} <= set(names), (dt, names)
        assert not {"cudnn", "efficient"} & set(names)


def check_forward(dtype, kernel, scenario, device=CPU):
    q, k, v = make_qkv(scenario, dtype, device)
    ref, max_logit = reference_attention(q, k, v)
    if scenario.startswith(("saturating", "massive")):
        assert max_logit > FP16_MAX  # the scenario really is one that a naive fp16 q.k overflows
    kernels.set_kernel(kernel)
    y = kernels.attention(q, k, v)
    what = f"{device.type} {kernel} {dtype_id(dtype)} {scenario}"
    assert y.dtype == dtype and y.shape == q.shape
    assert torch.isfinite(y).all(), f"{what}: inf/NaN in the output"
    err = rel_err(y, ref)
    assert err <= tolerance(scenario, dtype, max_logit), f"{what}: error {err:.3g} vs float64"


def run_backward(dtype, kernel, scenario, device=CPU):
    """Gradients of q, k, v from `kernel` and from float64 autograd of the plain formula, for one upstream grad."""
    q, k, v = (t.requires_grad_() for t in make_qkv(scenario, dtype, device, seed=1))
    g = torch.randn(q.shape, generator=torch.Generator().manual_seed(2)).to(device, dtype)
    qr, kr, vr = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref, max_logit = reference_attention(qr, kr, vr)
    ref.backward(g.double())
    kernels.set_kernel(kernel)
    kernels.attention(q, k, v).backward(g)
    return {"dq": (q.grad, qr.grad), "dk": (k.grad, kr.grad), "dv": (v.grad, vr.grad)}, max_logit


def check_backward_finite(dtype, kernel, scenario, device=CPU):
    grads_, _ = run_backward(dtype, kernel, scenario, device)
    for name, (got, _) in grads_.items():
        assert torch.isfinite(got).all(), f"{device.type} {kernel} {dtype_id(dtype)} {scenario}: {name} not finite"


def check_backward_values(dtype, kernel, scenario, device=CPU):
    """Against float64 autograd: dv always (P^T dO); dq and dk where the softmax is not saturated. Saturated
    (one-hot), dq and dk are ~0 (the softmax's derivative vanishes) and only finiteness means anything. Bounds are 8x
    the forward's: the softmax Jacobian's cancellation (dP - rowsum(dO * O)) amplifies rounding."""
    grads_, max_logit = run_backward(dtype, kernel, scenario, device)
    tol = 8 * tolerance(scenario, dtype, max_logit)
    names = ("dv",) if scenario.startswith("saturating") else ("dq", "dk", "dv")
    for name in names:
        got, want = grads_[name]
        err = rel_err(got, want)
        assert err <= tol, f"{device.type} {kernel} {dtype_id(dtype)} {scenario}: {name} error {err:.3g} vs float64"


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("dtype,kernel", CPU_CASES)
def test_kernel_large_activations_forward(dtype, kernel, scenario):
    check_forward(dtype, kernel, scenario)


BACKWARD_SCENARIOS = ("moderate-1000", "massive", "saturating-1e3", "saturating-3e4")


@pytest.mark.parametrize("scenario", BACKWARD_SCENARIOS)
@pytest.mark.parametrize("dtype,kernel", CPU_CASES)
def test_kernel_large_activations_backward_finite(dtype, kernel, scenario, request):
    if kernel in FUSED and scenario == "saturating-3e4":  # logits ~1e9
        request.applymarker(pytest.mark.xfail(reason=LSE_RECOMPUTE, strict=False))
    check_backward_finite(dtype, kernel, scenario)


@pytest.mark.parametrize("scenario", BACKWARD_SCENARIOS)
@pytest.mark.parametrize("dtype,kernel", CPU_CASES)
def test_kernel_large_activations_backward_values(dtype, kernel, scenario, request):
    if kernel in FUSED and scenario != "moderate-1000":  # logits 7e4 .. 1e9
        request.applymarker(pytest.mark.xfail(reason=LSE_RECOMPUTE, strict=False))
    check_backward_values(dtype, kernel, scenario)


def test_matmul_path_float32_unchanged():
    """The float32 plain-matmul path (what ONNX export traces) is still the two products and a softmax, in fp32."""
    q, k, v = make_qkv("moderate-30", torch.float32)
    expected = torch.softmax((q * D**-0.5) @ k.transpose(-2, -1), -1) @ v
    assert torch.equal(kernels.matmul_attention(q, k, v), expected)


# --------------------------------------------------------------------------------------------------------------
# 1b. whole layers with large inputs (CPU)

# End to end, against a float64 twin whose attention is pinned to the layer's own q, k, v (float64_twin): what is
# left is the attention kernel plus well-conditioned half-precision convs (pe, proj, MLPs).
LAYER_TOL = {torch.float32: 2e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}
LAYER_SCALES = (1.0, 30.0, 300.0)  # input scale; at 300 this layer's attention logits reach ~1e5, past fp16
HALF_CPU_CASES = [c for c in CPU_CASES if c.values[0] in HALF]


def check_layer(m, x, kernel, dtype, what, need_overflow, check_dx=True):
    """m (already in `dtype`) on x: forward finite and close to the pinned float64 twin; backward (upstream grad of a
    mean loss) finite everywhere and, with check_dx, the input gradient close too, except for a fused kernel past
    FUSED_BWD_LIMIT (its backward's own limit, see LSE_RECOMPUTE; H100 bf16 at x300: 140% off)."""
    stats = {}
    twin = float64_twin(m, stats, pin_to_half=True)
    x = x.to(dtype).requires_grad_()
    kernels.set_kernel(kernel)
    y = m(x)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(4)).to(y.device) / y.numel()
    y.backward(g.to(dtype))
    xr = x.detach().double().requires_grad_()
    ref = twin(xr)
    ref.backward(g.double())
    if need_overflow:
        assert stats["max_logit"] > FP16_MAX, stats  # the input really makes fp16-overflowing logits
    assert torch.isfinite(y).all(), f"{what}: inf/NaN in the output"
    assert torch.isfinite(x.grad).all(), f"{what}: inf/NaN in the input gradient"
    for name, p in m.named_parameters():
        assert torch.isfinite(p.grad).all(), f"{what}: inf/NaN in the gradient of {name}"
    err, gerr = rel_err(y, ref), rel_err(x.grad, xr.grad)
    check_dx = check_dx and not (kernel in FUSED and stats["max_logit"] >= FUSED_BWD_LIMIT)
    assert err <= LAYER_TOL[dtype], f"{what}: forward error {err:.3g} vs float64"
    assert not check_dx or gerr <= 4 * LAYER_TOL[dtype], f"{what}: input-gradient error {gerr:.3g} vs float64"


@pytest.mark.parametrize("scale", LAYER_SCALES)
@pytest.mark.parametrize("dtype,kernel", HALF_CPU_CASES)
def test_area_attention_layer_large_inputs(dtype, kernel, scale):
    m = random_weights(AreaAttention(64, 2, area=4), seed=7).to(dtype)
    x = torch.randn(2, 64, 12, 12, generator=torch.Generator().manual_seed(3)) * scale
    check_layer(m, x, kernel, dtype, f"{kernel} {dtype_id(dtype)} x{scale:g}", need_overflow=scale == 300)


@pytest.mark.parametrize("dtype,kernel", HALF_CPU_CASES)
def test_a2c2f_large_inputs(dtype, kernel):
    """YOLO12's A2C2f (two area-attention blocks with MLPs and residuals) in half precision, input scaled so its
    attention logits pass 65504 (~1.5e5). Forward close to float64, backward finite. The input gradient is not
    compared: through two nearly saturated softmaxes it is ill-conditioned (math kernel fp16: 6% off), and the
    fused kernels' backward is past FUSED_BWD_LIMIT there."""
    m = random_weights(A2C2f(128, 128, n=1, a2=True, area=4, residual=True, mlp_ratio=1.2), seed=11, std=0.3)
    x = torch.randn(1, 128, 10, 10, generator=torch.Generator().manual_seed(5)) * 300  # logits ~1.5e5
    check_layer(m.to(dtype), x, kernel, dtype, f"A2C2f {kernel} {dtype_id(dtype)}", need_overflow=True, check_dx=False)


@pytest.mark.parametrize("dtype", HALF, ids=dtype_id)
@pytest.mark.parametrize("kernel", ["flash", "math", "matmul"])
def test_area_attention_under_cpu_autocast(dtype, kernel):
    """Mixed precision as training uses it: float32 weights, autocast makes the convs' outputs (q, k, v) half."""
    m = random_weights(AreaAttention(64, 2, area=4), seed=7)
    stats = {}
    twin = float64_twin(m, stats, pin_to_half=True)
    x = torch.randn(2, 64, 12, 12, generator=torch.Generator().manual_seed(3)) * 300
    kernels.set_kernel(kernel)
    with torch.autocast("cpu", dtype=dtype):
        y = m(x)
    ref = twin(x.double())
    assert stats["max_logit"] > FP16_MAX
    assert y.dtype == dtype
    assert torch.isfinite(y).all(), f"{kernel} autocast {dtype_id(dtype)}: inf/NaN"
    assert rel_err(y, ref) <= LAYER_TOL[dtype], f"{kernel} autocast {dtype_id(dtype)}: error {rel_err(y, ref):.3g}"


# --------------------------------------------------------------------------------------------------------------
# 1c. batch size 1: gradients (a PyTorch CPU BatchNorm bug that AreaAttention must not trigger)


@pytest.mark.parametrize("area", [1, 4])
@pytest.mark.parametrize("kernel", runnable(CPU, torch.float32))
def test_batch_size_one_gradients_match_reference(kernel, area):
    """AreaAttention used to give wrong input and qkv-weight gradients (100-300% off) at batch size 1, every area:
    the backward of its `flatten(2).transpose(1, 2).contiguous()` handed qkv's BatchNorm a channels-last gradient
    with batch stride C, which PyTorch's CPU BatchNorm backward misreads (next test). YOLO12 uses area 1 at P5, and
    batch 1 is what fine-tuning on a small machine, or any per-image gradient (saliency maps), runs."""
    stock = random_weights(block.AAttn(64, 2, area), seed=area)
    ours = AreaAttention(64, 2, area).eval()
    ours.load_state_dict(stock.state_dict())
    twin = float64_twin(stock)
    x = torch.randn(1, 64, 8, 8, generator=torch.Generator().manual_seed(0))
    g = torch.randn(1, 64, 8, 8, generator=torch.Generator().manual_seed(1))
    xr = x.double().requires_grad_()
    twin(xr).backward(g.double())
    kernels.set_kernel(kernel)
    xi = x.clone().requires_grad_()
    ours(xi).backward(g)
    assert rel_err(xi.grad, xr.grad) <= 1e-4, f"dx error {rel_err(xi.grad, xr.grad):.3g}"
    want = dict(twin.named_parameters())
    for name, p in ours.named_parameters():
        assert rel_err(p.grad, want[name].grad) <= 1e-4, f"{name}: error {rel_err(p.grad, want[name].grad):.3g}"


@pytest.mark.xfail(reason="PyTorch CPU bug (torch 2.14): BatchNorm2d backward misreads a channels-last grad_output "
                   "whose size-1 batch dim has stride C", strict=False)
def test_pytorch_cpu_batchnorm_backward_with_batch_stride_c():
    """The bug AreaAttention steps around, in plain PyTorch: the same gradient values, two legal layouts, two answers.
    XPASS here means PyTorch fixed it."""
    torch.manual_seed(0)
    bn = random_weights(torch.nn.BatchNorm2d(24), seed=0).double()
    x = torch.randn(1, 24, 3, 3, dtype=torch.float64)
    g = torch.randn(216, dtype=torch.float64).as_strided((1, 24, 3, 3), (24, 1, 72, 24))  # what the old path made
    out = []
    for gg in (g, g.contiguous()):
        xi = x.clone().requires_grad_()
        bn(xi).backward(gg)
        out.append(xi.grad)
    torch.testing.assert_close(out[0], out[1])


# --------------------------------------------------------------------------------------------------------------
# 2. property-based: AreaAttention over random shapes against the plain reference

HEAD_DIMS = (8, 16, 24, 32, 64)
FP32_TOL = 2e-4  # relative to the largest |reference| (float64), as tests/test_attention.py


def check_area_attention_case(case: dict) -> None:
    """AreaAttention (float32, every CPU kernel) equals the plain float64 reference `area_reference`, forward and
    (in about half the examples) backward: input and every weight gradient.

    Why our own reference and not only Ultralytics' AAttn: stock AAttn reshapes the tokens into `area` rows of
    N // area and so raises for any H*W that `area` does not divide (checked below: it must raise, so an Ultralytics
    change there is noticed); AreaAttention instead takes runs of ceil(N / area) tokens and attends the shorter last
    run on its own. Where `area` divides H*W both splits are the same, and there stock AAttn's forward (the matmul
    reference YOLO12 ships) must agree too. Not its backward: at batch size 1 with area > 1 stock AAttn's own
    reshapes trigger the PyTorch BatchNorm bug of test_pytorch_cpu_batchnorm_backward_with_batch_stride_c."""
    dim = case["heads"] * case["head_dim"]
    N, area = case["H"] * case["W"], case["area"]
    stock = random_weights(block.AAttn(dim, case["heads"], area), seed=case["seed"])
    ours = AreaAttention(dim, case["heads"], area).eval()
    ours.load_state_dict(stock.state_dict())
    twin = float64_twin(stock)
    x = torch.randn(case["batch"], dim, case["H"], case["W"], generator=torch.Generator().manual_seed(case["seed"]))
    if case["channels_last"]:
        x = x.contiguous(memory_format=torch.channels_last)
    xr = x.double().requires_grad_(case["backward"])
    ref = twin(xr)
    scale = ref.abs().max().item()
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(case["seed"] + 1))
    if case["backward"]:
        ref.backward(g.double())
        ref_grads = [xr.grad] + grads(twin.parameters())

    with torch.no_grad():
        if N % area == 0:
            torch.testing.assert_close(stock(x).double(), ref, rtol=0, atol=FP32_TOL * scale)
        else:
            with pytest.raises(RuntimeError):
                stock(x)

    names = runnable(CPU, torch.float32, case["head_dim"], -(-N // area))
    assert {"math", "matmul"} <= set(names)
    try:
        for name in names:
            kernels.set_kernel(name)
            xi = x.clone().requires_grad_(case["backward"])
            ours.zero_grad(set_to_none=True)
            y = ours(xi)
            assert y.shape == x.shape
            err = (y.double() - ref).abs().max().item()
            assert err <= FP32_TOL * scale, f"kernel {name}: forward error {err:.3g} (scale {scale:.3g})"
            if case["backward"]:
                y.backward(g)
                for i, (got, want) in enumerate(zip([xi.grad] + grads(ours.parameters()), ref_grads)):
                    gerr = (got.double() - want).abs().max().item()
                    assert gerr <= 2 * FP32_TOL * want.abs().max().item() + 1e-12, (
                        f"kernel {name}: gradient {i} (0 = input) error {gerr:.3g}")
    finally:
        kernels.set_kernel(None)


if st is not None:

    @st.composite
    def area_cases(draw):
        return dict(
            batch=draw(st.integers(1, 3)),
            heads=draw(st.integers(1, 4)),
            head_dim=draw(st.sampled_from(HEAD_DIMS)),
            area=draw(st.integers(1, 8)),
            H=draw(st.integers(1, 13)),  # tiny maps, H*W < area, H*W not a multiple of area, primes...
            W=draw(st.integers(1, 13)),
            channels_last=draw(st.booleans()),
            seed=draw(st.integers(0, 2**16)),
            backward=draw(st.booleans()),
        )

    @settings(max_examples=150, deadline=None, derandomize=True, database=None, print_blob=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(case=area_cases())
    def test_area_attention_property(case):
        """Random batch, heads, head dims, areas, sizes and memory formats: see check_area_attention_case."""
        check_area_attention_case(case)

else:

    @pytest.mark.skip(reason="hypothesis is not installed")
    def test_area_attention_property():
        pass


def test_stock_aattn_refuses_indivisible_sizes():
    """Documents why the property test needs its own reference: Ultralytics' AAttn cannot run 5x5 with area 4."""
    with pytest.raises(RuntimeError):
        block.AAttn(64, 2, 4).eval()(torch.randn(1, 64, 5, 5))
    y = AreaAttention(64, 2, 4).eval()(torch.randn(1, 64, 5, 5))
    assert y.shape == (1, 64, 5, 5) and torch.isfinite(y).all()


# --------------------------------------------------------------------------------------------------------------
# 3. the same on CUDA (run on the device machine: pytest -m gpu tests/test_numerics.py)

GPU_KERNELS = ("flash", "cudnn", "efficient", "math", "matmul")


def cuda_for(kernel: str, dtype: torch.dtype, head_dim: int = D, tokens: int = L) -> torch.device:
    dev = torch.device("cuda", torch.cuda.current_device())
    ok, why = kernels.kernel_runs(kernel, dev, dtype, head_dim, tokens)
    if not ok:
        pytest.skip(f"{kernel} does not run here: {why}")
    return dev


@pytest.mark.gpu
@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("kernel", GPU_KERNELS)
@pytest.mark.parametrize("dtype", HALF, ids=dtype_id)
def test_gpu_kernel_large_activations_forward(dtype, kernel, scenario):
    check_forward(dtype, kernel, scenario, cuda_for(kernel, dtype))


@pytest.mark.gpu
@pytest.mark.parametrize("scenario", BACKWARD_SCENARIOS)
@pytest.mark.parametrize("kernel", GPU_KERNELS)
@pytest.mark.parametrize("dtype", HALF, ids=dtype_id)
def test_gpu_kernel_large_activations_backward_finite(dtype, kernel, scenario, request):
    dev = cuda_for(kernel, dtype)
    if kernel in FUSED and scenario == "saturating-3e4":  # logits ~1e9
        request.applymarker(pytest.mark.xfail(reason=LSE_RECOMPUTE, strict=False))
    check_backward_finite(dtype, kernel, scenario, dev)


@pytest.mark.gpu
@pytest.mark.parametrize("scenario", BACKWARD_SCENARIOS)
@pytest.mark.parametrize("kernel", GPU_KERNELS)
@pytest.mark.parametrize("dtype", HALF, ids=dtype_id)
def test_gpu_kernel_large_activations_backward_values(dtype, kernel, scenario, request):
    dev = cuda_for(kernel, dtype)
    if kernel in FUSED and scenario != "moderate-1000":  # logits 7e4 .. 1e9
        request.applymarker(pytest.mark.xfail(reason=LSE_RECOMPUTE, strict=False))
    check_backward_values(dtype, kernel, scenario, dev)


@pytest.mark.gpu
@pytest.mark.parametrize("scale", LAYER_SCALES)
@pytest.mark.parametrize("kernel", GPU_KERNELS)
@pytest.mark.parametrize("dtype", HALF, ids=dtype_id)
def test_gpu_area_attention_layer_large_inputs(dtype, kernel, scale):
    dev = cuda_for(kernel, dtype, 32, 36)
    m = random_weights(AreaAttention(64, 2, area=4), seed=7).to(dev, dtype)
    x = (torch.randn(2, 64, 12, 12, generator=torch.Generator().manual_seed(3)) * scale).to(dev)
    check_layer(m, x, kernel, dtype, f"cuda {kernel} {dtype_id(dtype)} x{scale:g}", need_overflow=scale == 300)


@pytest.mark.gpu
@pytest.mark.parametrize("kernel", GPU_KERNELS)
@pytest.mark.parametrize("dtype", HALF, ids=dtype_id)
def test_gpu_a2c2f_under_autocast(dtype, kernel):
    """A2C2f under autocast with float32 weights (BatchNorm in eval mode: with batch statistics BN would normalise the
    input scale away), input scaled so the attention logits pass 65504: forward and backward finite for every
    kernel, output close to the pinned float64 twin."""
    dev = cuda_for(kernel, dtype, 32, 100)
    m = random_weights(A2C2f(128, 128, n=1, a2=True, area=4, residual=True, mlp_ratio=1.2), seed=11, std=0.3)
    m = m.to(dev)
    stats = {}
    twin = float64_twin(m, stats, pin_to_half=True)
    x = (torch.randn(4, 128, 20, 20, generator=torch.Generator().manual_seed(5)) * 300).to(dev).requires_grad_()
    kernels.set_kernel(kernel)
    with torch.autocast("cuda", dtype=dtype):
        y = m(x)
    y.float().square().mean().backward()
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        ref = twin(x.detach().double())
    what = f"cuda {kernel} autocast {dtype_id(dtype)}"
    assert stats["max_logit"] > FP16_MAX
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all(), f"{what}: inf/NaN"
    for name, p in m.named_parameters():
        assert torch.isfinite(p.grad).all(), f"{what}: inf/NaN in the gradient of {name}"
    assert rel_err(y, ref) <= 2 * LAYER_TOL[dtype], f"{what}: forward error {rel_err(y, ref):.3g}"


@pytest.mark.gpu
@pytest.mark.parametrize("area", [1, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=dtype_id)
def test_gpu_batch_size_one_gradients(dtype, area):
    """Batch-1 gradients of AreaAttention on CUDA (the CPU BatchNorm bug above; cuDNN's BatchNorm is another kernel)."""
    dev = torch.device("cuda", torch.cuda.current_device())
    stock = random_weights(block.AAttn(64, 2, area), seed=area)
    ours = AreaAttention(64, 2, area).eval()
    ours.load_state_dict(stock.state_dict())
    ours = ours.to(dev, dtype)
    twin = float64_twin(ours)
    x = torch.randn(1, 64, 8, 8, generator=torch.Generator().manual_seed(0)).to(dev)
    g = torch.randn(1, 64, 8, 8, generator=torch.Generator().manual_seed(1)).to(dev)
    xr = x.to(dtype).double().requires_grad_()
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        twin(xr).backward(g.double())
    xi = x.to(dtype).requires_grad_()
    ours(xi).backward(g.to(dtype))
    tol = 5e-3 if dtype == torch.float32 else 3e-2  # fp32 convs run in TF32 on cuDNN by default
    assert rel_err(xi.grad, xr.grad) <= tol, f"dx error {rel_err(xi.grad, xr.grad):.3g}"
