"""The SDPA area attention against a plain float64 reference, and against Ultralytics' own YOLO12 layers; YOLO11's
attention (C2PSA) on our kernels against Ultralytics' own."""

import math

import pytest
import torch
from ultralytics.nn.modules import block

from detector import kernels
from detector.attention import A2C2f, C2PSA, AreaAttention, PSAttention, use_sdpa

CASES = [  # dim, heads, area, H, W: YOLO12-like shapes, odd sizes, H*W not divisible by area, area > H*W
    (64, 2, 4, 20, 20),
    (128, 4, 1, 10, 10),
    (64, 2, 4, 13, 13),
    (96, 3, 7, 5, 9),
    (64, 1, 4, 7, 3),
    (32, 1, 8, 1, 3),
    (256, 8, 2, 6, 11),
    (64, 2, 5, 16, 16),
]

DEVICE_DTYPES = [("cpu", torch.float32)] + [
    pytest.param("cuda", dt, marks=pytest.mark.gpu) for dt in (torch.float16, torch.bfloat16, torch.float32)
]
# Tolerances relative to the output's scale. CUDA fp32 is looser than CPU fp32 because cuDNN runs fp32
# convolutions (qkv, pe, proj) in TF32 by default: ~1e-3 relative, whatever the attention kernel.
TOL = {("cpu", torch.float32): 2e-4, ("cuda", torch.float32): 2e-3, ("cuda", torch.float16): 2e-2,
       ("cuda", torch.bfloat16): 6e-2}


def reference(m: block.AAttn, x: torch.Tensor) -> torch.Tensor:
    """Area attention written the slow, obvious way: split the row-major tokens into runs of ceil(N/area) (the
    last one shorter when N does not divide), attend in each run with explicit softmax, add pe(v), project."""
    B, _, H, W = x.shape
    N, heads, hd, C = H * W, m.num_heads, m.head_dim, m.all_head_dim
    qkv = m.qkv(x).flatten(2).transpose(1, 2).reshape(B, N, heads, 3 * hd)
    outs = []
    for chunk in qkv.split(math.ceil(N / max(m.area, 1)), dim=1):
        q, k, v = chunk.permute(0, 2, 1, 3).split(hd, dim=-1)  # (B, heads, L, hd)
        w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hd), dim=-1)
        outs.append((w @ v).permute(0, 2, 1, 3).reshape(B, -1, C))
    out = torch.cat(outs, 1).transpose(1, 2).reshape(B, C, H, W)
    v = qkv[..., 2 * hd :].reshape(B, H, W, C).permute(0, 3, 1, 2)
    return m.proj(out + m.pe(v))


def available(device: str, dtype: torch.dtype, tokens: int = 64) -> list[str]:
    dev = torch.device(device, 0) if device == "cuda" else torch.device(device)
    return [k for k in kernels.KERNELS[1:] if kernels.kernel_runs(k, dev, dtype, 32, tokens)[0]]


def make_pair(dim, heads, area, device, dtype, seed):
    torch.manual_seed(seed)
    ref = block.AAttn(dim, heads, area)
    for p in ref.parameters():  # non-trivial weights, BN in eval mode with random statistics
        torch.nn.init.normal_(p, std=0.2)
    ref.eval()
    ours = AreaAttention(dim, heads, area).eval()
    ours.load_state_dict(ref.state_dict())
    return ref.double().to(device), ours.to(device, dtype)


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_every_kernel_matches_reference_forward_and_backward(case, device, dtype):
    dim, heads, area, H, W = case
    ref, ours = make_pair(dim, heads, area, device, dtype, seed=sum(case))
    x = torch.randn(2, dim, H, W, device=device, dtype=torch.float64)
    x_ref = x.clone().requires_grad_()
    y_ref = reference(ref, x_ref)
    g = torch.randn_like(y_ref)
    y_ref.backward(g)
    scale = y_ref.abs().max().item()
    kernel_names = available(device, dtype, tokens=math.ceil(H * W / area))
    assert "matmul" in kernel_names and "math" in kernel_names
    for name in kernel_names:
        kernels.set_kernel(name)
        ours.zero_grad()
        x_ours = x.to(dtype).requires_grad_()
        y = ours(x_ours)
        y.backward(g.to(dtype))
        tol = TOL[device, dtype]
        assert y.shape == y_ref.shape
        assert (y.double() - y_ref).abs().max().item() <= tol * scale, f"forward, kernel {name}"
        gx = (x_ours.grad.double() - x_ref.grad).abs().max().item()
        assert gx <= tol * x_ref.grad.abs().max().item() * 2, f"input grad, kernel {name}"
        g_ours, g_ref = ours.qkv.conv.weight.grad.double(), ref.qkv.conv.weight.grad
        assert (g_ours - g_ref).abs().max().item() <= tol * g_ref.abs().max().item() * 2, f"qkv grad, kernel {name}"


def test_divisible_sizes_reproduce_ultralytics_exactly():
    """Where H*W divides by area our split is YOLO12's: Ultralytics' own AAttn gives the same numbers."""
    for dim, heads, area, H, W in [(64, 2, 4, 20, 20), (128, 4, 1, 10, 10), (64, 2, 2, 8, 12)]:
        ref, ours = make_pair(dim, heads, area, "cpu", torch.float32, seed=dim + H)
        ref = ref.float()
        x = torch.randn(3, dim, H, W)
        for name in available("cpu", torch.float32):
            kernels.set_kernel(name)
            torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-5)


def test_channels_last_input_gives_same_result():
    ref, ours = make_pair(64, 2, 4, "cpu", torch.float32, seed=3)
    x = torch.randn(2, 64, 12, 12)
    torch.testing.assert_close(ours(x.contiguous(memory_format=torch.channels_last)), ours(x))


def test_ultralytics_a2c2f_state_dict_loads_and_matches():
    torch.manual_seed(0)
    theirs = block.A2C2f(128, 128, n=1, a2=True, area=4, residual=True, mlp_ratio=1.2).eval()
    ours = A2C2f(128, 128, n=1, a2=True, area=4, residual=True, mlp_ratio=1.2).eval()
    assert list(theirs.state_dict()) == list(ours.state_dict())
    assert all(a.shape == b.shape for a, b in zip(theirs.state_dict().values(), ours.state_dict().values()))
    ours.load_state_dict(theirs.state_dict())
    assert sum(isinstance(m, AreaAttention) for m in ours.modules()) == 2
    x = torch.randn(2, 128, 16, 16)
    for name in available("cpu", torch.float32):
        kernels.set_kernel(name)
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)


def test_use_sdpa_switches_a_stock_yolo12_in_place():
    from ultralytics.nn.tasks import DetectionModel

    from detector.glue.registry import stock_ultralytics

    torch.manual_seed(0)
    with stock_ultralytics():  # a stock YOLO12, as a pickled Ultralytics checkpoint holds
        stock = DetectionModel("yolo12n.yaml", verbose=False).eval()
    assert not any(isinstance(m, AreaAttention) for m in stock.modules())
    x = torch.rand(1, 3, 160, 224)
    expected = stock(x)[0]
    params_before = {k: v.data_ptr() for k, v in stock.state_dict().items()}
    assert use_sdpa(stock) == 8 + 5  # its 8 AAttn layers, and the 5 A2C2f blocks that hold them
    assert {k: v.data_ptr() for k, v in stock.state_dict().items()} == params_before  # same tensors, no copies
    torch.testing.assert_close(stock(x)[0], expected, rtol=1e-4, atol=1e-3)


# YOLO11's attention: (dim, heads, H, W). YOLO11n's C2PSA at 640 is (128, 2, 20, 20); q/k have half v's head dim.
PSA_CASES = [(128, 2, 20, 20), (64, 1, 5, 7), (256, 4, 10, 10), (128, 2, 1, 1), (192, 3, 9, 14)]


def make_psa_pair(dim, heads, seed):
    torch.manual_seed(seed)
    theirs = block.Attention(dim, heads, attn_ratio=0.5)
    for p in theirs.parameters():
        torch.nn.init.normal_(p, std=0.2)
    theirs.eval()
    ours = PSAttention(dim, heads, attn_ratio=0.5).eval()
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("case", PSA_CASES, ids=lambda c: "x".join(map(str, c)))
def test_psattention_matches_ultralytics_attention_forward_and_backward(case, batch):
    """Same weights, same numbers as Ultralytics' own matmul Attention, in fp32, with every CPU kernel (flash runs q
    and k zero-padded to v's head dim); gradients too, batch 1 included (the CPU BatchNorm layout bug)."""
    dim, heads, H, W = case
    theirs, ours = make_psa_pair(dim, heads, seed=sum(case))
    assert (ours.key_dim, ours.head_dim) == (theirs.key_dim, theirs.head_dim) and ours.key_dim != ours.head_dim
    x = torch.randn(batch, dim, H, W)
    g = torch.randn(batch, dim, H, W)
    x_ref = x.clone().requires_grad_()
    y_ref = theirs(x_ref)
    y_ref.backward(g)
    for name in ["auto", *available("cpu", torch.float32, tokens=H * W)]:
        kernels.set_kernel(name)
        ours.zero_grad()
        x_ours = x.clone().requires_grad_()
        y = ours(x_ours)
        y.backward(g)
        torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5, msg=f"forward, kernel {name}")
        torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-4, atol=1e-5, msg=f"input grad, kernel {name}")
        for (n, a), b in zip(ours.named_parameters(), theirs.parameters()):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-4, msg=f"{n} grad, kernel {name}")


def test_c2psa_has_ultralytics_parameters_and_outputs():
    torch.manual_seed(0)
    theirs = block.C2PSA(256, 256, n=2).eval()
    ours = C2PSA(256, 256, n=2).eval()
    assert [type(b.attn) for b in ours.m] == [PSAttention, PSAttention]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [p.shape for p in ours.state_dict().values()] == [p.shape for p in theirs.state_dict().values()]
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 256, 20, 20)
    for name in available("cpu", torch.float32, tokens=400):
        kernels.set_kernel(name)
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)


def test_use_sdpa_switches_a_stock_yolo11_in_place():
    from ultralytics.nn.tasks import DetectionModel

    from detector.glue.registry import stock_ultralytics

    torch.manual_seed(0)
    with stock_ultralytics():
        stock = DetectionModel("yolo11n.yaml", verbose=False).eval()
    assert type(stock.model[10]) is block.C2PSA and type(stock.model[10].m[0].attn) is block.Attention
    x = torch.rand(1, 3, 320, 256)
    expected = stock(x)[0]
    assert use_sdpa(stock) == 2  # its C2PSA block and the Attention layer in it
    assert type(stock.model[10].m[0].attn) is PSAttention
    torch.testing.assert_close(stock(x)[0], expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
def test_psattention_every_kernel_on_its_device(device, dtype):
    """YOLO11's attention with each kernel that runs on the device (CUDA: cuDNN/flash take q and k zero-padded to v's
    head dim), forward and backward, against Ultralytics' own layer in float64."""
    theirs, ours = make_psa_pair(128, 2, seed=5)
    theirs, ours = theirs.double().to(device), ours.to(device, dtype)
    x = torch.randn(2, 128, 20, 20, device=device, dtype=torch.float64)
    x_ref = x.clone().requires_grad_()
    y_ref = theirs(x_ref)
    g = torch.randn_like(y_ref)
    y_ref.backward(g)
    tol = TOL[device, dtype]
    for name in available(device, dtype, tokens=400):
        kernels.set_kernel(name)
        ours.zero_grad()
        x_ours = x.to(dtype).requires_grad_()
        y = ours(x_ours)
        y.backward(g.to(dtype))
        assert (y.double() - y_ref).abs().max().item() <= tol * y_ref.abs().max().item(), f"forward, kernel {name}"
        gx = (x_ours.grad.double() - x_ref.grad).abs().max().item()
        assert gx <= 2 * tol * x_ref.grad.abs().max().item(), f"input grad, kernel {name}"
