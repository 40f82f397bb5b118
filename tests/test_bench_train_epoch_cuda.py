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
    finally:
        sys.path.remove(str(BENCH))
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
