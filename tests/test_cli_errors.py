"""`fastconv train` under bad input: one line on stderr naming the option and its range, never a
traceback (a bad FASTCONV_* variable included); status 2 for values argparse refuses, 1 for what
is found later, 130 for Ctrl-C; all checks before training starts (nothing is loaded or trained
when one fails)."""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fastconv import cli, datasets, models

DATA = Path(
    os.environ.get("FASTCONV_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)
needs_data = pytest.mark.skipif(not (DATA / "mnist").is_dir(), reason=f"no MNIST copy at {DATA}")


@pytest.fixture
def no_loading(monkeypatch):
    """Fail the test if the CLI gets as far as loading data."""

    def refuse(*args, **kwargs):
        raise AssertionError("the CLI loaded data although a check should have stopped it")

    monkeypatch.setattr(datasets, "load_dataset", refuse)


def _run(argv, capsys):
    """(status, stderr) of cli.main(argv), whether it returns or raises SystemExit."""
    try:
        rc = cli.main(argv)
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
        if not isinstance(e.code, int) and e.code is not None:
            print(e.code, file=sys.stderr)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--threads", "0"], "argument --threads: must be an int >= 1, got 0"),
        (["--seed", "-1"], "argument --seed: must be an int >= 0, got -1"),
        (["--seed", "x"], "argument --seed: must be an int >= 0, got 'x'"),
        (["--lr", "nan"], r"argument --lr: must be a number > 0.0, got nan"),
        (["--lr", "inf"], r"argument --lr: must be a number > 0.0, got inf"),
        (["--lr", "0"], r"argument --lr: must be a number > 0.0, got 0"),
        (["--lr=-1e-3"], r"argument --lr: must be a number > 0.0"),
        (["--limit", "0"], "argument --limit: must be an int >= 1, got 0"),
        (["--epochs", "-1"], "argument --epochs: must be an int >= 1, got -1"),
        (["--epochs", "1.5"], "argument --epochs: must be an int >= 1, got '1.5'"),
        (["--batch-size", "0"], "argument --batch-size: must be an int >= 1, got 0"),
        (["--validation-split", "1"], r"--validation-split: must be a number in \[0.0, 1.0\)"),
        (["--validation-split", "nan"], r"--validation-split: must be a number in \[0.0, 1.0\)"),
        (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
        (["--dataset", "cifar"], "argument --dataset: invalid choice"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_values_are_usage_errors(args, match, capsys, no_loading):
    rc, err = _run(["train", "softmax", *args], capsys)
    assert rc == 2
    last = err.strip().splitlines()[-1]  # argparse prints the usage above it
    assert re.match(r"fastconv( train)?: error: ", last), last
    assert re.search(match, last), last


def test_unknown_network(capsys, no_loading):
    rc, err = _run(["train", "resnet50"], capsys)
    assert rc == 2
    assert "argument model: invalid choice: 'resnet50'" in err


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--limit", "1"], r"--limit 1 with --validation-split 0.0833333 leaves no training or no"),
        (["--limit", "5", "--validation-split", "0.9"], r"give --limit >= 10"),
        (["--threads", "100000"], "--threads 100000: "),
        (["--cuda-graph"], "--cuda-graph needs --device cuda and an Adam model; got --device cpu"),
    ],
)
def test_bad_combinations_are_found_before_loading(args, match, capsys, no_loading, tmp_path):
    rc, err = _run(["train", "softmax", "--out", str(tmp_path), *args], capsys)
    assert rc == 1
    assert len(err.strip().splitlines()) == 1
    assert re.search(match, err), err


def test_out_that_cannot_be_a_folder(tmp_path, capsys, no_loading):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "sub"):
        rc, err = _run(["train", "softmax", "--out", str(out)], capsys)
        assert rc == 1
        assert f"--out {out}: cannot create or write this folder" in err
        assert len(err.strip().splitlines()) == 1
    (tmp_path / "run" / "metrics.json").mkdir(parents=True)
    rc, err = _run(["train", "softmax", "--out", str(tmp_path / "run")], capsys)
    assert rc == 1
    assert "metrics.json is a folder" in err
    assert sorted(os.listdir(tmp_path / "run")) == ["metrics.json"]  # the probe file is gone


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_not_writable(tmp_path, capsys, no_loading):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    rc, err = _run(["train", "softmax", "--out", str(ro)], capsys)
    assert rc == 1
    assert "cannot create or write" in err


def test_corrupt_and_missing_data(tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in datasets.FILES:
        (bad / (f + ".gz")).write_bytes(gzip.compress(b"\x00\x00\x08\x01")[:-4])
    rc, err = _run(["train", "softmax", "--data", str(bad), "--out", str(tmp_path / "o")], capsys)
    assert rc == 1
    assert "corrupt or truncated gzip stream" in err
    assert str(bad) in err
    rc, err = _run(
        ["train", "softmax", "--data", str(tmp_path / "none"), "--out", str(bad)], capsys
    )
    assert rc == 1
    assert "no such folder" in err


def test_internal_error_is_one_line_with_a_hint(monkeypatch, tmp_path, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset", broken)
    argv = ["train", "softmax", "--out", str(tmp_path)]
    rc, err = _run(argv, capsys)
    assert rc == 1
    assert err == (
        "fastconv train: internal error: RuntimeError: boom "
        "(run again with --debug for the traceback, and please report it)\n"
    )
    with pytest.raises(RuntimeError, match="boom"):
        cli.main([*argv, "--debug"])


def test_keyboard_interrupt_in_process(monkeypatch, tmp_path, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "build", interrupted)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: ((([0], [0]), ([0], [0])), "x"))
    rc, err = _run(["train", "softmax", "--out", str(tmp_path)], capsys)
    assert rc == 130
    assert err == "fastconv train: interrupted\n"


@needs_data
def test_metrics_survive_a_failing_plot(monkeypatch, tmp_path, capsys):
    def broken_plot(*args):
        raise RuntimeError("no display")

    monkeypatch.setattr(cli, "_plot", broken_plot)
    out = tmp_path / "run"
    argv = ["train", "softmax", "--data", str(DATA), "--limit", "200", "--epochs", "1"]
    rc = cli.main([*argv, "--out", str(out), "--quiet"])
    assert rc == 0
    assert "no plot: the plot failed: RuntimeError: no display" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["train_samples"] == 183
    assert sorted(os.listdir(out)) == ["metrics.json"]


@needs_data
def test_ctrl_c_ends_training_with_130_and_one_line(tmp_path):
    """SIGINT to a real `fastconv train` in mid-training: status 130, one line, no traceback."""
    argv = ["train", "softmax", "--data", str(DATA), "--limit", "3000", "--epochs", "100000"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastconv", *argv, "--batch-size", "10", "--out", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell's background job inherits SIGINT ignored, and Python then keeps it ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        header = proc.stdout.readline()  # printed once the data are loaded, just before fit()
        assert header.startswith("fastconv "), header
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "fastconv train: interrupted"
    assert err.count("interrupted") == 1


@pytest.mark.parametrize(
    ("name", "value"), [("FASTCONV_CPU_ISA", "foo"), ("FASTCONV_NUM_THREADS", "abc")]
)
def test_bad_environment_variable_is_one_line_not_a_traceback(name, value):
    """The package validates FASTCONV_* at import, before the CLI runs: a command line still gets
    one line naming the variable and status 2, while `import fastconv` keeps its ValueError."""
    env = dict(os.environ, **{name: value})
    cmd = [sys.executable, "-m", "fastconv", "train", "softmax", "--epochs", "1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith(f"fastconv: {name} must be"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    code = "import fastconv"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"ValueError: {name} must be" in proc.stderr
