"""bench/train_epoch_cuda.py on the CPU: its arguments are checked with clear messages, and
without a GPU (or CuPy, or PyTorch) it stops before reading any data, saying what is missing.
The benchmark itself needs a GPU (bench/gpu_check.sh epoch)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        import train_epoch_cuda
    finally:  # the module puts bench/ on the path too: leave none of it behind
        sys.path[:] = [p for p in sys.path if p != str(BENCH)]
    return train_epoch_cuda


def test_defaults(bench):
    a = bench.parse_args([])
    assert a.models == ["cnn1"]
    assert a.modes == ["eager", "graph", "torch"]
    assert (a.images, a.epochs, a.seed, a.json) == (12000, 4, 0, None)


def test_lists_and_numbers(bench):
    a = bench.parse_args(
        ["--models", "cnn1,keras_cnn", "--modes", "graph,torch", "--images", "500", "--epochs", "2"]
    )
    assert a.models == ["cnn1", "keras_cnn"]
    assert a.modes == ["graph", "torch"]
    assert (a.images, a.epochs) == (500, 2)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--models", "lenet9"], "--models must be a comma list of cnn1, keras_cnn"),
        (["--modes", "eager,jit"], "--modes must be a comma list of eager, graph, torch"),
        (["--modes", ","], "--modes must be a comma list"),
        (["--images", "0"], "expected an int >= 1, got '0'"),
        (["--epochs", "two"], "expected an int >= 1, got 'two'"),
        (["--images", "60001"], "--images must be at most 60000"),
    ],
)
def test_bad_arguments_name_the_flag(bench, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def _gpu_ready():
    from fastconv.nn import cuda

    try:
        cuda.require_cupy()
    except (ImportError, RuntimeError):
        return False
    return True


def test_without_a_gpu_it_says_what_is_missing(bench, monkeypatch):
    if _gpu_ready():
        pytest.skip("a GPU is usable here: the no-GPU message cannot be produced")

    def no_data(*args, **kwargs):
        raise AssertionError("data must not be read without a GPU")

    monkeypatch.setattr(bench, "load_data", no_data)
    with pytest.raises(SystemExit) as exc:
        bench.main(["--modes", "eager,graph", "--epochs", "1"])
    text = str(exc.value.code)
    assert text.startswith("train_epoch_cuda: needs a GPU for fastconv's modes:")
    assert any(w in text for w in ("CuPy", "FASTCONV_CUDA=ON", "no CUDA device")), text


def test_a_failing_mode_is_recorded_and_the_rest_reported(bench, monkeypatch, tmp_path, capsys):
    """The report and JSON code on the CPU: torch mode stubbed (no GPU here), one model's run
    raising, the other's returning epochs; the failure is kept and the exit status is 1."""
    import json
    import types

    fake_torch = types.SimpleNamespace(
        backends=types.SimpleNamespace(
            cudnn=types.SimpleNamespace(version=lambda: 91900),
            cuda=types.SimpleNamespace(matmul=types.SimpleNamespace()),
        ),
        cuda=types.SimpleNamespace(get_device_name=lambda: "stub GPU"),
    )
    monkeypatch.setattr(bench, "check_gpu", lambda modes: (None, fake_torch))
    monkeypatch.setattr(bench, "load_data", lambda n, seed: (("x", "y"), ("xt", "yt")))

    def run_torch(name, data, test, epochs, seed, torch):
        if name == "cnn1":
            raise RuntimeError("stub failure")
        return dict(
            seconds=[2.0, 1.0, 1.5][:epochs],
            train_loss=0.5,
            train_accuracy=0.9,
            test_accuracy=0.95,
            test_loss=None,
        )

    monkeypatch.setattr(bench, "run_torch", run_torch)
    out = tmp_path / "epoch.json"
    code = bench.main(
        ["--models", "cnn1,keras_cnn", "--modes", "torch", "--epochs", "3", "--json", str(out)]
    )
    assert code == 1
    text = capsys.readouterr().out
    assert "cnn1 torch FAILED: RuntimeError('stub failure')" in text
    records = json.loads(out.read_text())["records"]
    assert records[0] == dict(
        model="cnn1", mode="torch", images=12000, error="RuntimeError('stub failure')"
    )
    ok = records[1]
    assert (ok["model"], ok["first_s"], ok["median_s"]) == ("keras_cnn", 2.0, 1.25)


def test_fastconv_modes_on_a_simulated_gpu(bench, monkeypatch, tmp_path, rng):
    """The eager and graph branches end to end, on tests/simulated_gpu.py's stand-in device
    (CPU kernels behind CuPy's names): records, medians and the JSON."""
    import json

    import numpy as np
    from fastconv import _cuda_ops
    from simulated_gpu import install

    _, fake_cupy = install(monkeypatch)
    monkeypatch.setattr(bench, "check_gpu", lambda modes: (fake_cupy, None))
    monkeypatch.setattr(_cuda_ops, "device_name", lambda device=0: "simulated")

    def load_data(n, seed):
        x = rng.random((n, 1, 28, 28), dtype=np.float32)
        return (x, rng.integers(0, 10, size=n)), (x[:50], rng.integers(0, 10, size=50))

    monkeypatch.setattr(bench, "load_data", load_data)
    out = tmp_path / "epoch.json"
    argv = ["--modes", "eager,graph", "--images", "250", "--epochs", "2", "--json", str(out)]
    assert bench.main(argv) == 0
    data = json.loads(out.read_text())
    assert data["meta"]["gpu"] == "simulated"
    by = {r["mode"]: r for r in data["records"]}
    assert sorted(by) == ["eager", "graph"]
    for r in by.values():
        assert len(r["seconds"]) == 2
        assert r["median_s"] == r["seconds"][1]
        assert 0.0 <= r["test_accuracy"] <= 1.0
    # the same weights, data and order: the two fastconv modes train alike
    assert abs(by["eager"]["train_loss"] - by["graph"]["train_loss"]) < 1e-3
