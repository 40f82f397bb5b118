"""fit(cuda_graph=True)'s host-side flow on the CPU, through a simulated device.

No GPU runs the graph mode here, so this drives GraphTrainer (nn/cuda_graph.py) over a stand-in:
a "cuda" backend whose array module is NumPy behind CuPy's names (streams, pools, .set(),
Graph.launch), whose conv/pool ops are the CPU's, and whose two device-state kernels
(_C.cuda.adam_update, _C.cuda.dropout_mask) are emulated with the CPU kernels they share their
formulas with, reading the step's lr_t and seed from the tables at the step counter by address,
as the CUDA kernels do. GraphTrainer._capture runs as written, its step on the CPU with every
read of a device array to the host refused (as CuPy refuses it on a capturing stream); later
"graph launches" rerun the step (recording it needs a GPU). The stand-in lives in
tests/simulated_gpu.py (the GPU epoch bench's CPU test uses it too).

What it checks: per-epoch tables (lr_t from Adam.lr_at at the right step, dropout seeds in eager
order), the step counter's reset and advance, the warm-up and the shorter last batch, the
iteration count, the totals read once per epoch, validation, and the model restored afterwards;
the result is compared with the plain CPU fit from the same seed (other Dense and loss kernels,
so close rather than identical; a step-size or seed-order mistake would be far off).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from fastconv import cli, models
from fastconv.nn import cuda_graph
from simulated_gpu import install


@pytest.fixture
def simulated_gpu(monkeypatch):
    return install(monkeypatch)[0]


def _data(rng, name, n):
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, size=n)
    return x, (np.eye(10, dtype=np.float32)[y] if name == "keras_cnn" else y)


@pytest.mark.parametrize(("name", "batch"), [("cnn1", 20), ("keras_cnn", 24)])
def test_graph_mode_flow_matches_the_cpu_fit(rng, simulated_gpu, name, batch):
    x, y = _data(rng, name, 3 * batch + batch // 2)  # three full batches and a shorter one
    cpu = models.build(name, seed=3)
    sim = models.build(name, seed=3, device="cuda")
    for layer in sim.layers:
        if hasattr(layer, "rate") and layer.rate > 0:  # keras_cnn: masks from the seed tables
            assert layer.mask_source is None
    hc = cpu.fit(x, y, batch_size=batch, epochs=2, seed=4, verbose=0, validation_split=0.1)
    hs = sim.fit(
        x, y, batch_size=batch, epochs=2, seed=4, verbose=0, validation_split=0.1, cuda_graph=True
    )
    steps = 2 * -(-int(len(x) * 0.9) // batch)
    assert sim.optimizer.iterations == cpu.optimizer.iterations == steps
    n_params = len(sim.get_weights())
    assert simulated_gpu.calls["adam_update"] == steps * n_params
    n_drop = sum(1 for layer in sim.layers if getattr(layer, "rate", 0) > 0)
    assert simulated_gpu.calls["dropout_mask"] == steps * n_drop
    np.testing.assert_allclose(hs.history["loss"], hc.history["loss"], rtol=1e-4)
    np.testing.assert_allclose(hs.history["val_loss"], hc.history["val_loss"], rtol=1e-4)
    np.testing.assert_allclose(hs.history["accuracy"], hc.history["accuracy"], atol=0.02)
    for a, b in zip(sim.get_weights(), cpu.get_weights()):
        # other Dense and loss kernels: float32 rounding apart. A wrong lr_t step or seed would
        # move most weights by ~1e-4 or more.
        diff = np.abs(a - b)
        assert np.mean(diff > 2e-5) < 0.01, f"{np.mean(diff > 2e-5):.2%} beyond 2e-5"
    # the model is as before the graph fit: its own backend on every layer, no dropout hook
    assert all(layer.backend is sim.backend for layer in sim.layers)
    assert all(getattr(layer, "mask_source", None) is None for layer in sim.layers)


def test_every_step_uncaptured_gives_the_same_run(rng, simulated_gpu, monkeypatch):
    x, y = _data(rng, "keras_cnn", 50)
    runs = []
    for capture in (True, False):
        monkeypatch.setattr(cuda_graph.GraphTrainer, "capture_enabled", capture)
        model = models.build("keras_cnn", seed=5, device="cuda")
        h = model.fit(x, y, batch_size=16, epochs=2, seed=6, verbose=0, cuda_graph=True)
        runs.append((h.history, model.get_weights()))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)


def test_an_error_in_a_step_restores_the_model(rng, simulated_gpu, monkeypatch):
    model = models.build("keras_cnn", seed=1, device="cuda")
    x, y = _data(rng, "keras_cnn", 40)

    def broken(*args):
        raise RuntimeError("simulated kernel failure")

    monkeypatch.setattr(simulated_gpu, "adam_update", broken)
    with pytest.raises(RuntimeError, match="simulated kernel failure"):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, cuda_graph=True)
    assert all(layer.backend is model.backend for layer in model.layers)
    assert all(getattr(layer, "mask_source", None) is None for layer in model.layers)


def test_a_failing_close_does_not_hide_the_steps_error(rng, simulated_gpu, monkeypatch):
    """After a failed step the stream may be in an error state, so closing the trainer can fail
    too: fit reports the step's error, not close()'s, and the layers are restored anyway."""
    from fastconv.nn import cuda_graph

    model = models.build("cnn1", seed=3, device="cuda")
    x, y = _data(rng, "cnn1", 40)

    def broken(*args):
        raise RuntimeError("simulated kernel failure")

    def sync_fails(self):
        raise RuntimeError("simulated sticky CUDA error")

    monkeypatch.setattr(simulated_gpu, "adam_update", broken)
    monkeypatch.setattr(cuda_graph.GraphTrainer, "_synchronize", sync_fails, raising=False)
    with pytest.raises(RuntimeError, match="simulated kernel failure"):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, cuda_graph=True)
    assert all(layer.backend is model.backend for layer in model.layers)


DATA = Path(
    os.environ.get("FASTCONV_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)


@pytest.mark.skipif(not (DATA / "mnist").is_dir(), reason=f"no MNIST copy at {DATA}")
def test_cli_train_cuda_graph(simulated_gpu, tmp_path, capsys):
    """`fastconv train cnn1 --device cuda --cuda-graph` (gpu_check.sh's schedule run) end to end
    on the simulated device."""
    out = tmp_path / "run"
    argv = ["train", "cnn1", "--device", "cuda", "--cuda-graph", "--data", str(DATA)]
    argv += ["--epochs", "1", "--limit", "600", "--out", str(out), "--quiet"]
    assert cli.main(argv) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert (m["device"], m["cuda_graph"], m["epochs"]) == ("cuda", True, 1)
    assert simulated_gpu.calls["adam_update"] > 0
    assert 0.0 < m["test_accuracy"] <= 1.0


def test_cuda_sync_debugging_is_refused(rng, simulated_gpu, monkeypatch):
    """FASTCONV_CUDA_SYNC=1 synchronises after every launch, which a capture cannot do."""
    monkeypatch.setenv("FASTCONV_CUDA_SYNC", "1")
    model = models.build("cnn1", seed=0, device="cuda")
    x, y = _data(rng, "cnn1", 8)
    with pytest.raises(ValueError, match="cannot run with FASTCONV_CUDA_SYNC=1"):
        model.fit(x, y, verbose=0, cuda_graph=True)
    assert simulated_gpu.calls["adam_update"] == 0


def test_a_host_read_inside_the_captured_step_fails_as_on_cupy(rng, simulated_gpu, monkeypatch):
    """The step runs "captured" with host reads refused (CuPy's RuntimeError): a float() of a
    device total inside it, which would end a real capture, fails here too, and the model comes
    back as it was."""
    model = models.build("cnn1", seed=2, device="cuda")
    x, y = _data(rng, "cnn1", 48)
    sums = type(model.loss).device_sums

    def reads_back(self, z, labels):
        total, dz, correct = sums(self, z, labels)
        float(total)  # a host read of a device array (a 0-d one, as CuPy's sum gives)
        return total, dz, correct

    monkeypatch.setattr(type(model.loss), "device_sums", reads_back)
    with pytest.raises(RuntimeError, match="the current stream is capturing"):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, cuda_graph=True)
    assert all(layer.backend is model.backend for layer in model.layers)
    assert model.optimizer.iterations == 2  # the warm-up step ran, the capture failed
