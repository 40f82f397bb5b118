"""Native dropout (_C.dropout, _C.dropout_keep) and the Dropout layer that uses it.

The mask is a function of (seed, keep, element index) only: statistics of the keep decisions,
the exact 1/keep scaling, the same bits at any thread count and for any prefix of the array,
different masks for different seeds, strict argument checks (out= buffers as in test_out.py),
the input never written; the layer's backward redraws the same mask, the CPU and reference
backends draw the same keep decisions, and a model with Dropout trains to the same bits twice.
"""

from __future__ import annotations

import fastconv
import numpy as np
import pytest
from conftest import assert_identical
from fastconv import _C
from fastconv.nn import Conv2D, Dense, Dropout, Flatten, MaxPooling2D, Sequential

# element counts around the generator's blocks (16384 elements, 16 lanes): tails of every kind
SIZES = [1, 15, 16, 17, 16383, 16384, 16385, 3 * 16384 + 21]


def _scale(keep):
    return np.float32(1) / np.float32(keep)


@pytest.mark.parametrize("keep", [0.2, 0.5, 0.8, 0.95])
def test_keep_fraction_and_exact_scaling(rng, keep):
    x = rng.standard_normal((40, 75, 24, 24), dtype=np.float32)  # 1.7 M elements
    mask = np.empty_like(x)
    y = _C.dropout(x, keep, 1234, mask_out=mask)
    kept = mask != 0
    n = x.size
    sigma = np.sqrt(keep * (1 - keep) / n)
    assert abs(kept.mean() - keep) < 5 * sigma, f"kept {kept.mean():.5f}, keep {keep}"
    # each of the 16 lanes and every block of the generator, not just the whole array
    lanes = kept.reshape(-1, 16).mean(axis=0)
    assert np.all(np.abs(lanes - keep) < 5 * np.sqrt(keep * (1 - keep) / (n / 16))), lanes
    blocks = kept.reshape(-1)[: n // 16384 * 16384].reshape(-1, 16384).mean(axis=1)
    assert np.all(np.abs(blocks - keep) < 6 * np.sqrt(keep * (1 - keep) / 16384)), blocks
    # neighbours are independent: P(both kept) = keep^2
    both = (kept.reshape(-1)[1:] & kept.reshape(-1)[:-1]).mean()
    assert abs(both - keep**2) < 6 * np.sqrt(keep**2 * (1 - keep**2) / n)
    assert_identical(mask, np.where(kept, _scale(keep), np.float32(0)), "mask")
    assert_identical(y, x * mask, "y = x * mask")
    assert y.dtype == np.float32
    assert y.shape == x.shape


def test_keep_one_is_identity(rng):
    x = rng.standard_normal((3, 1000), dtype=np.float32)
    assert_identical(_C.dropout(x, 1.0, 7), x)
    assert _C.dropout_keep((3, 1000), 1.0, 7).all()


def test_same_seed_same_mask_other_seed_other_mask(rng):
    x = rng.standard_normal(100_000, dtype=np.float32)
    a, b = _C.dropout(x, 0.5, 42), _C.dropout(x, 0.5, 42)
    assert_identical(a, b, "same seed")
    for other in (43, 2**63 + 42, 2**64 - 1):
        c = _C.dropout(x, 0.5, other)
        agree = ((a != 0) == (c != 0)).mean()
        assert abs(agree - 0.5) < 0.01, f"seed 42 vs {other}: {agree:.4f} of decisions agree"
    # seeds as NumPy integers (what Generator.integers returns) are the same seeds
    assert_identical(_C.dropout(x, 0.5, np.uint64(42)), a, "np.uint64 seed")


@pytest.mark.parametrize("n", SIZES)
def test_independent_of_thread_count_and_of_the_array_size(restore_threads, rng, n):
    x = rng.standard_normal(n, dtype=np.float32)
    outs = []
    for t in (1, 2, 3, 5):
        fastconv.set_num_threads(t)
        mask = np.empty_like(x)
        outs.append((_C.dropout(x, 0.7, 99, mask_out=mask), mask, _C.dropout_keep((n,), 0.7, 99)))
    for t, (y, mask, bits) in zip((2, 3, 5), outs[1:]):
        assert_identical(y, outs[0][0], f"y at {t} threads")
        assert_identical(mask, outs[0][1], f"mask at {t} threads")
        assert_identical(bits, outs[0][2], f"keep bits at {t} threads")
    assert_identical(outs[0][2], outs[0][1] != 0, "dropout_keep vs mask")
    # element i's decision depends on i, not on how many elements follow it
    big = _C.dropout_keep((4 * 16384 + 3,), 0.7, 99)
    assert_identical(outs[0][2], big[:n], "prefix of a longer draw")


def test_shapes_and_empty(rng):
    x = rng.standard_normal((2, 3, 5, 7), dtype=np.float32)
    flat = _C.dropout(x.reshape(-1), 0.6, 5)
    assert_identical(_C.dropout(x, 0.6, 5), flat.reshape(x.shape), "4-D vs flat")
    bits = _C.dropout_keep((x.size,), 0.6, 5)
    assert_identical(_C.dropout_keep(x.shape, 0.6, 5), bits.reshape(x.shape), "bits, 4-D vs flat")
    assert _C.dropout(np.empty((0, 4), np.float32), 0.5, 1).shape == (0, 4)
    assert _C.dropout_keep((0,), 0.5, 1).shape == (0,)


def test_views_are_read_as_their_values(rng):
    base = rng.standard_normal((8, 10), dtype=np.float32)
    view = base[:, ::2]
    assert_identical(_C.dropout(view, 0.5, 3), _C.dropout(np.ascontiguousarray(view), 0.5, 3))


def test_input_never_written_and_out_filled(rng):
    x = rng.standard_normal((4, 1000), dtype=np.float32)
    keep = x.copy()
    out, mask = np.full_like(x, np.nan), np.full_like(x, np.nan)
    y = _C.dropout(x, 0.3, 11, out=out, mask_out=mask)
    assert y is out
    assert_identical(x, keep, "input after dropout")
    assert_identical(out, _C.dropout(x, 0.3, 11), "out= vs fresh result")
    assert not np.isnan(mask).any()


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (dict(keep=0.0), ValueError, "keep"),
        (dict(keep=-0.5), ValueError, "keep"),
        (dict(keep=1.5), ValueError, "keep"),
        (dict(keep=float("nan")), ValueError, "keep"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(seed=2**64), ValueError, "seed"),
        (dict(seed=1.5), TypeError, "seed"),
        (dict(seed=True), TypeError, "seed"),
        (dict(seed="1"), TypeError, "seed"),
    ],
)
def test_bad_keep_and_seed_refused(rng, kwargs, exc, match):
    args = dict(keep=0.5, seed=1) | kwargs
    x = rng.standard_normal(10, dtype=np.float32)
    with pytest.raises(exc, match=match):
        _C.dropout(x, args["keep"], args["seed"])
    with pytest.raises(exc, match=match):
        _C.dropout_keep((10,), args["keep"], args["seed"])


def test_bad_arrays_refused(rng):
    x = rng.standard_normal((4, 6), dtype=np.float32)
    with pytest.raises(TypeError, match="x must be a float32"):
        _C.dropout(x.astype(np.float64), 0.5, 1)
    with pytest.raises(TypeError, match="x must be a float32"):
        _C.dropout(x.astype(np.int32), 0.5, 1)
    bad_outs = [
        (np.empty((4, 6), np.float64), "out must be a float32"),
        (np.empty((6, 4), np.float32), r"out must have shape \(4, 6\)"),
        (np.empty((4, 12), np.float32)[:, ::2], "out must be C-contiguous"),
    ]
    for bad, match in bad_outs:
        with pytest.raises(ValueError, match=match):
            _C.dropout(x, 0.5, 1, out=bad)
        with pytest.raises(ValueError, match=match.replace("out", "mask_out")):
            _C.dropout(x, 0.5, 1, mask_out=bad)
    ro = np.empty_like(x)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        _C.dropout(x, 0.5, 1, out=ro)
    with pytest.raises(ValueError, match="shape"):
        _C.dropout_keep((3, -1), 0.5, 1)


def test_aliasing_refused_and_nothing_written(rng):
    buf = rng.standard_normal(40, dtype=np.float32)
    keep = buf.copy()
    x = buf[:24].reshape(4, 6)
    with pytest.raises(ValueError, match="out must not share memory"):
        _C.dropout(x, 0.5, 1, out=x)  # in place
    with pytest.raises(ValueError, match="out must not share memory"):
        _C.dropout(x, 0.5, 1, out=buf[16:40].reshape(4, 6))  # partial overlap
    with pytest.raises(ValueError, match="mask_out must not share memory"):
        _C.dropout(x, 0.5, 1, mask_out=x)
    out = np.empty_like(x)
    with pytest.raises(ValueError, match="mask_out must not share memory"):
        _C.dropout(x, 0.5, 1, out=out, mask_out=out)
    assert_identical(buf, keep, "input after refused calls")


# ---- the layer ----------------------------------------------------------------------------------


def _layer(device, seed=11, shape=(5, 6, 7), rate=0.3):
    layer = Dropout(rate)
    layer.build(shape, device)
    layer.rng = np.random.default_rng(seed)
    return layer


@pytest.mark.parametrize("reuse", [False, True], ids=["fresh", "reused-buffers"])
def test_layer_backward_uses_the_forward_mask(rng, reuse):
    layer = _layer("cpu")
    layer.reuse_buffers = reuse
    x = rng.standard_normal((4, 5, 6, 7), dtype=np.float32)
    x0 = x.copy()
    y = layer.forward(x, training=True)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    dy0 = dy.copy()
    dx = layer.backward(dy)
    mask = np.where(_C.dropout_keep(x.shape, 0.7, layer._seed), _scale(0.7), np.float32(0))
    assert_identical(y, x0 * mask, "y")
    assert_identical(dx, dy0 * mask, "dx")
    assert_identical(x, x0, "x after forward")
    assert_identical(dy, dy0, "dy after backward")
    assert (layer._buffers != {}) == reuse
    # inference and rate 0 are the identity (no copy)
    assert layer.forward(x, training=False) is x
    assert layer.backward(dy) is dy


def test_layer_same_keep_decisions_on_cpu_and_reference():
    x = np.ones((4, 5, 6, 7))
    y_cpu = _layer("cpu").forward(x.astype(np.float32), training=True)
    y_ref = _layer("reference").forward(x, training=True)
    assert y_ref.dtype == np.float64
    assert_identical(y_cpu != 0, y_ref != 0, "keep decisions, cpu vs reference")
    assert_identical(y_cpu, y_ref.astype(np.float32), "values (1/keep in float32)")


def test_layer_seeds_differ_from_call_to_call(rng):
    layer = _layer("cpu")
    x = np.ones((2, 5, 6, 7), np.float32)
    a = layer.forward(x, training=True).copy()
    b = layer.forward(x, training=True)
    assert not np.array_equal(a, b)


def test_model_with_dropout_trains_deterministically(restore_threads):
    data = np.random.default_rng(0)
    x = data.random((96, 1, 12, 12), dtype=np.float32)
    y = data.integers(0, 4, 96)

    def run(model_seed, threads):
        fastconv.set_num_threads(threads)
        m = Sequential(
            [
                Conv2D(6, 3, activation="relu"),
                MaxPooling2D(2),
                Dropout(0.25),
                Flatten(),
                Dense(16, activation="relu"),
                Dropout(0.5),
                Dense(4),
            ],
            input_shape=(1, 12, 12),
            seed=model_seed,
        )
        m.compile("adam", "sparse_categorical_crossentropy")
        h = m.fit(x, y, batch_size=16, epochs=2, verbose=0)
        return h.history["loss"], m.get_weights()

    (loss_a, w_a), (loss_b, w_b) = run(3, 2), run(3, 2)
    assert loss_a == loss_b
    for a, b in zip(w_a, w_b):
        assert_identical(a, b, "weights, same seed")
    loss_c, _ = run(4, 2)
    assert loss_c != loss_a
    # one thread: the dropout masks are the same, so only float32 summation order differs
    loss_1, _ = run(3, 1)
    np.testing.assert_allclose(loss_1, loss_a, rtol=1e-4)


@pytest.mark.parametrize("n", SIZES)
def test_cuda_lane_order_gives_the_cpu_mask(n):
    """The CUDA training step draws its mask one (block, lane) per thread with the shared
    generator (cpp/include/fastconv/dropout_rng.h: fill_lane); _C._dropout_mask_lanes runs that
    function over every (block, lane) on the CPU: it must be the CPU kernel's mask, bit for bit."""
    x = np.ones(n, np.float32)
    for keep in (0.2, 0.5, 0.95, 1.0):
        for seed in (0, 99, 2**64 - 1):
            mask = np.empty_like(x)
            _C.dropout(x, keep, seed, mask_out=mask)
            assert_identical(_C._dropout_mask_lanes((n,), keep, seed), mask, f"keep {keep}")
    assert _C._dropout_mask_lanes((2, 0, 3), 0.5, 1).shape == (2, 0, 3)
    with pytest.raises(ValueError, match="keep must be in"):
        _C._dropout_mask_lanes((4,), 0.0, 1)
