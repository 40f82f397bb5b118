"""Threads, determinism, process-level settings and fork safety.

- Same inputs, same thread count: the same bits, every time (the split must not depend on timing).
- 1 thread vs 2 threads: equal within float32 rounding (the split may change the summation order).
- Calls from several Python threads at once (the GIL is released in the kernels) stay correct.
- FASTCONV_NUM_THREADS and FASTCONV_CPU_ISA are honoured at import (checked in a fresh subprocess).
- A process that used fastconv (thread pool started) and then forks, by os.fork or multiprocessing's
  'fork' start method, must not hang in the child: each check runs in a subprocess with a timeout.
- info() reports what the other getters say.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import fastconv
import numpy as np
import pytest
import shapes
from conftest import assert_close, assert_identical, conv_algo, conv_tolerance
from fastconv import reference as ref

FORK_TIMEOUT_S = 60


def _problem(rng):
    """A conv layer big enough to be split across threads, and a pool over its output."""
    s = shapes.conv("fashion.conv2").with_batch(3)
    x = rng.uniform(-1, 1, s.x_shape).astype(np.float32)
    w = rng.uniform(-1, 1, s.w_shape).astype(np.float32)
    b = rng.uniform(-1, 1, s.k).astype(np.float32)
    dy = rng.uniform(-1, 1, s.y_shape).astype(np.float32)
    return s, x, w, b, dy


def _run_all(s, x, w, b, dy):
    y = fastconv.conv2d(x, w, b, **s.kwargs())
    dx, dw, db = fastconv.conv2d_backward(dy, x, w, **s.kwargs())
    p, idx = fastconv.max_pool2d(y, 3, 2, 1, return_indices=True)
    dp = fastconv.max_pool2d_backward(p, idx, y.shape)
    return {"y": y, "dx": dx, "dw": dw, "db": db, "pool": p, "indices": idx, "pool_dx": dp}


def _bits(a):
    return a.view(np.uint32) if a.dtype == np.float32 else a


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize("threads", [1, 2])
def test_same_bits_on_repeated_runs(isa, rng, threads):
    fastconv.set_num_threads(threads)
    assert fastconv.get_num_threads() == threads
    args = _problem(rng)
    first = _run_all(*args)
    for _ in range(2):
        again = _run_all(*args)
        for key in first:
            assert_identical(
                _bits(again[key]), _bits(first[key]), f"{key} at {threads} thread(s), repeated"
            )


@pytest.mark.usefixtures("restore_threads")
def test_one_and_two_threads_agree(isa, rng):
    s, *arrays = args = _problem(rng)
    fastconv.set_num_threads(1)
    one = _run_all(*args)
    fastconv.set_num_threads(2)
    two = _run_all(*args)
    oh, ow = s.out_hw
    reductions = {"y": s.c * 9, "dx": s.k * 9, "dw": s.n * oh * ow, "db": s.n * oh * ow}
    for key, length in reductions.items():
        assert_close(two[key], one[key], *conv_tolerance(length), f"{key}: 2 threads vs 1")
    # max-pool does no arithmetic on a given y: same y gives the same values and indices
    p1, i1 = fastconv.max_pool2d(one["y"], 3, 2, 1, return_indices=True)
    fastconv.set_num_threads(1)
    p2, i2 = fastconv.max_pool2d(one["y"], 3, 2, 1, return_indices=True)
    assert_identical(p2, p1, "pool values, 1 vs 2 threads")
    assert_identical(i2, i1, "pool indices, 1 vs 2 threads")


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    ("x_shape", "w_shape", "padding"),
    [
        ((5, 6, 14, 14), (16, 6, 5, 5), "valid"),  # lenet.conv2: x read in place, serial sums
        ((3, 6, 9, 11), (10, 6, 3, 5), 1),  # padded copy, channels past one vector
        ((4, 24, 8, 8), (20, 24, 5, 5), "valid"),  # in place; part sums over the serial limit
    ],
)
def test_channel_lanes_weight_gradient(isa, rng, threads, x_shape, w_shape, padding):
    """The output-channel-lane weight gradient forced, into NaN-filled buffers, against the
    reference: unpadded inputs read in place, and both ways of adding the threads' part sums."""
    if "channel_lanes" not in fastconv.conv2d_algos(
        "bwd_weights", x_shape, w_shape, padding=padding
    ):
        pytest.skip(f"the {isa} path has no channel-lane weight gradient")
    x = rng.uniform(-1, 1, x_shape).astype(np.float32)
    y_shape = fastconv.conv2d(x, np.zeros(w_shape, np.float32), padding=padding).shape
    dy = rng.uniform(-1, 1, y_shape).astype(np.float32)
    want_dw, want_db = ref.conv2d_bwd_weights(dy, x, w_shape, padding=padding)
    dw = np.full(w_shape, np.nan, np.float32)
    db = np.full(w_shape[0], np.nan, np.float32)
    fastconv.set_num_threads(threads)
    with conv_algo("bwd_weights", "channel_lanes"):
        fastconv.conv2d_bwd_weights(dy, x, w_shape, padding=padding, out=(dw, db))
    tol = conv_tolerance(y_shape[0] * y_shape[2] * y_shape[3])
    assert_close(dw, want_dw, *tol, f"dw at {threads} threads")
    assert_close(db, want_db, *tol, f"db at {threads} threads")


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize("layer", ["fashion.conv2", "cnn1.conv2"])
def test_forced_algorithms_one_and_two_threads_agree(isa, rng, layer):
    """Every algorithm this path can run on a 3x3 and a 5x5 layer (the Winograd kernels among
    them), forced: 1 and 2 threads give the same results within rounding."""
    s = shapes.conv(layer).with_batch(3)
    x = rng.uniform(-1, 1, s.x_shape).astype(np.float32)
    w = rng.uniform(-1, 1, s.w_shape).astype(np.float32)
    dy = rng.uniform(-1, 1, s.y_shape).astype(np.float32)
    oh, ow = s.out_hw
    run = {
        "fwd": (lambda: [fastconv.conv2d(x, w, **s.kwargs())], s.c * s.kernel[0] * s.kernel[1]),
        "bwd_data": (
            lambda: [fastconv.conv2d_bwd_data(dy, w, x.shape, **s.kwargs())],
            s.k * s.kernel[0] * s.kernel[1],
        ),
        "bwd_weights": (
            lambda: list(fastconv.conv2d_bwd_weights(dy, x, w.shape, **s.kwargs())),
            s.n * oh * ow,
        ),
    }
    for pass_name, (call, length) in run.items():
        for algo in fastconv.conv2d_algos(pass_name, s.x_shape, s.w_shape, **s.kwargs()):
            with conv_algo(pass_name, algo):
                fastconv.set_num_threads(1)
                one = call()
                fastconv.set_num_threads(2)
                two = call()
            for a, b in zip(two, one, strict=True):
                what = f"{layer} {pass_name} by {algo}: 2 threads vs 1"
                assert_close(a, b, *conv_tolerance(length), what)


@pytest.mark.usefixtures("restore_threads")
def test_concurrent_calls_from_python_threads(rng):
    fastconv.set_num_threads(2)
    s, x, w, b, dy = _problem(rng)
    expected = ref.conv2d_fwd(x, w, b, **s.kwargs())
    expected_dx = ref.conv2d_bwd_data(dy, w, x.shape, **s.kwargs())

    def work(i):
        if i % 2:
            return "y", fastconv.conv2d(x, w, b, **s.kwargs())
        return "dx", fastconv.conv2d_bwd_data(dy, w, x.shape, **s.kwargs())

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(work, range(8)))
    for key, got in results:
        if key == "y":
            assert_close(got, expected, *conv_tolerance(s.c * 9), "y from a concurrent call")
        else:
            assert_close(got, expected_dx, *conv_tolerance(s.k * 9), "dx from a concurrent call")


@pytest.mark.usefixtures("restore_threads")
def test_set_num_threads_roundtrip():
    for n in (1, 2, 3, 1):
        fastconv.set_num_threads(n)
        assert fastconv.get_num_threads() == n
        assert fastconv.info()["num_threads"] == n


def test_info_contents():
    info = fastconv.info()
    for key in ("version", "cpu_isa", "cpu_isas", "num_threads", "cuda_built"):
        assert key in info, f"info() lacks {key!r}: {info}"
    assert info["version"] == fastconv.__version__
    assert isinstance(info["version"], str)
    assert info["cpu_isa"] == fastconv.get_cpu_isa()
    assert info["cpu_isa"] in info["cpu_isas"]
    assert list(info["cpu_isas"]) == list(fastconv.cpu_isas())
    assert "portable" in info["cpu_isas"]
    assert set(info["cpu_isas"]) <= {"portable", "avx2", "avx512"}, info["cpu_isas"]
    assert isinstance(info["num_threads"], int)
    assert info["num_threads"] == fastconv.get_num_threads() >= 1
    assert isinstance(info["cuda_built"], bool)


def test_set_cpu_isa_is_reported(isa):
    assert fastconv.get_cpu_isa() == isa
    assert fastconv.info()["cpu_isa"] == isa


# ----------------------------------------------------------------------------------------------
# subprocesses: environment variables and fork


def _python(script, env=None, timeout=FORK_TIMEOUT_S):
    """Run script in a fresh interpreter (own process group); fail on timeout, killing the group."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FASTCONV_")}
    full_env.update(env or {})
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"subprocess hung (> {timeout} s); stdout:\n{out}\nstderr:\n{err}")
    assert proc.returncode == 0, (
        f"subprocess exited with {proc.returncode}; stdout:\n{out}\nstderr:\n{err}"
    )
    return out


@pytest.mark.parametrize("n", ["1", "3"])
def test_fastconv_num_threads_env_is_honoured(n):
    out = _python(
        "import fastconv; print(fastconv.get_num_threads(), fastconv.info()['num_threads'])",
        env={"FASTCONV_NUM_THREADS": n},
    )
    assert out.split() == [n, n]


@pytest.mark.parametrize("name", ["portable", "avx2", "avx512"])
def test_fastconv_cpu_isa_env_is_honoured(name):
    if name not in fastconv.cpu_isas():
        pytest.skip(f"CPU path {name!r} is not supported on this machine")
    out = _python("import fastconv; print(fastconv.get_cpu_isa())", env={"FASTCONV_CPU_ISA": name})
    assert out.strip() == name


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_bad_num_threads_env_fails_loudly(value):
    proc = subprocess.run(
        [sys.executable, "-c", "import fastconv"],
        env={**os.environ, "FASTCONV_NUM_THREADS": value},
        capture_output=True,
        text=True,
        timeout=FORK_TIMEOUT_S,
    )
    assert proc.returncode != 0
    assert "FASTCONV_NUM_THREADS" in proc.stderr


def test_unsupported_cpu_isa_env_fails_loudly():
    proc = subprocess.run(
        [sys.executable, "-c", "import fastconv"],
        env={**os.environ, "FASTCONV_CPU_ISA": "sse9"},
        capture_output=True,
        text=True,
        timeout=FORK_TIMEOUT_S,
    )
    assert proc.returncode != 0
    assert "sse9" in proc.stderr


_FORK_PRELUDE = """
    import os, sys
    import numpy as np
    import fastconv

    fastconv.set_num_threads(2)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (4, 16, 20, 20)).astype(np.float32)
    w = rng.uniform(-1, 1, (24, 16, 3, 3)).astype(np.float32)

    def work(_=None):
        y = fastconv.conv2d(x, w, padding=1)
        dx, dw, db = fastconv.conv2d_backward(y, x, w, padding=1)
        p = fastconv.max_pool2d(y, 2)
        return float(y.sum()), float(dw.sum()), float(p.sum())

    parent = work()  # the thread pool is running now
"""


def test_os_fork_child_does_not_hang():
    out = _python(
        _FORK_PRELUDE
        + """
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            child = work()
            code = 0 if np.allclose(child, parent, rtol=1e-4) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"child exited with {status}"
    assert np.allclose(work(), parent, rtol=1e-4)  # and the parent's pool still works
    print("ok")
    """
    )
    assert out.strip() == "ok"


def test_multiprocessing_fork_pool_does_not_hang():
    out = _python(
        _FORK_PRELUDE
        + """
    import multiprocessing as mp

    with mp.get_context("fork").Pool(2) as pool:
        results = pool.map(work, range(4))
    assert all(np.allclose(r, parent, rtol=1e-4) for r in results), (results, parent)
    assert np.allclose(work(), parent, rtol=1e-4)
    print("ok")
    """
    )
    assert out.strip() == "ok"
