"""The command line: `fastconv train` on a small real subset writes metrics.json; `fastconv info`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastconv import cli

DATA = Path(
    os.environ.get("FASTCONV_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)


@pytest.mark.skipif(not (DATA / "mnist").is_dir(), reason=f"no MNIST copy at {DATA}")
def test_train_softmax_subset_writes_metrics(tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli.main(
        [
            "train",
            "softmax",
            "--data",
            str(DATA),
            "--epochs",
            "2",
            "--limit",
            "3000",
            "--batch-size",
            "50",
            "--seed",
            "1",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    text = capsys.readouterr()
    assert "test accuracy" in text.out
    assert "img/s" in text.err
    m = json.loads((out / "metrics.json").read_text())
    assert m["model"] == "softmax"
    assert m["epochs"] == 2
    assert m["batch_size"] == 50
    assert m["parameters"] == 7850
    assert len(m["history"]["loss"]) == 2
    assert "val_accuracy" in m["history"]
    assert m["test_accuracy"] > 0.8
    assert m["published_accuracy"] == pytest.approx(0.9292)
    assert m["command"].startswith("fastconv train softmax")
    assert (out / "curves.png").exists() == ("no plot" not in text.out)


def test_info_and_python_m(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "version:" in out
    assert "cnn1" in out
    r = subprocess.run(
        [sys.executable, "-m", "fastconv", "--help"], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0
    assert "train" in r.stdout


def test_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "resnet50"])
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "softmax", "--epochs", "0", "--data", str(DATA)])
    assert e.value.code == 2
    assert "argument --epochs: must be an int >= 1, got 0" in capsys.readouterr().err
