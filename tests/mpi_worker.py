"""What each rank runs in tests/test_distributed.py: `mpiexec -n 2 python mpi_worker.py SCENARIO OUT`.

Every rank writes OUT/rank<r>.npz (weights) and/or OUT/rank<r>.json (results); the test process
reads them back. Scenarios:
    train   a small CNN with a short last batch (the second rank gets no sample of it) and
            validation data; then a model with Dropout trained twice from the same seed
    errors  the configurations fit must refuse on every rank (ValueError, no hang)
    raise   rank 1 raises in the middle of training: every rank must end (MPI.Abort)
    die     rank 1 exits abruptly (os._exit) in the middle of training: the others must not hang
    drift   one of rank 1's weights drifts: fit's end-of-epoch check must stop every rank
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
from fastconv.nn import Conv2D, Dense, Dropout, Flatten, MaxPooling2D, Sequential

# the data and schedule the test's one-process run repeats (it imports these)
N, BATCH, EPOCHS, SEED = 65, 16, 2, 5  # 65 = 4 batches of 16 and one of 1: rank 1 gets none


def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N + 20, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, N + 20)
    return (x[:N], y[:N]), (x[N:], y[N:])


def cnn(seed, dropout=False):
    layers = [Conv2D(4, 3, padding="same", activation="relu"), MaxPooling2D(2), Flatten()]
    layers += [Dropout(0.5)] if dropout else []
    model = Sequential([*layers, Dense(10)], input_shape=(1, 8, 8), seed=seed)
    return model.compile("adam", metrics=["accuracy"])


def flat_weights(model):
    return np.concatenate([w.ravel() for w in model.get_weights()])


def train(comm, out):
    (x, y), val = data()
    # a different seed on every rank: rank 0's initial weights must win the broadcast
    model = cnn(seed=100 + comm.rank)
    hist = model.fit(
        x, y, BATCH, EPOCHS, validation_data=val, seed=SEED, verbose=0, distributed=comm
    )
    ev = model.evaluate(*val, batch_size=7, distributed=comm)
    runs = []
    for _ in range(2):  # Dropout: the same seed gives the same run; each rank its own masks
        m = cnn(seed=1, dropout=True)
        m.fit(x, y, BATCH, 1, seed=SEED, verbose=0, distributed=comm)
        runs.append(flat_weights(m))
    mask_seed = int(m.layers[3].rng.integers(2**62))
    np.savez(
        os.path.join(out, f"rank{comm.rank}.npz"), cnn=flat_weights(model), d0=runs[0], d1=runs[1]
    )
    result = dict(history=hist.history, params=hist.params, evaluate=ev, mask_seed=mask_seed)
    return result


def errors(comm, out):
    (x, y), _ = data()
    r = comm.rank
    cases = {
        "batch_size differs": dict(x=x, y=y, batch_size=BATCH + r),
        "samples differ": dict(x=x[: N - r], y=y[: N - r], batch_size=BATCH),
        "no data for a rank": dict(x=x[:1], y=y[:1], batch_size=BATCH),
        "batch smaller than ranks": dict(x=x, y=y, batch_size=1),
        "bad y on rank 1": dict(x=x, y=y[: N - r], batch_size=BATCH),
    }
    result = {}
    for name, kw in cases.items():
        model = cnn(seed=0)
        try:
            model.fit(kw["x"], kw["y"], kw["batch_size"], 1, verbose=0, distributed=comm)
            result[name] = None
        except ValueError as e:
            result[name] = str(e)
    return result


def fail(comm, out, how):
    (x, y), _ = data()
    model = cnn(seed=0)
    step = model._train_on_batch
    calls = []

    def failing_step(*args, **kwargs):
        calls.append(1)
        if comm.rank == 1 and len(calls) == 3:
            if how == "die":
                os._exit(3)
            if how == "drift":  # one weight off on one rank: the end-of-epoch check catches it
                model.layers[-1].params["kernel"][0, 0] += np.float32(0.01)
            else:
                raise RuntimeError("injected failure on rank 1")
        return step(*args, **kwargs)

    model._train_on_batch = failing_step
    model.fit(x, y, BATCH, 50, verbose=0, distributed=comm)
    return {"finished": True}  # never reached: the failure ends every rank


def main():
    scenario, out = sys.argv[1], sys.argv[2]
    from mpi4py import MPI  # here, not at the top: the one-process test imports data() and cnn()

    comm = MPI.COMM_WORLD
    if scenario == "train":
        result = train(comm, out)
    elif scenario == "errors":
        result = errors(comm, out)
    else:
        result = fail(comm, out, scenario)
    result["size"] = comm.size
    with open(os.path.join(out, f"rank{comm.rank}.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
