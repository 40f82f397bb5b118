"""The output cache: result arrays' memory is recycled, never shared between live arrays, and the
values are those of a fresh array (poison on: every result is NaN-filled before the kernel runs)."""

from __future__ import annotations

import os
import subprocess
import sys

import fastconv
import numpy as np
import pytest
from conftest import assert_identical
from fastconv import _C


@pytest.fixture
def cache_mb():
    before = fastconv.get_output_cache_mb()
    yield
    fastconv.set_output_cache_mb(before)


def _conv(x, w):
    return fastconv.conv2d(x, w, padding=1)


def test_recycled_memory_gives_the_same_results(rng, cache_mb):
    x1, x2 = (rng.standard_normal((8, 4, 32, 32), dtype=np.float32) for _ in range(2))
    w = rng.standard_normal((16, 4, 3, 3), dtype=np.float32)
    fastconv.set_output_cache_mb(0)
    want1, want2 = _conv(x1, w), _conv(x2, w)
    fastconv.set_output_cache_mb(64)
    y1 = _conv(x1, w)  # 512 KiB: a cached size
    y2 = _conv(x2, w)
    assert not np.shares_memory(y1, y2), "two live results must never share memory"
    assert_identical(y1, want1, "first result")
    assert_identical(y2, want2, "second result")
    addr = y1.__array_interface__["data"][0]
    del y1
    assert _C.output_cache_idle_bytes() >= want1.nbytes
    y3 = _conv(x2, w)  # same size: takes the block y1 gave back
    assert y3.__array_interface__["data"][0] == addr
    assert_identical(y3, want2, "result in recycled memory")
    y3[...] = 0  # results stay the caller's to write
    assert_identical(y2, want2, "other results untouched")


def test_every_result_kind_comes_back_correct(rng, cache_mb):
    x = rng.standard_normal((4, 8, 40, 40), dtype=np.float32)
    w = rng.standard_normal((6, 8, 3, 3), dtype=np.float32)

    def results():
        y, idx = fastconv.max_pool2d(x, 2, return_indices=True)
        dx = fastconv.max_pool2d_backward(y, idx, x.shape)
        c = fastconv.conv2d(x, w)
        return (
            y,
            idx,
            dx,
            c,
            fastconv.conv2d_bwd_data(c, w, x.shape),
            fastconv.conv2d_bwd_weights(c, x, w.shape)[0],
        )

    fastconv.set_output_cache_mb(0)
    want = results()
    fastconv.set_output_cache_mb(64)
    for _ in range(3):  # the later rounds run in recycled blocks
        got = results()
        for g, e, name in zip(
            got, want, ("pool y", "pool indices", "pool dx", "conv y", "conv dx", "conv dw")
        ):
            assert g.dtype == e.dtype
            assert g.flags.c_contiguous
            assert g.flags.writeable
            assert_identical(g, e, name)
        del got


def test_limit_zero_frees_idle_blocks(rng, cache_mb):
    fastconv.set_output_cache_mb(64)
    x = rng.standard_normal((8, 4, 32, 32), dtype=np.float32)
    w = rng.standard_normal((16, 4, 3, 3), dtype=np.float32)
    del_me = _conv(x, w)
    del del_me
    assert _C.output_cache_idle_bytes() > 0
    fastconv.set_output_cache_mb(0)
    assert _C.output_cache_idle_bytes() == 0
    assert fastconv.get_output_cache_mb() == 0
    assert fastconv.info()["output_cache_mb"] == 0
    y = _conv(x, w)  # still works uncached
    del y
    assert _C.output_cache_idle_bytes() == 0


@pytest.mark.parametrize(
    ("bad", "exc"), [("8", TypeError), (True, TypeError), (-1, ValueError), (2**21, ValueError)]
)
def test_bad_limits_refused(bad, exc, cache_mb):
    with pytest.raises(exc, match="mb must be"):
        fastconv.set_output_cache_mb(bad)


def _python(code, env):
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_env_var_honoured_and_checked():
    proc = _python(
        "import fastconv; print(fastconv.get_output_cache_mb())", {"FASTCONV_OUTPUT_CACHE_MB": "12"}
    )
    assert proc.returncode == 0
    assert proc.stdout.strip() == "12.0"
    proc = _python("import fastconv", {"FASTCONV_OUTPUT_CACHE_MB": "lots"})
    assert proc.returncode != 0
    assert "FASTCONV_OUTPUT_CACHE_MB" in proc.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_allocates_and_frees(rng):
    x = rng.standard_normal((8, 4, 32, 32), dtype=np.float32)
    w = rng.standard_normal((16, 4, 3, 3), dtype=np.float32)
    want = _conv(x, w)
    held = _conv(x, w)  # a live result across the fork
    pid = os.fork()
    if pid == 0:  # child: must neither deadlock nor corrupt the cache it inherited
        code = 1
        try:
            ok = all(np.array_equal(_conv(x, w), want) for _ in range(3))
            del_me = held
            del del_me
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert_identical(held, want, "parent's result after the fork")
