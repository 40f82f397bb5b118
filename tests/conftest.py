"""Shared pytest fixtures and checkers for the fastconv kernel suite.

Fixtures:
    rng      np.random.Generator seeded from the test id (and FASTCONV_TEST_SEED, default 0);
             the seed is printed in the failure report; re-running the same test id replays it.
    isa      parametrizes a test over every CPU path fastconv knows (portable, avx2, avx512,
             plus any other cpu_isas() lists); sets it with fastconv.set_cpu_isa and restores
             the previous one. A path this CPU lacks is skipped with the reason.
    (autouse) debug poison: native kernels fill outputs and workspaces with NaN before they run,
             so an element a kernel never writes shows up as NaN in the comparison.
Markers: `gpu` tests are skipped, with the reason, when CuPy, a CUDA device or a CUDA build is
missing.

Helpers (import them with `from conftest import ...`):
    assert_close(actual, expected, atol, rtol, name)   |a - e| <= atol + rtol*|e|, NaN never close
    assert_identical(actual, expected, name)           exact equality (NaN equals NaN), for max-pool
    conv_tolerance(reduction_length)                   (atol, rtol) for a float32 sum of that length
    cpu_isa(name)                                      context: that CPU path inside the block
    conv_algo(pass_name, name)                         context: that conv algorithm forced
    winograd_allowed(on)                               context: fastconv.set_winograd(on)
"""

from __future__ import annotations

import os
import zlib
from contextlib import contextmanager

import fastconv
import numpy as np
import pytest

KNOWN_ISAS = ("portable", "avx2", "avx512")
SEED_BASE = int(os.environ.get("FASTCONV_TEST_SEED", "0"))


def _supported_isas():
    return list(fastconv.cpu_isas())


def pytest_report_header(config):
    info = fastconv.info()
    keys = ("version", "cpu_isa", "cpu_isas", "num_threads", "cuda_built")
    return [
        "fastconv: " + ", ".join(f"{k}={info.get(k)!r}" for k in keys),
        f"rng seeds: crc32(test id) ^ FASTCONV_TEST_SEED (= {SEED_BASE}); "
        "a failing test prints its seed",
    ]


# ----------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture
def rng(request):
    seed = (zlib.crc32(request.node.nodeid.encode()) ^ SEED_BASE) & 0xFFFFFFFF
    request.node.fastconv_seed = seed
    return np.random.default_rng(seed)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    seed = getattr(item, "fastconv_seed", None)
    if seed is not None and report.failed:
        report.sections.append(
            (
                "random seed",
                f"rng = np.random.default_rng({seed})  (FASTCONV_TEST_SEED={SEED_BASE})",
            )
        )
    return report


@pytest.fixture(params=list(KNOWN_ISAS) + [i for i in _supported_isas() if i not in KNOWN_ISAS])
def isa(request):
    name = request.param
    supported = _supported_isas()
    if name not in supported:
        pytest.skip(
            f"CPU path {name!r} is not supported on this machine "
            f"(fastconv.cpu_isas() = {supported})"
        )
    with cpu_isa(name):
        yield name


@contextmanager
def cpu_isa(name):
    """fastconv's CPU path set to `name` inside the block, the previous one restored after."""
    previous = fastconv.get_cpu_isa()
    fastconv.set_cpu_isa(name)
    try:
        yield
    finally:
        fastconv.set_cpu_isa(previous)


@contextmanager
def conv_algo(pass_name, name):
    """The conv algorithm `name` forced for pass_name inside the block (None: automatic)."""
    previous = fastconv.get_conv_algo(pass_name)
    fastconv.set_conv_algo(pass_name, name)
    try:
        yield
    finally:
        fastconv.set_conv_algo(pass_name, previous)


@contextmanager
def winograd_allowed(on):
    """fastconv.set_winograd(on) inside the block, the previous setting restored after."""
    previous = fastconv.get_winograd()
    fastconv.set_winograd(on)
    try:
        yield
    finally:
        fastconv.set_winograd(previous)


@pytest.fixture
def restore_threads():
    """Puts fastconv's thread count back after a test that changes it."""
    before = fastconv.get_num_threads()
    yield
    fastconv.set_num_threads(before)


@pytest.fixture(autouse=True)
def _debug_poison():
    fastconv._set_debug_poison(True)
    try:
        yield
    finally:
        fastconv._set_debug_poison(False)


def gpu_unavailable_reason():
    """None when GPU tests can run, else why not."""
    if not fastconv.info().get("cuda_built"):
        return "fastconv was built without CUDA (info()['cuda_built'] is False)"
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001 - any CUDA runtime error means no usable device
        return f"no usable CUDA device ({type(e).__name__}: {e})"
    return None if count > 0 else "no CUDA device found"


def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu") is not None:
        reason = gpu_unavailable_reason()
        if reason is not None:
            pytest.skip(reason)


# ----------------------------------------------------------------------------------------------
# checkers

# float32 accumulation error grows about linearly with the reduction length for O(1) inputs
# (partial sums of size ~sqrt(L), ~L roundings of ~eps*sqrt(L) each, a random walk of size ~eps*L).
# 5e-7 per term is ~10x the worst case seen over the whole catalog (all ISAs): loose enough for any
# summation order or blocking, tight enough that one missing or duplicated tap (an error of ~0.1)
# fails.
TOL_PER_TERM = 5e-7
RTOL = 1e-5


def conv_tolerance(reduction_length):
    """(atol, rtol) for a float32 result that sums reduction_length products of O(1) values."""
    return TOL_PER_TERM * (max(int(reduction_length), 1) + 8), RTOL


def winograd_5x5(s):
    """True if problem s (a shapes.ConvShape) is one the Winograd F(2x2, 5x5) kernel may take."""
    return s.kernel == (5, 5) and s.stride == (1, 1) and s.dilation == (1, 1) and s.groups == 1


def _coords(index, shape):
    idx = np.unravel_index(index, shape)
    names = ("n", "c", "y", "x") if len(shape) == 4 else tuple(f"i{d}" for d in range(len(shape)))
    return "(" + ", ".join(f"{k}={int(v)}" for k, v in zip(names, idx)) + ")"


def assert_close(actual, expected, atol, rtol, name="output"):
    """Elementwise |actual - expected| <= atol + rtol*|expected|; reports the worst element.

    The report gives its (n, c, y, x) coordinates, both values and the shape. NaN or inf in actual
    where expected is finite always fails (poisoned, unwritten elements show up so).
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (
        f"{name}: shape {actual.shape}, expected {expected.shape}"
    )
    if actual.size == 0:
        return
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(a - e)
        tol = atol + rtol * np.abs(e)
        both_nan = np.isnan(a) & np.isnan(e)
        same_inf = np.isinf(a) & (a == e)
        bad = ~((err <= tol) | both_nan | same_inf)
        if not bad.any():
            return
        excess = np.where(bad, np.nan_to_num(err / tol, nan=np.inf, posinf=np.inf), -np.inf)
    worst = int(np.argmax(excess))
    raise AssertionError(
        f"{name}: {int(bad.sum())} of {bad.size} elements off (shape {actual.shape}); worst at "
        f"{_coords(worst, actual.shape)}: actual {float(a.flat[worst])!r}, "
        f"expected {float(e.flat[worst])!r}, "
        f"|diff| {err.flat[worst]:.3g} > atol {atol:.3g} + rtol {rtol:.3g}*|expected|; "
        f"max |diff| overall {np.nanmax(np.where(np.isnan(err), -np.inf, err)):.3g}, "
        f"NaNs in actual: {int(np.isnan(a).sum())}"
    )


def assert_identical(actual, expected, name="output"):
    """Exact equality of shape, values and (for float) NaN positions; reports the first mismatch."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (
        f"{name}: shape {actual.shape}, expected {expected.shape}"
    )
    if actual.dtype.kind == "f" or expected.dtype.kind == "f":
        same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    else:
        same = actual == expected
    if same.all():
        return
    first = int(np.argmin(same.reshape(-1)))
    raise AssertionError(
        f"{name}: {int((~same).sum())} of {same.size} elements differ (shape {actual.shape}); "
        f"first at {_coords(first, actual.shape)}: actual {actual.flat[first].item()!r}, "
        f"expected {expected.flat[first].item()!r}"
    )
