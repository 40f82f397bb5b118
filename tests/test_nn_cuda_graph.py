"""fit(cuda_graph=True): the training step captured as a CUDA graph (fastconv/nn/cuda_graph.py).

GPU tests (@pytest.mark.gpu; skipped with the reason without CuPy, a CUDA build or a device):
  - the two device-state kernels: _C.cuda.dropout_mask reads seeds[*step] and gives the CPU's
    mask bits; _C.cuda.adam_update reads lr_table[*step] and gives the CPU's update bits;
  - graph replays equal the same steps run uncaptured (GraphTrainer.capture_enabled = False),
    bit for bit, over two epochs with a shorter last batch, for cnn1 and keras_cnn (dropout):
    a replay that read a stale batch, mask, step size or counter would differ;
  - graph-mode fit close to the plain eager GPU fit (losses, weights: other Dense kernels);
  - after a graph-mode fit the model is as before (backends, dropout hooks) and trains on.
Always run (no GPU needed): the argument checks; graph_matmul (Dense's cuBLAS-free product)
against NumPy on the CPU kernels; Loss.device_sums against the loss; Adam.lr_at; Dropout's
mask_source hook and next_seed order. The CUDA kernels' shared generator is checked on the CPU
in tests/test_dropout.py (test_cuda_lane_order_gives_the_cpu_mask), and GraphTrainer's host-side
flow on a simulated device in tests/test_nn_cuda_graph_sim.py.
"""

from __future__ import annotations

import fastconv
import numpy as np
import pytest
from conftest import assert_close, assert_identical
from fastconv import _C, models
from fastconv.nn import Dense, Dropout, Flatten, Sequential, losses, optimizers
from fastconv.nn import cuda_graph as graph_mod


def _data(rng, name, n):
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, size=n)
    if name == "keras_cnn":  # compiled with categorical_crossentropy: one-hot targets
        y = np.eye(10, dtype=np.float32)[y]
    return x, y


# ---- without a GPU -------------------------------------------------------------------------------


def test_cuda_graph_must_be_a_bool(rng):
    model = models.build("cnn1", seed=0)
    x, y = _data(rng, "cnn1", 8)
    with pytest.raises(TypeError, match="cuda_graph must be a bool, got 'yes'"):
        model.fit(x, y, cuda_graph="yes", verbose=0)


def test_cuda_graph_needs_the_gpu_and_adam(rng):
    x, y = _data(rng, "cnn1", 8)
    model = models.build("cnn1", seed=0)
    with pytest.raises(ValueError, match="needs the model on device 'cuda'.*'cpu'"):
        model.fit(x, y, cuda_graph=True, verbose=0)
    sgd = models.build("cnn1", seed=0, compile=False).compile("sgd")
    with pytest.raises(ValueError, match="supports the Adam optimizer only, got SGD"):
        sgd.fit(x, y, cuda_graph=True, verbose=0)
    assert model.optimizer.iterations == 0  # refused before any step


@pytest.mark.parametrize(("trans_a", "trans_b"), [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize(("n", "k", "m"), [(7, 33, 10), (20, 980, 10), (12, 160, 50)])
def test_graph_matmul_is_the_product(rng, trans_a, trans_b, n, k, m):
    a = rng.standard_normal((k, n) if trans_a else (n, k), dtype=np.float32)
    b = rng.standard_normal((m, k) if trans_b else (k, m), dtype=np.float32)
    expected = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b)
    got = graph_mod.graph_matmul(a, b, trans_a, trans_b)
    assert got.shape == (n, m)
    assert_close(got, expected, 1e-5 * np.sqrt(k), 1e-4, "graph_matmul")
    out = np.full((n, m), np.nan, np.float32)
    assert graph_mod.graph_matmul(a, b, trans_a, trans_b, out=out) is out
    assert_identical(out, got, "graph_matmul out=")


def test_graph_matmul_rejects_mismatched_sizes(rng):
    with pytest.raises(ValueError, match="inner sizes differ"):
        graph_mod.graph_matmul(np.ones((3, 4), np.float32), np.ones((5, 2), np.float32))


@pytest.mark.parametrize(
    "loss_name", ["sparse_categorical_crossentropy", "categorical_crossentropy"]
)
def test_device_sums_are_the_loss_terms(rng, loss_name):
    loss = losses.get(loss_name)
    z = rng.standard_normal((12, 10), dtype=np.float32)
    labels = rng.integers(0, 10, size=12)
    y = labels if loss_name.startswith("sparse") else np.eye(10, dtype=np.float32)[labels]
    total, dz, correct = loss.device_sums(z, y)
    mean, dz_ref, correct_ref = loss.with_accuracy(z, y)
    assert np.ndim(total) == 0  # arrays, never read back here
    assert np.ndim(correct) == 0
    assert float(total) / len(z) == pytest.approx(mean, rel=1e-5)
    assert_close(dz, dz_ref, 1e-7, 1e-5, "dz")
    assert int(correct) == correct_ref


def test_adam_lr_at_is_the_steps_size():
    opt = optimizers.Adam(learning_rate=3e-3, beta_1=0.8, beta_2=0.99)
    p, g = np.ones(4, np.float32), np.full(4, 0.5, np.float32)
    for t in range(1, 5):
        opt.step([("w", p, g)])
        assert opt._lr_t == opt.lr_at(t)
    assert opt.lr_at(1) == pytest.approx(3e-3 * np.sqrt(1 - 0.99) / (1 - 0.8))


def test_dropout_mask_source_and_seed_order(rng):
    """next_seed draws what call() draws, in order; with mask_source the layer uses the given
    mask in forward and backward and draws nothing."""
    a, b = Dropout(0.4), Dropout(0.4)
    for layer in (a, b):
        layer.build((6,), "cpu")
        layer.rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 6), dtype=np.float32)
    drawn = []
    for _ in range(3):
        a.forward(x, training=True)
        drawn.append(a._seed)
    assert drawn == [b.next_seed() for _ in range(3)]
    mask = (rng.random((3, 6)) < 0.6).astype(np.float32) / np.float32(0.6)
    a.mask_source = lambda shape, keep: mask
    state = a.rng.bit_generator.state
    assert_identical(a.forward(x, training=True), x * mask, "forward with mask_source")
    assert_identical(a.backward(x), x * mask, "backward with mask_source")
    assert a.rng.bit_generator.state == state
    assert_identical(a.forward(x, training=False), x, "inference")


# ---- on a GPU ------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("keep", [0.5, 0.8])
def test_dropout_mask_kernel_is_the_cpu_mask(keep):
    import cupy

    seeds = np.array([3, 2**64 - 1, 12345], dtype=np.uint64)
    n = 3 * 16384 + 21
    table, step = cupy.asarray(seeds), cupy.asarray(np.array([1], np.int32))
    mask = cupy.full(n, cupy.nan, dtype=cupy.float32)
    stream = cupy.cuda.get_current_stream()
    _C.cuda.dropout_mask(0, stream.ptr, mask.data.ptr, n, keep, table.data.ptr, step.data.ptr)
    expected = np.empty(n, np.float32)
    _C.dropout(np.ones(n, np.float32), keep, int(seeds[1]), mask_out=expected)
    assert_identical(cupy.asnumpy(mask), expected, "GPU mask vs CPU mask for seeds[step]")


@pytest.mark.gpu
def test_adam_kernel_is_the_cpu_update(rng):
    import cupy

    n = 70_001
    p, g = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    m = rng.standard_normal(n, dtype=np.float32) * np.float32(0.1)
    v = rng.random(n, dtype=np.float32) * np.float32(0.01)
    lr = np.array([1e-3, 2.5e-4], np.float32)
    dp, dg, dm, dv = (cupy.asarray(a) for a in (p, g, m, v))
    dlr, step = cupy.asarray(lr), cupy.asarray(np.array([1], np.int32))
    ptr = [a.data.ptr for a in (dp, dm, dv, dg)]
    stream = cupy.cuda.get_current_stream().ptr
    _C.cuda.adam_update(0, stream, *ptr, n, dlr.data.ptr, step.data.ptr, 0.9, 0.999, 1e-7)
    _C.adam_update(p, g, m, v, float(lr[1]), 0.9, 0.999, 1e-7)
    for name, d, h in (("p", dp, p), ("m", dm, m), ("v", dv, v)):
        assert_identical(cupy.asnumpy(d), h, f"GPU Adam {name} vs CPU")


def _fit_pair(rng, name, capture_second=True, graph_first=True):
    """Two models from one seed trained on the same data: the first with cuda_graph=True, the
    second either uncaptured graph-mode steps or (graph_first=False) plain eager fit."""
    b = 100 if name == "cnn1" else 200
    x, y = _data(rng, name, 3 * b + b // 2)  # three full batches and a shorter last one
    runs = []
    for graph, capture in ((True, True), (graph_first, capture_second)):
        model = models.build(name, seed=3, device="cuda")
        old = graph_mod.GraphTrainer.capture_enabled
        graph_mod.GraphTrainer.capture_enabled = capture
        try:
            h = model.fit(x, y, batch_size=b, epochs=2, seed=4, verbose=0, cuda_graph=graph)
        finally:
            graph_mod.GraphTrainer.capture_enabled = old
        runs.append((model, h))
    return runs, x, y


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["cnn1", "keras_cnn"])
def test_graph_replays_equal_uncaptured_steps(rng, name):
    (graph, hg), (plain, hp) = _fit_pair(rng, name, capture_second=False)[0]
    assert hg.history == hp.history
    for a, b in zip(graph.get_weights(), plain.get_weights()):
        assert_identical(a, b, f"{name} weights: graph replays vs the same steps uncaptured")
    assert graph.optimizer.iterations == plain.optimizer.iterations == 8


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["cnn1", "keras_cnn"])
def test_graph_fit_close_to_eager_fit(rng, name):
    runs, x, y = _fit_pair(rng, name, graph_first=False)
    (graph, hg), (eager, he) = runs
    np.testing.assert_allclose(hg.history["loss"], he.history["loss"], rtol=2e-3)
    np.testing.assert_allclose(hg.history["accuracy"], he.history["accuracy"], atol=0.02)
    steps, lr = 8, eager.optimizer.learning_rate
    for a, b in zip(graph.get_weights(), eager.get_weights()):
        diff = np.abs(a - b)  # Adam's sign flips where a gradient is near zero (test_nn_cuda.py)
        assert diff.max() <= 2 * lr * steps, f"max |graph - eager| {diff.max():.3g}"
        assert np.mean(diff > 2e-3) < 0.01, f"{np.mean(diff > 2e-3):.2%} of weights beyond 2e-3"


@pytest.mark.gpu
def test_model_after_graph_fit_is_as_before(rng):
    model = Sequential(
        [Flatten(), Dense(32, activation="relu"), Dropout(0.3), Dense(10)],
        input_shape=(1, 28, 28),
        seed=1,
        device="cuda",
    ).compile("adam", metrics=["accuracy"])
    x, y = _data(rng, "cnn1", 90)
    backends = [layer.backend for layer in model.layers]
    h = model.fit(x, y, batch_size=20, epochs=2, verbose=0, cuda_graph=True, validation_split=0.1)
    assert len(h.history["val_loss"]) == 2
    assert np.isfinite(h.history["loss"]).all()
    assert [layer.backend for layer in model.layers] == backends
    assert model.layers[2].mask_source is None
    assert model.optimizer.iterations == 2 * 5
    model.fit(x, y, batch_size=20, epochs=1, verbose=0)  # eager training continues
    assert model.predict(x[:5]).shape == (5, 10)
    assert fastconv.info()["cuda_built"]
