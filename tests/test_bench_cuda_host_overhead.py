"""bench/cuda_host_overhead.py's fake mode end to end (a few calls; no timing is checked), so the
script a GPU session runs does not rot on machines without one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from fastconv import _cuda_ops, ops

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.delitem(sys.modules, "cuda_host_overhead", raising=False)
    import cuda_host_overhead

    return cuda_host_overhead


def test_fake_mode_writes_both_variants(bench, tmp_path, capsys):
    routing = (ops._is_cuda, ops._cuda)
    out = tmp_path / "overhead.json"
    bench.main(["--fake", "--rounds", "2", "--calls", "3", "--json", str(out)])
    assert "fastconv_after" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["meta"]["mode"] == "fake"
    records = {(r["op"], r["impl"]): r for r in data["records"]}
    ops_timed = ("conv2d_fwd", "conv2d_bwd_data", "conv2d_bwd_weights", "max_pool2d_fwd")
    for op in ops_timed + ("max_pool2d_bwd", "max_pool2d_bwd_layer"):
        for variant in ("before", "after"):
            assert records[(op, f"fastconv_{variant}")]["cpu_us_per_call_median"] > 0
    for op in ops_timed[:2]:  # device, stream and the output: nothing else
        assert sum(records[(op, "fastconv_after")]["cupy_calls"].values()) == 3
    layer = records[("max_pool2d_bwd_layer", "fastconv_after")]["cupy_calls"]
    assert "reduction" not in layer
    assert records[("max_pool2d_bwd_layer", "fastconv_before")]["cupy_calls"]["reduction"] == 2
    # the run leaves fastconv as it found it
    assert (ops._is_cuda, ops._cuda) == routing
    assert _cuda_ops._FAST is True
