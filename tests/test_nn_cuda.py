"""fastconv.nn on the GPU ("cuda" backend), and the pieces of it that run without one.

GPU tests (@pytest.mark.gpu; skipped with the reason without CuPy, a CUDA build or a device):
the cnn1 forward/backward on the GPU equals the CPU's for the same weights and batch; a few fit
steps give close losses; to("cuda") / to("cpu") round-trips weights exactly; save/load; dropout
masks and max-pool gradients bit-identical to the CPU; the CLI's --device cuda.
Always run: the clear errors of model.to("cuda") / Sequential(device="cuda") / fastconv train
--device cuda without CuPy, a CUDA build or a GPU; max_pool2d_backward's geometry keywords
(validated, same CPU result); MaxPooling2D passing its geometry; optimizer state moving with to().
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import fastconv
import numpy as np
import pytest
from conftest import assert_close, assert_identical
from fastconv import _C, cli, models, nn
from fastconv.nn import backend as nn_backend

DATA = Path(
    os.environ.get("FASTCONV_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)


def _batch(rng, n=16, classes=10):
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, classes, size=n)
    return x, y


def _scaled_close(actual, expected, name, rel=2e-5, rtol=1e-4):
    """float32 results of different summation orders: atol relative to the array's scale."""
    expected = np.asarray(expected)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    assert_close(actual, expected, rel * max(scale, 1e-30), rtol, name)


# ---- without a GPU: the errors ----------------------------------------------------------------


@pytest.fixture
def no_cupy(monkeypatch):
    """`import cupy` fails (as when it is not installed) and no cached "cuda" backend exists."""
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.delitem(nn_backend._CACHE, "cuda", raising=False)


def _fake_cupy(monkeypatch, count):
    def get_count():
        if isinstance(count, Exception):
            raise count
        return count

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_count))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.delitem(nn_backend._CACHE, "cuda", raising=False)


def test_to_cuda_without_cupy_names_the_extra(no_cupy):
    model = models.build("cnn1", seed=0)
    before = model.get_weights()
    with pytest.raises(ImportError, match=r'pip install "fastconv\[cuda\]"'):
        model.to("cuda")
    # nothing moved: still a CPU model with the same weights, and it still trains
    assert model.device == "cpu"
    for a, b in zip(model.get_weights(), before):
        assert_identical(a, b, "weights after the failed to('cuda')")
    assert all(isinstance(p, np.ndarray) for lyr in model.layers for p in lyr.params.values())
    with pytest.raises(ImportError, match=r"fastconv\[cuda\]"):
        nn.Sequential([nn.Flatten(), nn.Dense(10)], input_shape=(1, 28, 28), device="cuda")
    with pytest.raises(ImportError, match=r"fastconv\[cuda\]"):
        models.build("softmax", device="cuda")


def test_to_cuda_without_cuda_build_or_device(monkeypatch):
    model = models.build("softmax", seed=0)
    _fake_cupy(monkeypatch, 0)
    monkeypatch.setattr(_C, "cuda_built", False, raising=False)
    with pytest.raises(RuntimeError, match="built without CUDA support.*FASTCONV_CUDA=ON"):
        model.to("cuda")
    monkeypatch.setattr(_C, "cuda_built", True, raising=False)
    with pytest.raises(RuntimeError, match="no CUDA device is visible"):
        model.to("cuda")
    _fake_cupy(monkeypatch, RuntimeError("cudaErrorNoDevice"))
    with pytest.raises(RuntimeError, match="no CUDA device is visible.*cudaErrorNoDevice"):
        model.to("cuda")
    assert model.device == "cpu"
    assert "cuda" not in nn_backend._CACHE  # a failed build is not cached: a retry checks again


def test_cli_device_cuda_without_cupy_fails_clearly(no_cupy, tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "softmax", "--device", "cuda", "--out", str(tmp_path / "run")])
    msg = str(exc.value.code)
    assert msg.startswith("fastconv train: --device cuda:")
    assert 'pip install "fastconv[cuda]"' in msg
    assert not (tmp_path / "run").exists()  # failed before loading data or writing anything
    # the real exit status and stderr of the script
    code = (
        "import sys; sys.modules['cupy'] = None; from fastconv import cli; "
        f"sys.exit(cli.main(['train', 'softmax', '--device', 'cuda', '--out', {str(tmp_path)!r}]))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode != 0
    assert (
        "fastconv train: --device cuda: device 'cuda' needs CuPy: pip install \"fastconv[cuda]\""
        in r.stderr
    )
    assert "Traceback" not in r.stderr


def test_cli_device_choices():
    with pytest.raises(SystemExit):
        cli.main(["train", "softmax", "--device", "tpu"])


# ---- max_pool2d_backward's geometry keywords (CPU) --------------------------------------------

_GEOMETRIES = [
    dict(kernel_size=2),
    dict(kernel_size=2, stride=2, padding="valid"),
    dict(kernel_size=3, stride=2),  # overlapping windows
    dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0)),
    dict(kernel_size=2, stride=2, padding="same"),
    dict(kernel_size=3, stride=2, padding="same"),
]


@pytest.mark.parametrize(
    "geo", _GEOMETRIES, ids=lambda g: ",".join(f"{k}={v}" for k, v in g.items())
)
def test_max_pool2d_backward_geometry_same_result_on_cpu(rng, geo):
    x = rng.standard_normal((2, 3, 9, 7)).astype(np.float32)
    x[0, 0, :2, :2] = 1.0  # ties
    y, idx = fastconv.max_pool2d(x, return_indices=True, **geo)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    want = fastconv.max_pool2d_backward(dy, idx, x.shape)
    got = fastconv.max_pool2d_backward(dy, idx, x.shape, **geo)
    assert got.dtype == np.float32
    assert got.shape == x.shape
    assert_identical(got, want, f"dx with {geo}")


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        (dict(kernel_size="2"), TypeError, "kernel_size"),
        (dict(kernel_size=2.0), TypeError, "kernel_size"),
        (dict(kernel_size=True), TypeError, "kernel_size"),
        (dict(kernel_size=(2, 2, 2)), TypeError, "kernel_size"),
        (dict(kernel_size=2, stride=1.5), TypeError, "stride"),
        (dict(kernel_size=2, padding=True), TypeError, "padding"),
        (dict(kernel_size=0), ValueError, "kernel_size must be >= 1"),
        (dict(kernel_size=2, stride=0), ValueError, "stride must be >= 1"),
        (dict(kernel_size=2, padding=-1), ValueError, "padding must be >= 0"),
        (dict(kernel_size=2, padding=2), ValueError, "padding must be at most half"),
        (dict(kernel_size=2, padding="full"), ValueError, "padding"),
        (dict(kernel_size=3), ValueError, "grad_output has shape"),  # not the forward's geometry
        (dict(kernel_size=2, stride=1), ValueError, "grad_output has shape"),
        (dict(kernel_size=9), ValueError, "kernel_size .* larger than the padded input"),
        (dict(stride=2), TypeError, "need kernel_size"),
        (dict(padding=1), TypeError, "need kernel_size"),
    ],
)
def test_max_pool2d_backward_geometry_validated(kwargs, err, match):
    x = np.arange(2 * 3 * 8 * 6, dtype=np.float32).reshape(2, 3, 8, 6)
    y, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    with pytest.raises(err, match=match):
        fastconv.max_pool2d_backward(np.ones_like(y), idx, x.shape, **kwargs)


def test_max_pool2d_backward_geometry_is_keyword_only():
    x = np.zeros((1, 1, 4, 4), np.float32)
    y, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    with pytest.raises(TypeError):
        fastconv.max_pool2d_backward(np.ones_like(y), idx, x.shape, 2)


def test_max_pooling2d_layer_passes_its_geometry(monkeypatch, rng):
    cpu = nn.get_backend("cpu")
    assert cpu.pool_geometry
    assert nn.get_backend("reference").pool_geometry
    seen = []
    real = cpu.max_pool2d_backward

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(cpu, "max_pool2d_backward", spy)
    layer = nn.MaxPooling2D(3, strides=2, padding="same")
    layer.build((2, 7, 7), "cpu")
    x = rng.standard_normal((2, 2, 7, 7)).astype(np.float32)
    y = layer.forward(x)
    dx = layer.backward(np.ones_like(y))
    assert seen == [dict(kernel_size=(3, 3), stride=(2, 2), padding="same")]
    assert dx.shape == x.shape


def test_backend_without_geometry_keywords_still_works(rng):
    """A registered backend whose max_pool2d_backward takes only the three positional arguments."""

    class OldOps:
        conv2d = staticmethod(fastconv.conv2d)
        conv2d_bwd_data = staticmethod(fastconv.conv2d_bwd_data)
        conv2d_bwd_weights = staticmethod(fastconv.conv2d_bwd_weights)
        max_pool2d = staticmethod(fastconv.max_pool2d)

        @staticmethod
        def max_pool2d_backward(grad_output, indices, input_shape):
            return fastconv.max_pool2d_backward(grad_output, indices, input_shape)

    old = nn.Backend("old-ops", np, np.float32, OldOps)
    assert not old.pool_geometry
    layer = nn.MaxPooling2D(2)
    layer.build((1, 4, 4), old)
    x = rng.standard_normal((1, 1, 4, 4)).astype(np.float32)
    assert layer.backward(np.ones_like(layer.forward(x))).shape == x.shape


def test_to_moves_optimizer_state(rng):
    x, y = _batch(rng, 20)
    model = models.build("softmax", seed=0)
    model.fit(x, y, batch_size=10, epochs=1, verbose=0, shuffle=False)
    m_before = model.optimizer.state[(1, "kernel")][0].copy()
    assert model.to("cpu") is model  # same device: nothing to do
    model.to("reference")
    m_ref = model.optimizer.state[(1, "kernel")][0]
    assert m_ref.dtype == np.float64
    assert model.optimizer.iterations == 2
    model.to("cpu")
    assert_identical(model.optimizer.state[(1, "kernel")][0], m_before, "Adam m after a round trip")
    assert model.optimizer.state[(1, "kernel")][0].dtype == np.float32


# ---- on the GPU -------------------------------------------------------------------------------


def _pair_of_models(name="cnn1", seed=0):
    cpu = models.build(name, seed=seed)
    gpu = models.build(name, seed=seed, device="cuda")
    for a, b in zip(cpu.get_weights(), gpu.get_weights()):  # weights are drawn on the host
        assert_identical(b, a, "initial weights, cuda vs cpu")
    return cpu, gpu


@pytest.mark.gpu
def test_cnn1_forward_backward_gpu_matches_cpu(rng):
    import cupy

    cpu, gpu = _pair_of_models("cnn1")
    assert gpu.device == "cuda"
    assert all(isinstance(p, cupy.ndarray) for lyr in gpu.layers for p in lyr.params.values())
    x, y = _batch(rng, 32)
    loss_c, z_c = cpu.loss_and_grads(x, y)
    loss_g, z_g = gpu.loss_and_grads(x, y)
    assert isinstance(loss_g, float)
    assert isinstance(z_g, cupy.ndarray)
    assert loss_g == pytest.approx(loss_c, rel=1e-5)
    _scaled_close(cupy.asnumpy(z_g), z_c, "logits, cuda vs cpu")
    for lc, lg in zip(cpu.layers, gpu.layers):
        for k in lc.params:
            assert isinstance(lg.grads[k], cupy.ndarray)
            _scaled_close(
                cupy.asnumpy(lg.grads[k]), lc.grads[k], f"{lc.name}.{k} grad, cuda vs cpu"
            )
    pred = gpu.predict(x)
    assert isinstance(pred, np.ndarray)
    assert pred.dtype == np.float32
    _scaled_close(pred, cpu.predict(x), "predict, cuda vs cpu")


@pytest.mark.gpu
@pytest.mark.parametrize(
    "make",
    [
        lambda: [
            nn.Conv2D(4, 3, padding=1),
            nn.ReLU(),
            nn.AveragePooling2D(2),
            nn.Flatten(),
            nn.Dense(10, activation="softmax"),
        ],
        lambda: [
            nn.Conv2D(6, 3, strides=2, activation="relu"),
            nn.MaxPooling2D(3, strides=2),
            nn.Flatten(),
            nn.Dense(16, activation="relu"),
            nn.Dense(10),
            nn.Softmax(),
        ],
        lambda: [nn.AveragePooling2D(3, strides=2, padding="same"), nn.Flatten(), nn.Dense(10)],
    ],
    ids=["avgpool-softmax", "overlapping-maxpool", "avgpool-same"],
)
@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "categorical_crossentropy"])
def test_small_models_gpu_match_cpu(rng, make, loss):
    import cupy

    cpu = nn.Sequential(make(), input_shape=(1, 12, 12), seed=3).compile("sgd", loss)
    gpu = nn.Sequential(make(), input_shape=(1, 12, 12), seed=3, device="cuda").compile("sgd", loss)
    x = rng.random((8, 1, 12, 12), dtype=np.float32)
    y = rng.integers(0, 10, 8)
    if loss == "categorical_crossentropy":
        y = np.eye(10, dtype=np.float32)[y]
    lc, zc = cpu.loss_and_grads(x, y)
    lg, zg = gpu.loss_and_grads(x, y)
    assert lg == pytest.approx(lc, rel=1e-5)
    _scaled_close(cupy.asnumpy(zg), zc, "logits")
    for a, b in zip(cpu.layers, gpu.layers):
        for k in a.params:
            _scaled_close(cupy.asnumpy(b.grads[k]), a.grads[k], f"{a.name}.{k} grad")


@pytest.mark.gpu
def test_maxpool_layer_gradient_bit_identical_to_cpu(rng):
    """Overlapping windows: the layer passes its geometry, so the GPU gathers (no atomics)."""
    import cupy

    x = rng.standard_normal((4, 3, 13, 11)).astype(np.float32)
    outs = {}
    for dev in ("cpu", "cuda"):
        layer = nn.MaxPooling2D(3, strides=2, padding="same")
        layer.build(x.shape[1:], dev)
        b = layer.backend
        y = layer.forward(b.asarray(x))
        dy_shape = y.shape
        dy = b.asarray(
            np.linspace(-1, 1, int(np.prod(dy_shape)), dtype=np.float32).reshape(dy_shape)
        )
        outs[dev] = (b.to_numpy(y), b.to_numpy(layer.backward(dy)))
    assert_identical(outs["cuda"][0], outs["cpu"][0], "max-pool y")
    assert_identical(outs["cuda"][1], outs["cpu"][1], "max-pool dx")
    # and the functional op with the geometry keywords
    y, idx = fastconv.max_pool2d(cupy.asarray(x), 3, 2, return_indices=True)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    got = fastconv.max_pool2d_backward(cupy.asarray(dy), idx, x.shape, kernel_size=3, stride=2)
    _, cidx = fastconv.max_pool2d(x, 3, 2, return_indices=True)
    assert_identical(cupy.asnumpy(got), fastconv.max_pool2d_backward(dy, cidx, x.shape), "dx")


@pytest.mark.gpu
def test_dropout_masks_same_on_gpu_and_cpu():
    import cupy

    outs = []
    for dev in ("cpu", "cuda"):
        layer = nn.Dropout(0.3)
        layer.build((5, 6, 7), dev)
        layer.rng = np.random.default_rng(11)
        x = layer.backend.asarray(np.ones((4, 5, 6, 7)))
        outs.append(layer.backend.to_numpy(layer.forward(x, training=True)))
    assert isinstance(layer._mask, cupy.ndarray)
    assert_identical(outs[1], outs[0], "dropout output, cuda vs cpu")


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["cnn1", "keras_cnn"])
def test_fit_few_steps_gpu_close_to_cpu(rng, name):
    cpu, gpu = _pair_of_models(name, seed=1)
    x, y = _batch(rng, 96)
    if cpu.loss.name == "categorical_crossentropy":  # keras_cnn trains on one-hot targets
        y = np.eye(10, dtype=np.float32)[y]
    hc = cpu.fit(x, y, batch_size=32, epochs=2, seed=5, verbose=0)
    hg = gpu.fit(x, y, batch_size=32, epochs=2, seed=5, verbose=0)
    for k in ("loss", "accuracy"):
        assert all(isinstance(v, float) for v in hg.history[k])
    np.testing.assert_allclose(hg.history["loss"], hc.history["loss"], rtol=2e-3)
    steps, lr = 2 * 96 // 32, cpu.optimizer.learning_rate
    for a, b in zip(gpu.get_weights(), cpu.get_weights()):
        assert isinstance(a, np.ndarray)
        # Adam moves each weight by about lr per step whatever the gradient's size, so where a
        # gradient is near zero a summation-order difference can flip the step's sign: a few
        # weights may differ by up to 2*lr*steps (the CPU alone, Winograd on vs off, shows
        # 0.26% of keras_cnn's conv2 weights beyond 2e-3, at most 5.4e-3). The rest must agree.
        diff = np.abs(a - b)
        assert diff.max() <= 2 * lr * steps, f"max |gpu - cpu| {diff.max():.3g}"
        assert np.mean(diff > 2e-3) < 0.01, f"{np.mean(diff > 2e-3):.2%} of weights beyond 2e-3"
    res_g = gpu.evaluate(x, y)
    res_c = cpu.evaluate(x, y)
    assert all(isinstance(v, float) for v in res_g)
    np.testing.assert_allclose(res_g, res_c, rtol=1e-2, atol=2e-2)


@pytest.mark.gpu
def test_fit_accepts_cupy_arrays(rng):
    """x, y already on the GPU give the same run as host arrays (batches gathered on the GPU)."""
    import cupy

    x, y = _batch(rng, 60)
    runs = []
    for data in ((x, y), (cupy.asarray(x), cupy.asarray(y))):
        model = models.build("cnn1", seed=2, device="cuda")
        h = model.fit(*data, batch_size=20, epochs=1, seed=3, verbose=0, validation_split=0.2)
        runs.append((h.history, model.get_weights(), model.predict(data[0])))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        assert_identical(a, b, "weights after fit from host vs device arrays")
    assert_identical(runs[0][2], runs[1][2], "predict from host vs device arrays")


@pytest.mark.gpu
def test_to_cuda_and_back_round_trips_exactly(rng):
    import cupy

    model = models.build("cnn2", seed=4)
    x, y = _batch(rng, 40)
    model.fit(x, y, batch_size=20, epochs=1, verbose=0)
    before = model.get_weights()
    moments = {k: v[0].copy() for k, v in model.optimizer.state.items()}
    model.to("cuda")
    assert model.device == "cuda"
    assert all(isinstance(p, cupy.ndarray) for lyr in model.layers for p in lyr.params.values())
    assert all(isinstance(v[0], cupy.ndarray) for v in model.optimizer.state.values())
    for a, b in zip(model.get_weights(), before):
        assert_identical(a, b, "weights on the GPU")
    model.to("cpu")
    for a, b in zip(model.get_weights(), before):
        assert a.dtype == np.float32
        assert_identical(a, b, "weights after cuda -> cpu")
    for k, v in model.optimizer.state.items():
        assert_identical(v[0], moments[k], f"Adam m {k} after cuda -> cpu")
    model.to("cuda").fit(x, y, batch_size=20, epochs=1, verbose=0)  # training goes on on the GPU


@pytest.mark.gpu
def test_save_load_weights_on_gpu(tmp_path, rng):
    import cupy

    gpu = models.build("cnn1", seed=7, device="cuda")
    x, y = _batch(rng, 30)
    gpu.fit(x, y, batch_size=10, epochs=1, verbose=0)
    path = tmp_path / "w.npz"
    gpu.save_weights(path)
    saved = np.load(path)
    for lyr in gpu.layers:
        for k, p in lyr.params.items():
            assert_identical(
                saved[f"{lyr.name}.{k}"], cupy.asnumpy(p), f"{lyr.name}.{k} in the file"
            )
    other_gpu = models.build("cnn1", seed=8, device="cuda").load_weights(path)
    cpu = models.build("cnn1", seed=9).load_weights(path)
    for a, b, c in zip(other_gpu.get_weights(), gpu.get_weights(), cpu.get_weights()):
        assert_identical(a, b, "loaded on the GPU")
        assert_identical(c, b, "loaded on the CPU")
    assert isinstance(other_gpu.layers[0].params["kernel"], cupy.ndarray)
    assert_identical(other_gpu.predict(x), gpu.predict(x), "predict after load")
    _scaled_close(cpu.predict(x), gpu.predict(x), "cpu predict from GPU-saved weights")


@pytest.mark.gpu
@pytest.mark.skipif(not (DATA / "mnist").is_dir(), reason=f"no MNIST copy at {DATA}")
def test_cli_train_device_cuda(tmp_path, capsys):
    metrics = {}
    for dev in ("cpu", "cuda"):
        out = tmp_path / dev
        rc = cli.main(
            [
                "train",
                "cnn1",
                "--device",
                dev,
                "--data",
                str(DATA),
                "--epochs",
                "1",
                "--limit",
                "2000",
                "--batch-size",
                "100",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        assert rc == 0
        text = capsys.readouterr().out
        assert ("GPU " in text) == (dev == "cuda")
        assert "test accuracy" in text
        metrics[dev] = json.loads((out / "metrics.json").read_text())
    m = metrics["cuda"]
    assert m["device"] == "cuda"
    assert metrics["cpu"]["device"] == "cpu"
    assert m["gpu"]
    assert m["gpu"] == m["fastconv"]["cuda_device"]
    assert metrics["cpu"]["gpu"] is None
    # same seed, same batches, same dropout draws: the two runs differ only by float32 rounding
    assert m["test_accuracy"] > 0.5  # 1 epoch on 2000 images: ~0.67 on the CPU
    assert abs(m["test_accuracy"] - metrics["cpu"]["test_accuracy"]) < 0.02
    np.testing.assert_allclose(m["history"]["loss"], metrics["cpu"]["history"]["loss"], rtol=2e-3)
