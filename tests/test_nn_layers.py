"""fastconv.nn layers, losses and optimizers: every backward pass against central finite differences.

Layers run on the "reference" backend (fastconv.reference, float64) so the finite differences are
exact to ~1e-8; a second group checks the native "cpu" backend (float32) against the reference.
"""

from __future__ import annotations

import fastconv as fc
import numpy as np
import pytest
from fastconv import nn
from fastconv.nn import (
    Activation,
    AveragePooling2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPooling2D,
    ReLU,
    Softmax,
    losses,
)

SEED = 1234


@pytest.fixture
def rng():
    return np.random.default_rng(SEED)


def _numgrad(f, a, idx, eps=1e-6):
    old = a[idx]
    a[idx] = old + eps
    fp = f()
    a[idx] = old - eps
    fm = f()
    a[idx] = old
    return (fp - fm) / (2 * eps)


def _sample(shape, rng, k=25):
    size = int(np.prod(shape))
    flat = rng.choice(size, size=min(k, size), replace=False)
    return [np.unravel_index(i, shape) for i in flat]


def check_layer(layer, x, rng, training=True, tol=1e-6):
    """d sum(r * layer(x)) / d(x, params) from backward() vs central differences at sampled entries."""
    if not layer.built:
        layer.build(x.shape[1:], "reference", np.random.default_rng(0))

    def run():
        if isinstance(layer, Dropout):
            layer.rng = np.random.default_rng(7)  # the same mask every call
        return layer.forward(x, training=training)

    out = run()
    r = rng.standard_normal(out.shape)
    dx = layer.backward(r)
    grads = {k: np.array(v) for k, v in layer.grads.items()}

    def f():
        return float((run() * r).sum())

    for idx in _sample(x.shape, rng):
        num = _numgrad(f, x, idx)
        assert abs(num - dx[idx]) <= tol * (1 + abs(num)), (
            f"{layer} dx{idx}: backward {dx[idx]} vs numeric {num}"
        )
    for k, p in layer.params.items():
        for idx in _sample(p.shape, rng):
            num = _numgrad(f, p, idx)
            assert abs(num - grads[k][idx]) <= tol * (1 + abs(num)), (
                f"{layer} d{k}{idx}: backward {grads[k][idx]} vs numeric {num}"
            )


@pytest.mark.parametrize(
    ("kw", "shape"),
    [
        (dict(filters=3, kernel_size=3), (2, 2, 7, 6)),
        (dict(filters=4, kernel_size=5, padding="same", activation="relu"), (2, 3, 8, 8)),
        (dict(filters=2, kernel_size=3, strides=2, padding=1), (1, 3, 9, 7)),
        (dict(filters=4, kernel_size=(3, 2), padding=(1, 0), use_bias=False), (2, 2, 6, 5)),
        (
            dict(filters=4, kernel_size=3, dilation_rate=2, groups=2, activation="relu"),
            (2, 4, 9, 9),
        ),
    ],
    ids=["valid", "same-relu", "stride2-pad1", "rect-nobias", "dilated-groups"],
)
def test_conv2d_backward(kw, shape, rng):
    check_layer(Conv2D(**kw), rng.standard_normal(shape), rng)


@pytest.mark.parametrize(
    ("kw", "shape"),
    [
        (dict(pool_size=2), (2, 3, 6, 6)),
        (dict(pool_size=3, strides=2), (1, 2, 7, 7)),
        (dict(pool_size=2, padding="same"), (2, 2, 5, 5)),
        (dict(pool_size=(2, 3)), (1, 2, 5, 7)),
    ],
    ids=["2x2", "overlap3s2", "same-odd", "rect"],
)
@pytest.mark.parametrize("cls", [MaxPooling2D, AveragePooling2D])
def test_pool_backward(cls, kw, shape, rng):
    layer = cls(**kw)
    x = rng.standard_normal(shape)
    check_layer(layer, x, rng)
    assert layer.forward(x).shape[1:] == layer.output_shape


@pytest.mark.parametrize(
    ("layer", "in_shape"),
    [
        (Conv2D(3, 3), (2, 7, 6)),
        (Conv2D(4, 5, padding="same"), (3, 8, 8)),
        (Conv2D(2, 3, strides=2, padding=1), (3, 9, 7)),
        (Conv2D(4, (3, 2), padding=(1, 0)), (2, 6, 5)),
        (Conv2D(4, 3, dilation_rate=2, groups=2), (4, 9, 9)),
        (MaxPooling2D(2), (3, 7, 6)),
        (MaxPooling2D(3, strides=2), (2, 7, 7)),
        (MaxPooling2D(2, padding="same"), (2, 5, 5)),
        (MaxPooling2D((2, 3), strides=(3, 4), padding="same"), (1, 7, 9)),
        (AveragePooling2D(3, strides=1, padding="same"), (1, 4, 5)),
    ],
    ids=str,
)
def test_output_shape_is_the_kernels_rule(layer, in_shape, rng):
    """compute_output_shape comes from the ops' geometry (cpp/params.cpp), and the forward pass
    on the native backend returns exactly that shape."""
    out = layer.build(in_shape, "cpu", np.random.default_rng(0))
    x = rng.standard_normal((2, *in_shape)).astype(np.float32)
    if isinstance(layer, Conv2D):
        w_shape = layer.params["kernel"].shape
        want = fc.ops.conv2d_output_shape((2, *in_shape), w_shape, **layer._kw())
    else:
        want = fc.ops.max_pool2d_output_shape(
            (2, *in_shape), layer.pool_size, layer.strides, layer.padding
        )
    assert (2, *out) == want == layer.forward(x).shape


@pytest.mark.parametrize(
    ("layer", "in_shape", "match"),
    [
        (Conv2D(2, 9), (1, 8, 8), r"kernel \(9, 9\) does not fit input \(1, 8, 8\)"),
        (Conv2D(2, 3, dilation_rate=4), (1, 8, 8), "does not fit input .*dilated"),
        (MaxPooling2D(4), (1, 3, 3), r"pool \(4, 4\) larger than input \(1, 3, 3\)"),
        (Conv2D(2, 3, groups=2), (3, 8, 8), r"input channels \(3\) must be divisible by groups"),
    ],
    ids=["conv", "dilated", "pool", "groups"],
)
def test_output_shape_refusals_name_the_layer_and_input(layer, in_shape, match):
    with pytest.raises(ValueError, match=match):
        layer.compute_output_shape(in_shape)


def test_ops_output_shapes_refuse_bad_geometry():
    with pytest.raises(ValueError, match="larger than the padded input"):
        fc.ops.conv2d_output_shape((1, 1, 4, 4), (1, 1, 5, 5))
    with pytest.raises(ValueError, match="groups=2 must divide"):
        fc.ops.conv2d_output_shape((1, 3, 8, 8), (2, 1, 3, 3), groups=2)
    with pytest.raises(ValueError, match="larger than the padded input"):
        fc.ops.max_pool2d_output_shape((1, 1, 3, 3), 4)
    with pytest.raises(TypeError, match="x_shape"):
        fc.ops.conv2d_output_shape((1, 1, 4.5, 4), (1, 1, 3, 3))


def test_maxpool_same_matches_tf_shape(rng):
    layer = MaxPooling2D(2, padding="same")
    layer.build((1, 5, 5), "reference")
    x = rng.standard_normal((1, 1, 5, 5))
    y = layer.forward(x)
    assert y.shape == (1, 1, 3, 3)
    assert y[0, 0, 2, 2] == x[0, 0, 4, 4]  # the bottom-right window holds only the corner


def test_avgpool_values(rng):
    x = rng.standard_normal((2, 3, 4, 4))
    layer = AveragePooling2D(2)
    layer.build(x.shape[1:], "reference")
    np.testing.assert_allclose(layer.forward(x), x.reshape(2, 3, 2, 2, 2, 2).mean(axis=(3, 5)))
    same = AveragePooling2D(2, padding="same")
    same.build((1, 3, 3), "reference")
    y = same.forward(np.ones((1, 1, 3, 3)))
    np.testing.assert_allclose(y, np.ones((1, 1, 2, 2)))  # padded cells are not counted


@pytest.mark.parametrize(
    "kw",
    [
        dict(units=5),
        dict(units=4, activation="relu"),
        dict(units=6, activation="softmax"),
        dict(units=3, use_bias=False),
    ],
    ids=["linear", "relu", "softmax", "nobias"],
)
def test_dense_backward(kw, rng):
    check_layer(Dense(**kw), rng.standard_normal((4, 7)), rng)


@pytest.mark.parametrize(
    "layer",
    [Flatten(), Dropout(0.4), ReLU(), Softmax(), Activation(None), Activation("relu")],
    ids=["flatten", "dropout", "relu", "softmax", "linear", "activation-relu"],
)
def test_shape_and_activation_layers_backward(layer, rng):
    x = (
        rng.standard_normal((3, 2, 3, 4))
        if isinstance(layer, Flatten)
        else rng.standard_normal((3, 5))
    )
    check_layer(layer, x, rng)


def test_dropout_train_only(rng):
    layer = Dropout(0.5)
    layer.build((1000,), "reference")
    x = np.ones((4, 1000))
    np.testing.assert_array_equal(layer.forward(x, training=False), x)
    layer.rng = np.random.default_rng(0)
    y = layer.forward(x, training=True)
    assert set(np.unique(y)) <= {0.0, 2.0}
    assert 0.4 < (y == 0).mean() < 0.6


def test_relu_layer_does_not_overwrite_its_input(rng):
    x = rng.standard_normal((3, 4))
    keep = x.copy()
    layer = ReLU()
    layer.build((4,), "reference")
    np.testing.assert_array_equal(layer.forward(x), np.maximum(keep, 0))
    np.testing.assert_array_equal(x, keep)


def test_glorot_uniform_init_and_zero_bias():
    conv = Conv2D(20, 5)
    conv.build((20, 14, 14), "reference", np.random.default_rng(0))
    limit = np.sqrt(6 / (20 * 25 + 20 * 25))
    w = conv.params["kernel"]
    assert w.shape == (20, 20, 5, 5)
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.95 * limit
    np.testing.assert_array_equal(conv.params["bias"], 0)
    d = Dense(10)
    d.build((980,), "cpu" if _has_core() else "reference", np.random.default_rng(0))
    assert d.params["kernel"].shape == (980, 10)


# ---- losses --------------------------------------------------------------------------------------
def _naive_ce(z, onehot):
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return -np.mean(np.sum(onehot * np.log(p), axis=1))


@pytest.mark.parametrize("name", ["sparse_categorical_crossentropy", "categorical_crossentropy"])
def test_losses_value_and_gradient(name, rng):
    z = rng.standard_normal((5, 4)) * 3
    labels = rng.integers(0, 4, size=5)
    onehot = np.eye(4)[labels]
    y = labels if name.startswith("sparse") else onehot
    loss_fn = losses.get(name)
    loss, dz = loss_fn(z, y)
    assert loss == pytest.approx(_naive_ce(z, onehot), rel=1e-12)
    for idx in _sample(z.shape, rng):
        num = _numgrad(lambda: loss_fn(z, y)[0], z, idx)
        assert dz[idx] == pytest.approx(num, abs=1e-7)


def test_loss_is_stable_for_huge_logits():
    z = np.array([[1e4, 0.0, -1e4]], dtype=np.float32)
    loss, dz = losses.get("sparse_categorical_crossentropy")(z, np.array([1]))
    assert np.isfinite(loss)
    assert loss == pytest.approx(1e4)
    assert dz.dtype == np.float32
    assert np.all(np.isfinite(dz))
    np.testing.assert_allclose(dz, [[1.0, -1.0, 0.0]], atol=1e-6)


def test_loss_errors():
    with pytest.raises(ValueError, match="loss"):
        losses.get("mse")


# ---- optimizers ----------------------------------------------------------------------------------
def test_adam_matches_keras_formula():
    p = np.array([1.0, -2.0], dtype=np.float32)
    g = np.array([0.5, -0.1], dtype=np.float32)
    opt = nn.Adam()
    ref = p.astype(np.float64).copy()
    m = np.zeros(2)
    v = np.zeros(2)
    for t in (1, 2):
        opt.step([("p", p, g)])
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g.astype(np.float64) ** 2
        lr_t = 1e-3 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        ref -= lr_t * m / (np.sqrt(v) + 1e-7)
    assert p.dtype == np.float32
    np.testing.assert_allclose(p, ref, rtol=1e-6)


@pytest.mark.parametrize(
    ("momentum", "nesterov", "wd"),
    [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 0.0), (0.9, False, 0.01)],
)
def test_sgd_matches_hand_calculation(momentum, nesterov, wd):
    p = np.array([1.0, -2.0])
    g = np.array([0.5, -0.1])
    opt = nn.SGD(learning_rate=0.1, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    ref, vel = p.copy(), np.zeros(2)
    for _ in range(3):
        opt.step([("p", p, g)])
        gg = g + wd * ref
        vel = momentum * vel - 0.1 * gg
        ref = ref + (momentum * vel - 0.1 * gg if nesterov else vel)
    np.testing.assert_allclose(p, ref, rtol=1e-12)


def test_optimizer_errors():
    with pytest.raises(ValueError, match="learning_rate"):
        nn.Adam(learning_rate=0)
    with pytest.raises(ValueError, match="momentum"):
        nn.SGD(momentum=1.5)
    with pytest.raises(TypeError, match="nesterov"):
        nn.SGD(nesterov="yes")
    with pytest.raises(ValueError, match="optimizer"):
        nn.optimizers.get("rmsprop")


# ---- argument errors -----------------------------------------------------------------------------
def test_layer_argument_errors():
    with pytest.raises(ValueError, match="filters"):
        Conv2D(0, 3)
    with pytest.raises(ValueError, match="kernel_size"):
        Conv2D(4, (3, 3, 3))
    with pytest.raises(ValueError, match="padding"):
        Conv2D(4, 3, padding="full")
    with pytest.raises(ValueError, match="strides"):
        Conv2D(4, 3, strides=2, padding="same")
    with pytest.raises(ValueError, match="activation"):
        Dense(4, activation="tanh")
    with pytest.raises(ValueError, match="units"):
        Dense(-1)
    with pytest.raises(ValueError, match="rate"):
        Dropout(1.0)
    with pytest.raises(ValueError, match="pool_size"):
        MaxPooling2D(0)
    with pytest.raises(ValueError, match="Flatten"):
        Dense(3).build((2, 4, 4), "reference")
    with pytest.raises(ValueError, match="device"):
        nn.get_backend("tpu")


# ---- native backend vs reference -----------------------------------------------------------------
def _has_core():
    try:
        import fastconv

        return callable(getattr(fastconv, "conv2d", None))
    except ImportError:
        return False


@pytest.mark.skipif(not _has_core(), reason="fastconv's native core is not built")
@pytest.mark.parametrize(
    "make",
    [
        lambda: Conv2D(6, 5, padding="same", activation="relu"),
        lambda: Conv2D(5, 3, strides=2),
        lambda: MaxPooling2D(2),
        lambda: MaxPooling2D(3, strides=2, padding="same"),
    ],
    ids=["conv-same-relu", "conv-s2", "maxpool", "maxpool-same"],
)
def test_cpu_backend_matches_reference(make, rng):
    x = rng.standard_normal((3, 4, 10, 10)).astype(np.float32)
    ref, cpu = make(), make()
    ref.build(x.shape[1:], "reference", np.random.default_rng(0))
    cpu.build(x.shape[1:], "cpu", np.random.default_rng(0))
    y_ref = ref.forward(x.astype(np.float64))
    y = cpu.forward(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx_ref, dx = ref.backward(dy.astype(np.float64)), cpu.backward(dy)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-4)
    for k in ref.grads:
        assert cpu.grads[k].dtype == np.float32
        np.testing.assert_allclose(cpu.grads[k], ref.grads[k], rtol=1e-4, atol=1e-3)


def _matmul_operands(rng, m, k, n):
    """a (m, k), w (k, n) and the float64 product a @ w, for the CPU backend's matmul tests."""
    a = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((k, n), dtype=np.float32)
    return a, w, a.astype(np.float64) @ w


def _transposed(v, trans):
    """v stored transposed (contiguous) when trans: what matmul's trans_a / trans_b undo."""
    return np.ascontiguousarray(v.T) if trans else v


@pytest.mark.parametrize(("m", "k", "n"), [(1, 1, 1), (7, 13, 5), (33, 70, 129), (200, 160, 50)])
def test_cpu_backend_matmul(isa, rng, m, k, n):
    """Dense layers' native GEMM (fastconv's threaded sgemm): every transpose, odd sizes, out=."""
    from fastconv.nn.backend import get_backend

    b = get_backend("cpu")
    a, w, ref = _matmul_operands(rng, m, k, n)
    for ta in (False, True):
        for tb in (False, True):
            A, B = _transposed(a, ta), _transposed(w, tb)
            out = np.full((m, n), np.nan, np.float32)
            got = b.matmul(A, B, trans_a=ta, trans_b=tb, out=out)
            assert got is out
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.sqrt(k))
    with pytest.raises(ValueError, match="inner dimensions differ"):
        b.matmul(a, w[:-1] if k > 1 else np.ones((2, n), np.float32))


# Above ~4 MFLOP the product is cut into one part per thread: by columns when n >= m (a ragged
# last part at 3 threads), by rows otherwise, including rows of a transposed operand.
@pytest.mark.parametrize(("m", "k", "n"), [(60, 250, 170), (130, 300, 90), (97, 410, 61)])
def test_cpu_backend_matmul_parts(isa, rng, restore_threads, m, k, n):
    """The threaded cuts give the reference product and the same bits at 1, 2 and 3 threads."""
    from fastconv.nn.backend import get_backend

    b = get_backend("cpu")
    a, w, ref = _matmul_operands(rng, m, k, n)
    for ta in (False, True):
        for tb in (False, True):
            A, B = _transposed(a, ta), _transposed(w, tb)
            outs = []
            for threads in (1, 2, 3):
                fc.set_num_threads(threads)
                outs.append(b.matmul(A, B, trans_a=ta, trans_b=tb).copy())
            np.testing.assert_allclose(outs[0], ref, rtol=1e-5, atol=1e-5 * np.sqrt(k))
            for got in outs[1:]:
                np.testing.assert_array_equal(got, outs[0])


# A product at most one micro-tile wide (n <= NR: 8, 16 or 32 by ISA) reads op(A) in place instead
# of packing it; the sums are the packed path's, so its columns match a wider product's bit for bit
# (m > MC and k > KC: several row and k blocks; a ragged last row sliver).
@pytest.mark.parametrize(("m", "k", "n"), [(100, 980, 10), (301, 530, 7), (5, 3, 1)])
def test_cpu_backend_matmul_narrow(isa, rng, m, k, n):
    """Narrow products: the reference product, and the same bits as the packed (wide) path."""
    from fastconv.nn.backend import get_backend

    b = get_backend("cpu")
    a, w, ref = _matmul_operands(rng, m, k, n)
    wide = np.concatenate([w, rng.standard_normal((k, 40), dtype=np.float32)], axis=1)
    for ta in (False, True):
        for tb in (False, True):
            A, B, W = _transposed(a, ta), _transposed(w, tb), _transposed(wide, tb)
            got = b.matmul(A, B, trans_a=ta, trans_b=tb)
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.sqrt(k))
            np.testing.assert_array_equal(got, b.matmul(A, W, trans_a=ta, trans_b=tb)[:, :n])
