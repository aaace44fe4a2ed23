"""The kernel policy: what `auto` picks on CPU, overrides by flag and environment, clear errors."""

import subprocess
import sys

import pytest
import torch

from detector import kernels
from detector.attention import AreaAttention

CPU = torch.device("cpu")


def test_auto_on_cpu_picks_by_tokens_per_area():
    assert kernels.select(CPU, torch.float32, 32, kernels.CPU_FLASH_MIN_TOKENS).kernel == "flash"
    assert kernels.select(CPU, torch.float32, 32, 6400).kernel == "flash"
    assert kernels.select(CPU, torch.float32, 32, kernels.CPU_FLASH_MIN_TOKENS - 1).kernel == "matmul"
    assert "CPU" in kernels.select(CPU, torch.float32, 32, 400).reason


def test_auto_reaches_the_chosen_kernel(monkeypatch):
    """The layer really calls what the policy chose: count calls into each implementation."""
    calls = []
    real_run = kernels._run
    monkeypatch.setattr(kernels, "_run", lambda k, q, *rest: calls.append((k, q.shape[-2])) or real_run(k, q, *rest))
    m = AreaAttention(64, 2, area=4).eval()
    m(torch.randn(1, 64, 40, 40))  # 400 tokens per area -> flash
    m(torch.randn(1, 64, 8, 8))  # 16 tokens per area -> matmul
    assert calls == [("flash", 400), ("matmul", 16)]


def test_auto_runs_no_trial_kernel(monkeypatch):
    """`auto` decides from device, dtype and shape alone: no hidden forward/backward trial inside a layer's forward.
    Where the fused kernel cannot run a shape, PyTorch falls back through the priority list handed to it."""

    def no_trials(*args):
        raise AssertionError(f"trial run {args}")

    monkeypatch.setattr(kernels, "kernel_runs", no_trials)
    kernels._select.cache_clear()
    m = AreaAttention(64, 2, area=1).eval()
    with torch.no_grad():
        out = m(torch.randn(1, 64, 16, 16))  # 256 tokens -> flash, with math as PyTorch's fallback
    assert out.shape == (1, 64, 16, 16)
    choice = kernels.select(CPU, torch.float32, 32, 256)
    assert (choice.kernel, choice.fallbacks) == ("flash", ("math",))


def test_environment_is_read_once_and_set_kernel_changes_the_choice(monkeypatch):
    """DETECTOR_ATTN is read at the first decision, not on every call; set_kernel takes effect at once (the cache is
    per requested kernel) and writes the variable for child processes."""
    assert kernels.select(CPU, torch.float32, 32, 400).kernel == "flash"
    monkeypatch.setenv(kernels.ENV_VAR, "math")
    assert kernels.select(CPU, torch.float32, 32, 400).kernel == "flash"  # not read again
    assert kernels.read_environment() == ("math", kernels.ENV_VAR)
    assert kernels.select(CPU, torch.float32, 32, 400).kernel == "math"
    kernels.set_kernel("matmul")
    assert __import__("os").environ[kernels.ENV_VAR] == "matmul"
    assert kernels.select(CPU, torch.float32, 32, 400).kernel == "matmul"
    kernels.set_kernel(None)
    assert kernels.ENV_VAR not in __import__("os").environ
    assert kernels.select(CPU, torch.float32, 32, 400).kernel == "flash"


@pytest.mark.parametrize("name", ["flash", "math", "matmul"])
def test_forced_kernel_is_used_on_cpu(name):
    kernels.set_kernel(name)
    choice = kernels.select(CPU, torch.float32, 32, 50)
    assert choice.kernel == name and "forced" in choice.reason


@pytest.mark.parametrize("name", ["cudnn", "efficient"])
def test_forced_impossible_kernel_errors_clearly(name):
    kernels.set_kernel(name)
    with pytest.raises(kernels.KernelUnavailable, match=f"'{name}'.*cannot run on cpu in float32.*only on CUDA"):
        AreaAttention(64, 2, area=1)(torch.randn(1, 64, 4, 4))


def test_flash_in_fp16_on_cpu_or_old_gpu_is_refused_with_reason():
    if torch.cuda.is_available():
        pytest.skip("checks the CPU refusal")
    ok, why = kernels.kernel_runs("cudnn", CPU, torch.float16, 32)
    assert not ok and "CUDA" in why


def test_environment_variable_and_unknown_names(monkeypatch):
    monkeypatch.setenv(kernels.ENV_VAR, "MatMul")
    assert kernels.read_environment() == ("matmul", kernels.ENV_VAR) == kernels.requested_kernel()
    monkeypatch.setenv(kernels.ENV_VAR, "fastest")
    with pytest.raises(ValueError, match="DETECTOR_ATTN: unknown kernel 'fastest'; choose one of auto, flash"):
        kernels.read_environment()
    with pytest.raises(ValueError, match="unknown kernel"):
        kernels.set_kernel("nope")


def test_check_report_lists_kernels_and_choice():
    out = subprocess.run([sys.executable, "-m", "detector.check"], capture_output=True, text=True, check=True).stdout
    assert f"torch {torch.__version__}" in out
    row = next(line for line in out.splitlines() if line.startswith("| cpu | float32"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "yes" and cells[3].startswith("no: ") and cells[6] == "yes"  # flash yes, cudnn no, matmul yes
    assert cells[7] == "flash"  # auto at 400 tokens


def test_check_reports_a_forced_impossible_kernel():
    env = {**__import__("os").environ, kernels.ENV_VAR: "efficient"}
    r = subprocess.run([sys.executable, "-m", "detector.check"], capture_output=True, text=True, env=env, check=True)
    assert "| ERROR | attention kernel 'efficient' (from DETECTOR_ATTN) cannot run on cpu" in r.stdout


@pytest.mark.parametrize("kernel", ["auto", "flash", "math", "matmul"])
def test_qk_head_dim_narrower_than_v(kernel):
    """YOLO11's attention has q/k of 32 channels per head and v of 64: fused kernels want one head dim, so the policy
    zero-pads q and k (scores and scale unchanged). Every kernel must still give softmax(q k^T / sqrt(32)) v."""
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, 300, 32), torch.randn(2, 3, 300, 32)
    v = torch.randn(2, 3, 300, 64)
    ref = torch.softmax(q.double() @ k.double().transpose(-2, -1) / 32**0.5, dim=-1) @ v.double()
    kernels.set_kernel(kernel)
    out = kernels.attention(q, k, v)
    assert out.shape == v.shape
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-5)


def test_auto_on_cpu_waits_longer_for_flash_where_qk_is_padded():
    """YOLO11's attention (q/k 32 channels, v 64): flash would run q and k zero-padded, a third more arithmetic, so
    plain matmul keeps more sizes (YOLO11n's C2PSA at 640: 400 tokens)."""
    assert kernels.select(CPU, torch.float32, 64, 400, qk_dim=32).kernel == "matmul"
    assert kernels.select(CPU, torch.float32, 64, 400).kernel == "flash"  # same size, equal head dims
    assert kernels.select(CPU, torch.float32, 64, kernels.CPU_FLASH_MIN_TOKENS_PADDED, qk_dim=32).kernel == "flash"


def test_yolo11_attention_runs_ultralytics_forward_where_plain_matmul_wins(monkeypatch):
    """Inference where the policy picks matmul: Ultralytics' own forward (its layout, no copies); flash otherwise, and
    always our path with gradients."""
    from ultralytics.nn.modules import block

    from detector.attention import PSAttention

    calls = []
    real = block.Attention.forward
    monkeypatch.setattr(block.Attention, "forward", lambda self, x: calls.append(x.shape[-1]) or real(self, x))
    m = PSAttention(128, 2, 0.5).eval()
    with torch.no_grad():
        small, large = m(torch.randn(1, 128, 20, 20)), m(torch.randn(1, 128, 24, 24))  # 400 and 576 tokens
    m(torch.randn(1, 128, 20, 20))  # with gradients
    assert calls == [20]
    kernels.set_kernel("flash")
    with torch.no_grad():
        m(torch.randn(1, 128, 20, 20))
    assert calls == [20]  # a forced fused kernel is honoured


def test_auto_hands_pytorch_its_order_only_during_the_call(monkeypatch):
    """The eager path's lean priority pin: inside the SDPA call PyTorch's priority order starts with the policy's
    kernel and its fallbacks (what `sdpa_kernel(..., set_priority=True)` would set), and afterwards the caller's own
    order is back, whatever it was, on success and on error."""
    from torch.nn.attention import SDPBackend

    seen = []
    real_sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        seen.append(tuple(torch._C._get_sdp_priority_order()))
        return real_sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    q = torch.randn(1, 2, 16, 32)
    users = [int(b) for b in (SDPBackend.MATH, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.FLASH_ATTENTION,
                              SDPBackend.CUDNN_ATTENTION, SDPBackend.OVERRIDEABLE)]
    before = torch._C._get_sdp_priority_order()
    try:
        torch._C._set_sdp_priority_order(users)
        out = kernels._run("cudnn", q, q, q, ("flash", "efficient", "math"))  # runs as math on a CPU
        assert seen[-1][:4] == tuple(int(b) for b in (SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION,
                                                      SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH))
        assert sorted(seen[-1]) == sorted(users)
        assert torch._C._get_sdp_priority_order() == users
        torch.testing.assert_close(out, kernels.matmul_attention(q, q, q))
        with pytest.raises(RuntimeError):
            kernels._run("flash", q, q[..., :16], q, ("math",))  # q and k of different widths: SDPA raises
        assert torch._C._get_sdp_priority_order() == users
    finally:
        torch._C._set_sdp_priority_order(before)
