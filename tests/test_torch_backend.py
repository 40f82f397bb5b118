"""fastconv.torch: the torch.ops.fastconv operators, the drop-in modules and convert().

- torch.library.opcheck on every op over a small catalogue (odd sizes, stride, dilation, groups,
  'same' / 'valid', no bias, batch 1): schema, autograd registration, fake kernels and
  AOTAutograd with dynamic shapes.
- The ops and converted models against stock PyTorch: forward and every gradient within the
  float32 budget; fallbacks (channels_last, float64, reflect padding, ceil_mode, ...) give
  PyTorch's own results; state_dict names unchanged.
- torch.compile(fullgraph=True) of a converted cnn1 (Inductor, needs a C++ compiler).
- DistributedDataParallel (gloo, 2 processes over loopback, mp.spawn): ranks bitwise equal, and
  equal to one process trained on the concatenated batch.
- GPU tests (marked gpu; they need torch with CUDA too) run the CUDA kernels under
  torch.cuda.set_sync_debug_mode("error"), so a host sync fails them.
Skipped, with the reason, where torch is not installed.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import tempfile
import time

import pytest

torch = pytest.importorskip(
    "torch", reason="fastconv.torch needs PyTorch (pip install 'fastconv[torch]')"
)

import fastconv  # noqa: E402
import fastconv.torch as ft  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from fastconv.torch import functional as fF  # noqa: E402
from torch import nn  # noqa: E402

ops = torch.ops.fastconv

# (name, x_shape, w_shape, stride, padding_mode, padding, dilation, groups, bias)
CONV_CASES = [
    ("odd", (2, 3, 7, 9), (4, 3, 3, 3), (1, 1), "explicit", (1, 1), (1, 1), 1, True),
    ("stride2_rect", (1, 2, 9, 8), (3, 2, 3, 2), (2, 1), "explicit", (0, 1), (1, 1), 1, True),
    ("dilation2_same", (2, 3, 8, 8), (4, 3, 3, 3), (1, 1), "same", (0, 0), (2, 2), 1, True),
    ("groups2_valid_nobias", (2, 4, 6, 7), (6, 2, 3, 3), (1, 1), "valid", (0, 0), (1, 1), 2, False),
    ("batch1_5x5_same", (1, 1, 12, 12), (5, 1, 5, 5), (1, 1), "same", (0, 0), (1, 1), 1, True),
]
# (name, x_shape, kernel, stride, padding_mode, padding, dilation, ceil_mode)
POOL_CASES = [
    ("k2", (2, 3, 7, 9), (2, 2), (2, 2), "explicit", (0, 0), (1, 1), False),
    ("k3s2p1", (1, 2, 9, 8), (3, 3), (2, 2), "explicit", (1, 1), (1, 1), False),
    ("overlap_k3s1", (2, 2, 6, 5), (3, 3), (1, 1), "explicit", (0, 0), (1, 1), False),
    ("dilation2_ceil", (1, 2, 9, 10), (3, 2), (2, 2), "explicit", (1, 1), (2, 3), True),
    ("same_k3s2", (1, 3, 7, 6), (3, 3), (2, 2), "same", (0, 0), (1, 1), False),
]
FUSED_CASES = [c for c in CONV_CASES if c[0] != "dilation2_same"] + [
    ("odd_out_s1", (1, 3, 9, 11), (5, 3, 3, 3), (1, 1), "explicit", (0, 0), (1, 1), 1, True),
]


def _ids(cases):
    return [c[0] for c in cases]


def _conv_tensors(case, requires_grad=True, device="cpu"):
    _, xs, ws, stride, mode, pad, dil, groups, bias = case
    g = torch.Generator().manual_seed(sum(xs) + sum(ws))
    x = torch.randn(xs, generator=g).to(device).requires_grad_(requires_grad)
    w = torch.randn(ws, generator=g).to(device).requires_grad_(requires_grad)
    b = torch.randn(ws[0], generator=g).to(device).requires_grad_(requires_grad) if bias else None
    return x, w, b, [*stride], mode, [*pad], [*dil], groups


def _torch_padding(mode, pad):
    return mode if mode != "explicit" else tuple(pad)


def _assert_close(actual, expected, name, atol=1e-4, rtol=1e-4):
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol, msg=lambda m: f"{name}: {m}")


# --- opcheck ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CONV_CASES, ids=_ids(CONV_CASES))
def test_opcheck_conv2d(case):
    x, w, b, *geometry = _conv_tensors(case)
    relu = CONV_CASES.index(case) % 2 == 1  # alternate, to keep the suite's time small
    torch.library.opcheck(ops.conv2d.default, (x, w, b, *geometry, relu))
    y = ops.conv2d(x.detach(), w.detach(), b, *geometry, False)
    dy = torch.randn_like(y)
    torch.library.opcheck(ops.conv2d_bwd_data.default, (dy, w.detach(), [*x.shape], *geometry))
    torch.library.opcheck(
        ops.conv2d_bwd_weights.default, (dy, x.detach(), [*w.shape], *geometry, b is not None)
    )


@pytest.mark.parametrize("case", POOL_CASES, ids=_ids(POOL_CASES))
def test_opcheck_max_pool2d(case):
    _, xs, kernel, stride, mode, pad, dilation, ceil_mode = case
    x = torch.randn(xs, generator=torch.Generator().manual_seed(1), requires_grad=True)
    args = ([*kernel], [*stride], mode, [*pad], [*dilation], ceil_mode)
    torch.library.opcheck(ops.max_pool2d.default, (x, *args))
    y, idx = ops.max_pool2d(x.detach(), *args)
    torch.library.opcheck(ops.max_pool2d_backward.default, (torch.randn_like(y), idx, [*xs], *args))


@pytest.mark.parametrize("case", FUSED_CASES, ids=_ids(FUSED_CASES))
def test_opcheck_conv2d_relu_maxpool2d(case):
    x, w, b, *geometry = _conv_tensors(case)
    torch.library.opcheck(ops.conv2d_relu_maxpool2d.default, (x, w, b, *geometry))
    y, codes = ops.conv2d_relu_maxpool2d(x.detach(), w.detach(), b, *geometry)
    dy = torch.randn_like(y)
    torch.library.opcheck(
        ops.conv2d_relu_maxpool2d_bwd_data.default, (dy, codes, w.detach(), [*x.shape], *geometry)
    )
    torch.library.opcheck(
        ops.conv2d_relu_maxpool2d_bwd_weights.default,
        (dy, codes, x.detach(), [*w.shape], *geometry, b is not None),
    )


def test_every_op_is_checked():
    checked = {"conv2d", "conv2d_bwd_data", "conv2d_bwd_weights", "max_pool2d",
               "max_pool2d_backward", "conv2d_relu_maxpool2d", "conv2d_relu_maxpool2d_bwd_data",
               "conv2d_relu_maxpool2d_bwd_weights"}  # fmt: skip
    assert set(ft._ops.op_names()) == checked


# --- the ops against PyTorch --------------------------------------------------------------------


def _grads(out, inputs, seed=0):
    dy = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    leaves = [t for t in inputs if t is not None and t.requires_grad]
    return torch.autograd.grad(out, leaves, dy)


@pytest.mark.parametrize("case", CONV_CASES, ids=_ids(CONV_CASES))
def test_conv2d_matches_torch(case):
    x, w, b, stride, mode, pad, dil, groups = _conv_tensors(case)
    y = fF.conv2d(x, w, b, stride, _torch_padding(mode, pad), dil, groups)
    ref = F.conv2d(x, w, b, stride, _torch_padding(mode, pad), dil, groups)
    _assert_close(y, ref, "output")
    for got, want, name in zip(_grads(y, (x, w, b)), _grads(ref, (x, w, b)), "xwb"):
        _assert_close(got, want, f"grad {name}", atol=1e-3)


@pytest.mark.parametrize("case", CONV_CASES, ids=_ids(CONV_CASES))
def test_conv2d_relu_and_partial_grads(case):
    """relu=True, and each subset of needed gradients computes exactly that subset."""
    x, w, b, *geometry = _conv_tensors(case)
    stride, mode, pad, dil, groups = geometry
    ref = F.relu(F.conv2d(x, w, b, stride, _torch_padding(mode, pad), dil, groups))
    y = ops.conv2d(x, w, b, *geometry, True)
    _assert_close(y, ref, "output")
    want = dict(zip("xwb", _grads(ref, (x, w, b))))
    for needed in ("x", "w", "b", "wb"):
        for name, t in zip("xwb", (x, w, b)):
            if t is not None:
                t.requires_grad_(name in needed)
        if b is None and needed == "b":
            continue
        y = ops.conv2d(x, w, b, *geometry, True)
        got = _grads(y, (x, w, b))
        assert len(got) == len([n for n in needed if n != "b" or b is not None])
        for name, g in zip([n for n in "xwb" if n in needed], got):
            _assert_close(g, want[name], f"grad {name} (needed {needed})", atol=1e-3)


@pytest.mark.parametrize("case", POOL_CASES[:4], ids=_ids(POOL_CASES[:4]))
def test_max_pool2d_matches_torch(case):
    _, xs, kernel, stride, _mode, pad, dilation, ceil_mode = case
    x = torch.randn(xs, generator=torch.Generator().manual_seed(2), requires_grad=True)
    y, idx = fF.max_pool2d(x, kernel, stride, pad, dilation, ceil_mode, return_indices=True)
    ref, ref_idx = F.max_pool2d(x, kernel, stride, pad, dilation, ceil_mode, return_indices=True)
    assert torch.equal(y, ref)
    assert torch.equal(idx, ref_idx)
    assert torch.equal(_grads(y, (x,))[0], _grads(ref, (x,))[0])


@pytest.mark.parametrize("case", FUSED_CASES, ids=_ids(FUSED_CASES))
def test_fused_matches_torch(case):
    x, w, b, stride, mode, pad, dil, groups = _conv_tensors(case)
    y = fF.conv2d_relu_max_pool2d(x, w, b, stride, _torch_padding(mode, pad), dil, groups)
    ref = F.max_pool2d(F.relu(F.conv2d(x, w, b, stride, _torch_padding(mode, pad), dil, groups)), 2)
    _assert_close(y, ref, "output")
    for got, want, name in zip(_grads(y, (x, w, b)), _grads(ref, (x, w, b)), "xwb"):
        _assert_close(got, want, f"grad {name}", atol=1e-3)


def test_unbatched_inputs():
    x = torch.randn(3, 9, 8, requires_grad=True)
    w = torch.randn(4, 3, 3, 3)
    _assert_close(fF.conv2d(x, w, None, 1, 1), F.conv2d(x, w, None, 1, 1), "conv2d")
    y, idx = fF.max_pool2d(x, 2, return_indices=True)
    ref, ref_idx = F.max_pool2d(x, 2, return_indices=True)
    assert torch.equal(y, ref)
    assert torch.equal(idx, ref_idx)
    _assert_close(fF.conv2d_relu_max_pool2d(x, w, None, 1, 1),
                  F.max_pool2d(F.relu(F.conv2d(x, w, None, 1, 1)), 2), "fused")  # fmt: skip


def test_ops_errors():
    x, w = torch.randn(1, 3, 5, 5), torch.randn(2, 3, 3, 3)
    with pytest.raises(TypeError, match="float32"):
        ops.conv2d(x.double(), w.double(), None, [1, 1], "explicit", [0, 0], [1, 1], 1, False)
    with pytest.raises(ValueError, match="groups"):
        ops.conv2d(x, w, None, [1, 1], "explicit", [0, 0], [1, 1], 2, False)
    with pytest.raises(ValueError, match="padding"):
        ops.conv2d(x, w, None, [1, 1], "reflect", [0, 0], [1, 1], 1, False)
    with pytest.raises(ValueError, match="kernel|input"):
        ops.conv2d(x, torch.randn(2, 3, 7, 7), None, [1, 1], "explicit", [0, 0], [1, 1], 1, False)


def test_fallbacks_match_torch():
    """Calls fastconv cannot run go to PyTorch's op and give its results and layouts."""
    x = torch.randn(2, 3, 8, 8)
    w = torch.randn(4, 3, 3, 3)
    xl = x.to(memory_format=torch.channels_last)
    y = fF.conv2d(xl, w, None, 1, 1)
    assert y.is_contiguous(memory_format=torch.channels_last)
    _assert_close(y, F.conv2d(xl, w, None, 1, 1), "channels_last")
    assert fF.conv2d(x.double(), w.double(), None, 1, 1).dtype == torch.float64
    # a dilated window that misses the input entirely: PyTorch returns -inf there
    xs = torch.randn(1, 1, 2, 9)
    assert torch.equal(fF.max_pool2d(xs, 2, 1, 1, 3), F.max_pool2d(xs, 2, 1, 1, 3))
    with pytest.raises(RuntimeError):  # PyTorch's own error for an invalid call
        fF.conv2d(x, torch.randn(4, 5, 3, 3))


# --- modules and convert ------------------------------------------------------------------------


def cnn1():
    return nn.Sequential(
        nn.Conv2d(1, 20, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(20, 20, 5, padding="same"), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Flatten(), nn.Linear(980, 10),
    )  # fmt: skip


def keras_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 75, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.2),
        nn.Conv2d(75, 100, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.2),
        nn.Flatten(), nn.Linear(1600, 500), nn.ReLU(), nn.Dropout(0.5), nn.Linear(500, 10),
    )  # fmt: skip


class Mixed(nn.Module):
    """What convert cannot fuse or must leave: a non-Sequential model, reflect padding, an
    AvgPool2d; and a ceil-mode pool, a pool with return_indices, groups and stride."""

    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(3, 8, 3, padding=1)
        self.conv_reflect = nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect")
        self.pool_ceil = nn.MaxPool2d(2, ceil_mode=True)
        self.conv_g = nn.Conv2d(8, 8, 3, stride=2, groups=4, bias=False)
        self.pool = nn.MaxPool2d(3, 1, padding=1, return_indices=True)
        self.avg = nn.AvgPool2d(2)

    def forward(self, x):
        x = F.relu(self.conv_a(x))
        x = self.pool_ceil(self.conv_reflect(x))
        x, _ = self.pool(self.conv_g(x))
        return self.avg(x).flatten(1)


def _compare_models(stock, converted, x, seed=0, atol=1e-4, params=None):
    torch.manual_seed(seed)
    ref = stock(x)
    torch.manual_seed(seed)
    out = converted(x)
    _assert_close(out, ref, "output", atol=atol)
    ref.square().sum().backward()
    out.square().sum().backward()
    got = dict((params or converted).named_parameters())
    for name, p in stock.named_parameters():
        _assert_close(got[name].grad, p.grad, f"grad {name}", atol=atol * 10, rtol=1e-3)


@pytest.mark.parametrize(("build", "shape"), [(cnn1, (5, 1, 28, 28)), (keras_cnn, (3, 1, 28, 28)),
                                              (Mixed, (2, 3, 13, 11))], ids=["cnn1", "keras_cnn", "mixed"])  # fmt: skip
def test_converted_model_matches_torch(build, shape):
    torch.manual_seed(0)
    stock = build()
    converted = copy.deepcopy(stock)
    params_before = [id(p) for p in converted.parameters()]
    # dropout=False: PyTorch's dropout masks, so the outputs compare in training mode too
    converted, report = ft.convert(converted, dropout=False, report=True)
    assert [id(p) for p in converted.parameters()] == params_before  # optimizers keep working
    assert list(converted.state_dict()) == list(stock.state_dict())
    _compare_models(stock, converted, torch.rand(shape))
    if build is Mixed:
        left = dict(report.left)
        assert "padding_mode='reflect'" in left["conv_reflect"]
        assert type(converted.pool_ceil) is ft.MaxPool2d
        assert "avg" in left
        assert type(converted.conv_a) is ft.Conv2d
        assert type(converted.pool) is ft.MaxPool2d
        assert not report.fused
    else:
        assert len(report.fused) == 2
        assert all(
            type(converted[i]) is ft.Conv2dReLUMaxPool2d
            for i in (0, 4 if build is keras_cnn else 3)
        )
        assert "2 fused" in str(report)


def test_module_constructor_and_state_dict_are_torchs():
    torch.manual_seed(3)
    mine = ft.Conv2d(3, 6, 4, padding="same", bias=False)
    torch.manual_seed(3)
    stock = nn.Conv2d(3, 6, 4, padding="same", bias=False)
    assert torch.equal(mine.weight, stock.weight)  # PyTorch's init
    assert list(mine.state_dict()) == list(stock.state_dict())
    x = torch.randn(2, 3, 9, 10)
    _assert_close(mine(x), stock(x), "even-kernel same padding")
    pool = ft.MaxPool2d(3, 2, 1)
    assert torch.equal(pool(x), nn.MaxPool2d(3, 2, 1)(x))


def test_fused_module_odd_and_too_small_outputs():
    conv = nn.Conv2d(2, 3, 3)
    seq = ft.convert(nn.Sequential(copy.deepcopy(conv), nn.ReLU(), nn.MaxPool2d(2)))
    x = torch.randn(1, 2, 5, 6)  # conv output 3x4: the pool floors the odd row
    _assert_close(seq(x), F.max_pool2d(F.relu(conv(x)), 2), "odd conv output")
    with pytest.raises(RuntimeError, match="too small"):  # 1x1 conv output: PyTorch's own error
        seq(x[..., :3, :3].contiguous())


def test_convert_rejects_non_modules():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        ft.convert("model")


# --- import and threads -------------------------------------------------------------------------


def _run_python(code, env_extra=None, unset=()):
    env = dict(os.environ, **(env_extra or {}))
    for name in unset:
        env.pop(name, None)
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_import_fastconv_does_not_import_torch():
    assert _run_python("import sys, fastconv; print('torch' in sys.modules)") == "False"


def test_threads_follow_torch_when_unset():
    code = "import fastconv.torch, fastconv; print(fastconv.get_num_threads())"
    assert _run_python(code, {"OMP_NUM_THREADS": "1"}, unset=["FASTCONV_NUM_THREADS"]) == "1"
    assert _run_python(code, {"OMP_NUM_THREADS": "1", "FASTCONV_NUM_THREADS": "2"}) == "2"


def test_import_shares_threads_with_torch():
    """import fastconv.torch puts fastconv's jobs on PyTorch's OpenMP team (one set of threads);
    share_threads_with_torch(False) goes back to fastconv's own pool."""
    code = (
        "import fastconv.torch as ft; a = ft.threads_shared_with_torch();"
        " ft.share_threads_with_torch(False); print(a, ft.threads_shared_with_torch())"
    )
    expected = "True False" if ft._threads.gomp_parallel_address() else "False False"
    assert _run_python(code) == expected


# --- torch.compile ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "backend",
    [
        "aot_eager",  # Dynamo + AOTAutograd over the fastconv ops, no code generation: seconds
        # Inductor generates and compiles C++ for the rest of the graph (needs g++): about 20 s
        # on an idle 2-core machine, 50 s under load, so it runs with the slow tests.
        pytest.param("inductor", marks=pytest.mark.slow),
    ],
)
# Inductor's own import of torch.jit warns (a PyTorch-internal deprecation, not ours).
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compile_fullgraph_converted_cnn1(backend):
    """torch.compile(fullgraph=True) traces the converted cnn1 in one graph (the fastconv ops stay
    opaque calls); its output and gradients equal stock PyTorch's."""
    torch.manual_seed(0)
    stock = cnn1()
    model = ft.convert(copy.deepcopy(stock))
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    try:
        _compare_models(stock, compiled, torch.rand(4, 1, 28, 28), params=model)
    finally:
        torch._dynamo.reset()


# --- DistributedDataParallel --------------------------------------------------------------------

DDP_STEPS, DDP_BATCH = 3, 4


def _ddp_batches():
    g = torch.Generator().manual_seed(7)
    return [(torch.rand(2 * DDP_BATCH, 1, 28, 28, generator=g),
             torch.randint(0, 10, (2 * DDP_BATCH,), generator=g)) for _ in range(DDP_STEPS)]  # fmt: skip


def _train(model, batches, rank=None):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for x, y in batches:
        if rank is not None:
            x, y = (
                x[rank * DDP_BATCH : (rank + 1) * DDP_BATCH],
                y[rank * DDP_BATCH : (rank + 1) * DDP_BATCH],
            )
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()


def _ddp_worker(rank, world, port, out_dir):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    fastconv.set_num_threads(1)
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        torch.manual_seed(0)
        model = DistributedDataParallel(ft.convert(cnn1()))
        _train(model, _ddp_batches(), rank)
        torch.save(model.module.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_gloo_two_processes():
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available in this torch build")
    with tempfile.TemporaryDirectory() as out_dir:
        ctx = mp.start_processes(_ddp_worker, args=(2, _free_port(), out_dir), nprocs=2,
                                 join=False, start_method="spawn")  # fmt: skip
        try:
            deadline = 120  # seconds; a hang fails the test instead of stalling the suite
            t0 = time.monotonic()
            while not ctx.join(timeout=1):
                if time.monotonic() - t0 > deadline:
                    raise AssertionError(f"DDP workers did not finish in {deadline} s")
        finally:
            for p in ctx.processes:
                if p.is_alive():
                    p.terminate()
        ranks = [torch.load(os.path.join(out_dir, f"rank{r}.pt")) for r in range(2)]
    for name in ranks[0]:
        assert torch.equal(ranks[0][name], ranks[1][name]), f"{name} differs between ranks"
    torch.manual_seed(0)
    single = ft.convert(cnn1())
    _train(single, _ddp_batches())
    for name, p in single.state_dict().items():
        _assert_close(ranks[0][name], p, f"DDP vs one process: {name}", atol=1e-5)


# --- CUDA ---------------------------------------------------------------------------------------


def _cuda_or_skip():
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device (CPU-only torch build or no GPU)")


@pytest.mark.gpu
@pytest.mark.parametrize("case", CONV_CASES, ids=_ids(CONV_CASES))
def test_cuda_ops_match_cpu_without_host_sync(case):
    """conv2d (ReLU fused), max_pool2d, the fused pair and all their backwards on the GPU equal
    the CPU's; the GPU side runs under set_sync_debug_mode("error"), so a host sync fails it."""
    _cuda_or_skip()

    def run(x, w, b, geometry, dys):
        y = ops.conv2d(x, w, b, *geometry, True)
        pooled = fF.max_pool2d(y, 2, return_indices=True) if min(y.shape[2:]) >= 2 else None
        fused = ops.conv2d_relu_maxpool2d(x, w, b, *geometry) if pooled is not None else None
        if dys is None:  # the CPU run draws them; the GPU run gets copies made beforehand
            g = torch.Generator().manual_seed(5)
            dys = [torch.randn(y.shape, generator=g)]
            dys += [torch.randn(fused[0].shape, generator=g)] if fused is not None else []
        leaves = [t for t in (x, w, b) if t is not None]
        grads = list(torch.autograd.grad(y, leaves, dys[0]))
        if fused is not None:
            grads += torch.autograd.grad(fused[0], leaves, dys[1])
        return (y, pooled, fused, grads), dys

    x, w, b, *geometry = _conv_tensors(case)
    c, dys = run(x, w, b, geometry, None)
    x, w, b, *geometry = _conv_tensors(case, device="cuda")
    dys = [d.cuda() for d in dys]
    torch.cuda.set_sync_debug_mode("error")
    try:
        g, _ = run(x, w, b, geometry, dys)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    _assert_close(g[0].cpu(), c[0], "conv2d")
    if c[1] is not None:
        assert torch.equal(g[1][0].cpu(), c[1][0])
        assert torch.equal(g[1][1].cpu(), c[1][1])
        _assert_close(g[2][0].cpu(), c[2][0], "fused")
        assert torch.equal(g[2][1].cpu(), c[2][1]), "fused codes"
    assert len(g[3]) == len(c[3])
    for got, want in zip(g[3], c[3]):
        _assert_close(got.cpu(), want, "grad", atol=1e-3)


@pytest.mark.gpu
def test_cuda_converted_cnn1_matches_torch():
    _cuda_or_skip()
    torch.manual_seed(0)
    stock = cnn1().cuda()
    converted = ft.convert(copy.deepcopy(stock))
    _compare_models(stock, converted, torch.rand(8, 1, 28, 28, device="cuda"), atol=1e-3)


# --- PyTorch's own OpInfo samples -----------------------------------------------------------------


def _opinfo(name):
    pytest.importorskip(
        "expecttest", reason="PyTorch's OpInfo database needs expecttest (pip install expecttest)"
    )
    from torch.testing._internal.common_methods_invocations import op_db

    return next(o for o in op_db if o.name == name and not o.variant_test_name)


def _counting_torch_ops(monkeypatch):
    """Replace the functional layer's view of torch.nn.functional by one that counts fallbacks."""
    import types

    counts = {"conv2d": 0, "max_pool2d": 0}

    def counted(name):
        def call(*args, **kwargs):
            counts[name] += 1
            return getattr(F, name)(*args, **kwargs)

        return call

    monkeypatch.setattr(
        fF, "F", types.SimpleNamespace(relu=F.relu, **{n: counted(n) for n in counts})
    )
    return counts


@pytest.mark.parametrize(
    "name",
    # 30 conv2d samples; 1,440 max_pool2d samples take about 15 s (slow)
    ["nn.functional.conv2d", pytest.param("nn.functional.max_pool2d", marks=pytest.mark.slow)],
)
def test_opinfo_samples(name, monkeypatch):
    """Every OpInfo sample input gives PyTorch's output (pooling: and indices) and gradients;
    every OpInfo error input is refused. conv2d samples all run on fastconv's kernels (unbatched
    included), and so do the max_pool2d ones (dilation and ceil_mode included) except those with
    a channels_last input (144 of 1,440), which go to PyTorch's op."""
    opinfo = _opinfo(name)
    ours = fF.conv2d if name.endswith("conv2d") else fF.max_pool2d
    counts = _counting_torch_ops(monkeypatch)
    samples = list(opinfo.sample_inputs("cpu", torch.float32, requires_grad=True))
    expect_fallbacks = 0
    for i, s in enumerate(samples):
        args, kwargs = (s.input, *s.args), dict(s.kwargs)
        if name.endswith("max_pool2d"):
            expect_fallbacks += not s.input.is_contiguous()  # channels_last
        got, want = ours(*args, **kwargs), opinfo.op(*args, **kwargs)
        if isinstance(want, tuple):
            assert torch.equal(got[1], want[1]), f"sample {i}: indices"
            got, want = got[0], want[0]
        _assert_close(got, want, f"sample {i} {tuple(s.input.shape)} {kwargs}")
        leaves = [t for t in (s.input, *s.args) if isinstance(t, torch.Tensor) and t.requires_grad]
        dy = torch.randn_like(want)
        for g, r in zip(
            torch.autograd.grad(got, leaves, dy), torch.autograd.grad(want, leaves, dy)
        ):
            _assert_close(g, r, f"sample {i} gradient", atol=1e-3)
    key = name.rsplit(".", 1)[1]
    assert counts[key] == expect_fallbacks, f"{counts[key]} of {len(samples)} samples fell back"
    for e in opinfo.error_inputs("cpu"):
        s = e.sample_input
        with pytest.raises((RuntimeError, ValueError, TypeError)):
            ours(s.input, *s.args, **s.kwargs)


@pytest.mark.parametrize("case", FUSED_CASES[:3], ids=_ids(FUSED_CASES[:3]))
def test_cuda_fused_composition_logic_on_cpu_tensors(case):
    """The GPU's fused pair is composed from conv2d + max_pool2d, its codes derived from the
    pool's indices and its backward a scatter through them (_cuda_kernels); that elementwise
    logic is device-agnostic, so it is checked here against the CPU's fused kernels."""
    from fastconv.torch import _cuda_kernels

    x, w, b, *geometry = (
        t.detach() if isinstance(t, torch.Tensor) else t for t in _conv_tensors(case)
    )
    y = ops.conv2d(x, w, b, *geometry, True)
    pooled, idx = ops.max_pool2d(y, [2, 2], [2, 2], "explicit", [0, 0], [1, 1], False)
    want_pooled, want_codes = ops.conv2d_relu_maxpool2d(x, w, b, *geometry)
    assert torch.equal(pooled, want_pooled)
    assert torch.equal(_cuda_kernels._codes_from_indices(pooled, idx, y.shape[3]), want_codes)
    dy = torch.randn(pooled.shape, generator=torch.Generator().manual_seed(3))
    dconv = _cuda_kernels._relu_maxpool2d_backward(dy, want_codes, y.shape)
    dx = ops.conv2d_bwd_data(dconv, w, [*x.shape], *geometry)
    want_dx = ops.conv2d_relu_maxpool2d_bwd_data(dy, want_codes, w, [*x.shape], *geometry)
    _assert_close(dx, want_dx, "grad input")
    dw, db = ops.conv2d_bwd_weights(dconv, x, [*w.shape], *geometry, True)
    want_dw, want_db = ops.conv2d_relu_maxpool2d_bwd_weights(
        dy, want_codes, x, [*w.shape], *geometry, True
    )
    _assert_close(dw, want_dw, "grad weight", atol=1e-3)
    _assert_close(db, want_db, "grad bias", atol=1e-3)


# --- the eager path's plans ---------------------------------------------------------------------


def test_plans_validate_once_and_name_bad_arguments():
    """fastconv.ops' pre-validated entries refuse a bad geometry when the plan is made, with the
    native checks' messages; the ops' CPU kernels check tensor shapes against the plan."""
    with pytest.raises(ValueError, match="groups"):
        fastconv.ops.ConvPlan(
            (1, 3, 5, 5), (2, 3, 3, 3), None, (1, 1), "explicit", (0, 0), (1, 1), 2
        )
    with pytest.raises(ValueError, match="bias"):
        fastconv.ops.ConvPlan(
            (1, 3, 5, 5), (2, 3, 3, 3), (3,), (1, 1), "explicit", (0, 0), (1, 1), 1
        )
    with pytest.raises(ValueError, match="stride"):
        fastconv.ops.PoolPlan((1, 1, 4, 4), (2, 2), (0, 2), "explicit", (0, 0), (1, 1), False)
    plan = fastconv.ops.ConvPlan(
        (1, 3, 5, 5), (2, 3, 4, 4), None, (1, 1), "valid", (0, 0), (1, 1), 1
    )
    assert plan.y_shape == (1, 2, 2, 2)
    assert plan.pooled_shape == (1, 2, 1, 1)
    assert fastconv.ops.ConvPlan((1, 3, 5, 5), (2, 3, 5, 5), None, (1, 1), "valid", (0, 0), (1, 1),
                                 1).pooled_shape is None  # fmt: skip
    x, w = torch.randn(1, 3, 5, 5), torch.randn(2, 3, 3, 3)
    with pytest.raises(ValueError, match="grad_output"):
        ops.conv2d_bwd_data(torch.randn(1, 2, 4, 4), w, [1, 3, 5, 5], [1, 1], "explicit", [0, 0],
                            [1, 1], 1)  # fmt: skip
    with pytest.raises(ValueError, match="indices"):
        ops.max_pool2d_backward(torch.randn(1, 1, 2, 2), torch.zeros(1, 1, 2, 1, dtype=torch.int64),
                                [1, 1, 4, 4], [2, 2], [2, 2], "explicit", [0, 0], [1, 1], False)  # fmt: skip
    with pytest.raises(ValueError, match="indices must lie"):
        ops.max_pool2d_backward(torch.randn(1, 1, 2, 2), torch.full((1, 1, 2, 2), 99),
                                [1, 1, 4, 4], [2, 2], [2, 2], "explicit", [0, 0], [1, 1], False)  # fmt: skip
    assert ops.conv2d(x, w, None, [1, 1], "explicit", [0, 0], [1, 1], 1, False).shape == (
        1,
        2,
        3,
        3,
    )


class _PassThrough(torch.overrides.TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def test_eager_backward_runs_only_the_passes_asked_for(monkeypatch):
    """A converted model's first layer (input needs no gradient) never runs bwd_data, on the
    eager path (no dispatcher) and through the fastconv:: ops, which give the same gradients."""
    calls = []
    for name in ("bwd_data", "bwd_weights", "fused_bwd_data", "fused_bwd_weights"):
        original = getattr(ft._ops._Planned, name)
        monkeypatch.setattr(
            ft._ops._Planned, name,
            lambda self, *a, _n=name, _f=original: calls.append(_n) or _f(self, *a),
        )  # fmt: skip
    torch.manual_seed(0)
    model = ft.convert(cnn1())
    x = torch.randn(2, 1, 28, 28)
    model(x).sum().backward()
    assert sorted(calls) == ["fused_bwd_data", "fused_bwd_weights", "fused_bwd_weights"]
    grads = [p.grad.clone() for p in model.parameters()]
    calls.clear()
    with _PassThrough():  # anything watching the dispatcher: the fastconv:: ops instead
        model.zero_grad()
        model(x).sum().backward()
    assert sorted(calls) == ["fused_bwd_data", "fused_bwd_weights", "fused_bwd_weights"]
    for g, p in zip(grads, model.parameters()):
        _assert_close(p.grad, g, "dispatcher vs eager")


def test_threads_shared_with_torch_give_the_same_results():
    """fastconv's jobs on PyTorch's OpenMP team (share_threads_with_torch) compute bit for bit
    what fastconv's own pool computes."""
    torch.manual_seed(0)
    model, x = ft.convert(keras_cnn()), torch.randn(3, 1, 28, 28)

    def grads():
        model.zero_grad()
        model.eval()
        model(x).square().sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    before, was_shared = fastconv.get_num_threads(), ft.threads_shared_with_torch()
    try:
        fastconv.set_num_threads(2)
        ft.share_threads_with_torch(False)
        assert not ft.threads_shared_with_torch()
        own = grads()
        if not ft.share_threads_with_torch(True):
            pytest.skip("PyTorch's OpenMP runtime was not found in this process")
        assert ft.threads_shared_with_torch()
        shared = grads()
    finally:
        ft.share_threads_with_torch(was_shared)
        fastconv.set_num_threads(before)
    assert ft.threads_shared_with_torch() == was_shared
    for a, b in zip(own, shared):
        assert torch.equal(a, b)


@pytest.mark.gpu
@pytest.mark.parametrize("case", POOL_CASES, ids=_ids(POOL_CASES))
def test_cuda_max_pool2d_dilation_and_ceil_mode(case):
    """fastconv::max_pool2d on the GPU, dilation and ceil_mode included (no fallback to
    PyTorch's op): values and indices equal the CPU kernel's, the backward too, no host sync."""
    _cuda_or_skip()
    _, xs, kernel, stride, mode, pad, dilation, ceil_mode = case
    args = ([*kernel], [*stride], mode, [*pad], [*dilation], ceil_mode)
    x = torch.randn(xs, generator=torch.Generator().manual_seed(3))
    y, idx = ops.max_pool2d(x, *args)
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(4))
    dx = ops.max_pool2d_backward(dy, idx, [*xs], *args)
    xg, dyg = x.cuda(), dy.cuda()
    torch.cuda.set_sync_debug_mode("error")
    try:
        gy, gidx = ops.max_pool2d(xg, *args)
        gdx = ops.max_pool2d_backward(dyg, gidx, [*xs], *args)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.equal(gy.cpu(), y)
    assert torch.equal(gidx.cpu(), idx)
    assert torch.equal(gdx.cpu(), dx)
    if mode == "explicit":  # the functional form keeps it on fastconv's kernels on the GPU too
        assert fF._pool_args(xg, kernel, stride, pad, dilation, ceil_mode) is not None


def test_dropout_on_fastconv_kernel():
    """fastconv.torch.Dropout (what convert puts in every nn.Dropout's place): PyTorch's distribution and scaling
    with fastconv's masks, repeatable under torch.manual_seed, the backward through the same
    mask; PyTorch's op where fastconv's cannot run (eval, p of 0 or 1, inplace, float64)."""
    x = torch.randn(4, 8, 16, 16, requires_grad=True)
    torch.manual_seed(1)
    y = fF.dropout(x, 0.25)
    torch.manual_seed(1)
    assert torch.equal(fF.dropout(x, 0.25), y)  # seeded from PyTorch's generator
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.02
    _assert_close(y[kept], x[kept] / 0.75, "kept values", atol=1e-6, rtol=1e-6)
    dy = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, dy)
    _assert_close(dx, torch.where(kept, dy / 0.75, 0.0), "gradient", atol=1e-6, rtol=1e-6)
    assert torch.equal(fF.dropout(x, 0.25, training=False), x)
    assert torch.equal(fF.dropout(x, 0.0), x)
    assert not fF.dropout(x, 1.0).any()
    assert fF.dropout(x.detach().double(), 0.5).dtype == torch.float64
    model, report = ft.convert(keras_cnn(), report=True)
    assert sum(note == "Dropout" for _, note in report.converted) == 3
    assert all(type(m) is ft.Dropout for m in model if isinstance(m, nn.Dropout))
    assert type(ft.convert(keras_cnn(), dropout=False)[3]) is nn.Dropout  # PyTorch's masks kept
    model(torch.rand(2, 1, 28, 28)).sum().backward()
