"""fastconv.distributed: data-parallel fit over MPI, 2 ranks on loopback (`mpiexec -n 2`).

- After k steps every rank holds bitwise the same parameters, rank 0's initial weights having won,
  and they match one process trained on the same global batches within float32 tolerance
  (also with a last batch shorter than the ranks, where one rank adds nothing).
- Metrics, validation and evaluate are reduced over the ranks; Dropout masks differ per rank and
  repeat for the same seed.
- A rank that raises or dies ends the whole job with an error (the subprocess timeout turns a hang
  into a failure); bad configurations raise the same ValueError on every rank.
- The CLI: `mpiexec -n 2 fastconv train` names its ranks in its first line and runs one thread
  per rank on 2 cores; launched without mpi4py it stops with one line.
Tests that need MPI skip, with the reason, where mpi4py or a matching mpiexec is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fastconv import distributed

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DATA = Path(os.environ.get("FASTCONV_DATA") or HERE.parents[1] / "shared" / "data").resolve()
TIMEOUT = 120  # seconds for one mpiexec run; a hang fails the test instead of stalling CI


def _mpiexec():
    beside = Path(sys.executable).parent / "mpiexec"  # the mpich wheel's, in this venv
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "MPI_"))}
    env.update(FASTCONV_NUM_THREADS="1", PYTHONPATH=str(HERE), **extra)
    return env


def _launch(args, cwd, ranks=2, env=None, timeout=TIMEOUT):
    """Run mpiexec; whatever happens, no rank outlives the call. A rank that the MPI runtime failed
    to end (seen once under heavy load: rank 0 orphaned, spinning in MPI progress for an hour)
    is found by a tag in its environment and killed, as is mpiexec's process group on a timeout."""
    cmd = [_mpiexec(), "-n", str(ranks), *args]
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    env = dict(env or _env(), PYTEST_MPI_RUN_TAG=tag)
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.communicate()
        raise
    finally:
        _kill_group(proc.pid)
        _kill_tagged(tag)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_tagged(tag):
    """SIGKILL every process whose environment carries PYTEST_MPI_RUN_TAG=tag (Linux /proc)."""
    needle = f"PYTEST_MPI_RUN_TAG={tag}".encode()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


@pytest.fixture(scope="module")
def mpi():
    """Skip unless mpi4py imports and the mpiexec found starts ranks that see each other."""
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip('mpi4py is not installed (pip install "fastconv[mpi]")')
    if _mpiexec() is None:
        pytest.skip("no mpiexec on PATH or beside this Python (the mpich wheel provides one)")
    code = "import sys; from mpi4py import MPI; sys.exit(MPI.COMM_WORLD.Get_size() != 2)"
    try:
        proc = _launch([sys.executable, "-c", code], cwd=HERE, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.skip(f"{_mpiexec()} -n 2 did not start 2 ranks within 60 s")
    if proc.returncode != 0:
        pytest.skip(
            f"{_mpiexec()} -n 2 does not start 2 connected mpi4py ranks (another MPI than "
            f"mpi4py's?): rc {proc.returncode}, {proc.stderr[-300:]!r}"
        )


@pytest.fixture(scope="module")
def trained(mpi, tmp_path_factory):
    """The "train" scenario, run once for the tests that read it."""
    out = tmp_path_factory.mktemp("train")
    proc, results = _worker("train", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return results, [np.load(out / f"rank{r}.npz") for r in range(2)]


def _worker(scenario, tmp_path):
    proc = _launch([sys.executable, str(HERE / "mpi_worker.py"), scenario, str(tmp_path)], HERE)
    results = [tmp_path / f"rank{r}.json" for r in range(2)]
    return proc, [json.loads(p.read_text()) if p.exists() else None for p in results]


# ---- training -----------------------------------------------------------------------------------
def test_two_ranks_bitwise_equal_and_match_one_process(trained):
    import mpi_worker as w

    results, ranks = trained
    np.testing.assert_array_equal(ranks[0]["cnn"], ranks[1]["cnn"])  # bitwise: same bits

    # one process, the same global batches; its initial weights are rank 0's (seed 100)
    (x, y), val = w.data()
    model = w.cnn(seed=100)
    hist = model.fit(x, y, w.BATCH, w.EPOCHS, validation_data=val, seed=w.SEED, verbose=0)
    np.testing.assert_allclose(ranks[0]["cnn"], w.flat_weights(model), rtol=1e-4, atol=1e-6)

    r0, r1 = results
    assert r0["history"] == r1["history"]
    assert r0["params"]["ranks"] == 2
    assert r0["params"]["samples"] == w.N
    for key, values in hist.history.items():
        np.testing.assert_allclose(r0["history"][key], values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r0["evaluate"], model.evaluate(*val), rtol=1e-5)


def test_dropout_masks_differ_per_rank_and_repeat(trained):
    (r0, r1), ranks = trained
    assert r0["mask_seed"] != r1["mask_seed"]  # each rank draws its own masks
    for a in ranks:
        np.testing.assert_array_equal(a["d0"], a["d1"])  # the same seed, the same run
    np.testing.assert_array_equal(ranks[0]["d0"], ranks[1]["d0"])


def test_bad_configurations_raise_on_every_rank(mpi, tmp_path):
    proc, (r0, r1) = _worker("errors", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for r in (r0, r1):
        assert "same batch_size, got rank 0: 16, rank 1: 17" in r["batch_size differs"]
        assert "same samples, got rank 0: 65, rank 1: 64" in r["samples differ"]
        assert "every rank needs at least one" in r["no data for a rank"]
        assert "batch_size=1 is the global batch" in r["batch smaller than ranks"]
    assert "y must have one target per sample" in r1["bad y on rank 1"]
    assert "rank 1 of 2 failed before training" in r0["bad y on rank 1"]


@pytest.mark.parametrize("how", ["raise", "die", "drift"])
def test_a_failing_rank_ends_every_rank(mpi, tmp_path, how):
    t0 = time.monotonic()
    proc, _ = _worker(how, tmp_path)  # 50 epochs if nobody stopped: the failure must end it
    assert proc.returncode != 0
    if how == "raise":
        assert "[rank 1/2] fastconv: RuntimeError: injected failure on rank 1" in proc.stderr
        assert "aborting all ranks" in proc.stderr
    if how == "drift":
        assert "the ranks' parameters differ after an epoch" in proc.stderr
    assert not (tmp_path / "rank0.json").exists(), f"rank 0 went on ({time.monotonic() - t0:.1f} s)"


# ---- CLI ----------------------------------------------------------------------------------------
@pytest.mark.skipif(not (DATA / "mnist").is_dir(), reason=f"no MNIST copy at {DATA}")
def test_cli_on_two_ranks(mpi, tmp_path):
    out = tmp_path / "run"
    env = _env()
    del env["FASTCONV_NUM_THREADS"]  # the default: cores / ranks on this node
    args = ["train", "cnn1", "--data", str(DATA), "--epochs", "1", "--limit", "400"]
    proc = _launch(
        [sys.executable, "-m", "fastconv", *args, "--out", str(out), "--quiet"], tmp_path, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    assert "2 MPI ranks" in lines[0]
    assert f"x{threads} threads per rank" in lines[0]
    assert sum("test accuracy" in line for line in lines) == 1  # rank 0 alone prints
    assert proc.stderr.count("Epoch 1/1") == 1
    m = json.loads((out / "metrics.json").read_text())
    assert m["mpi_ranks"] == 2
    assert m["fastconv"]["num_threads"] == threads


def _fake_launch_env(tmp_path, rank):
    """The environment of rank `rank` of 2 under mpiexec, with mpi4py made unimportable."""
    blocker = tmp_path / "no_mpi4py" / "mpi4py"
    blocker.mkdir(parents=True, exist_ok=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named mpi4py (test)')\n")
    env = _env(PMI_SIZE="2", PMI_RANK=str(rank), MPI_LOCALNRANKS="2")
    env["PYTHONPATH"] = str(blocker.parent)
    return env


def test_cli_under_mpiexec_without_mpi4py_stops_with_one_line(tmp_path):
    args = [sys.executable, "-m", "fastconv", "train", "softmax", "--out", str(tmp_path / "r")]
    for rank in (0, 1):
        proc = subprocess.run(
            args, env=_fake_launch_env(tmp_path, rank), capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 1
        assert proc.stdout == ""
        if rank == 0:
            assert proc.stderr.count("\n") == 1, proc.stderr
            assert "started on 2 MPI ranks" in proc.stderr
            assert "fastconv[mpi]" in proc.stderr
        else:
            assert proc.stderr == ""  # one line in all, not one per rank
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--epochs", "0"], 2, "--epochs: must be an int >= 1, got 0"),  # argparse
        (["--limit", "1", "--validation-split", "0.5"], 1, "--limit 1 with --validation-split"),
    ],
)
def test_cli_argument_error_under_mpiexec_is_said_once(tmp_path, args, status, message):
    cmd = [sys.executable, "-m", "fastconv", "train", "softmax", *args]
    for rank in (0, 1):
        proc = subprocess.run(
            cmd, env=_fake_launch_env(tmp_path, rank), capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == status
        if rank == 0:
            assert message in proc.stderr
        else:
            assert proc.stderr == ""


# ---- no MPI needed ------------------------------------------------------------------------------
def test_import_does_not_load_mpi4py_and_threads_default_per_rank(tmp_path):
    code = (
        "import sys, fastconv; "
        "print('mpi4py' in sys.modules, fastconv.get_num_threads(), fastconv.distributed.launched_size())"
    )
    env = _fake_launch_env(tmp_path, 0)
    env.pop("FASTCONV_NUM_THREADS")
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    cores = len(os.sched_getaffinity(0))
    assert proc.stdout.split() == ["False", str(max(1, cores // 2)), "2"]
    env["FASTCONV_NUM_THREADS"] = "3"  # an explicit count wins
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.stdout.split() == ["False", "3", "2"]


@pytest.mark.parametrize("size", [1, 2, 3, 7])
@pytest.mark.parametrize("n", [0, 1, 5, 16, 17])
def test_shards_cover_every_item_once(n, size):
    pieces = []
    for rank in range(size):
        g = distributed.Group()
        g.rank, g.size = rank, size
        pieces.append(g.shard(np.arange(n)))
    assert np.array_equal(np.concatenate(pieces), np.arange(n))
    assert max(map(len, pieces)) - min(map(len, pieces)) <= 1


def test_one_process_group_is_plain_fit():
    import mpi_worker as w

    (x, y), _ = w.data()
    runs = []
    for dist in (None, False, distributed.Group()):
        model = w.cnn(seed=3, dropout=True)
        model.fit(x, y, w.BATCH, 1, seed=1, verbose=0, distributed=dist)
        runs.append(w.flat_weights(model))
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])


def test_bad_distributed_argument():
    with pytest.raises(TypeError, match="distributed must be None, False, True"):
        distributed.get_group("world")
