"""Data-parallel training of fastconv.nn models over MPI (mpi4py), for ``Sequential.fit(distributed=...)``.

    mpiexec -n 4 python train.py            # pip install "fastconv[mpi]" (mpi4py + the mpich wheel)

    model.fit(x, y, batch_size=128, epochs=5, distributed=True)   # True: MPI.COMM_WORLD

Every rank calls fit with the same full (x, y) and the same arguments. fit then:
- broadcasts rank 0's parameters, so every rank starts from the same weights;
- draws each epoch's order from the same seed on every rank and gives rank r the r-th contiguous
  piece of every global batch of ``batch_size`` samples (batch_size is the *global* batch; the
  pieces differ by at most one sample), so the union of the shards is exactly the one-process epoch;
- after the backward pass, packs the gradients into one flat buffer (each rank's mean gradient
  times its sample count), sums it with one ``Allreduce`` and divides by the global batch size:
  the gradient of the global batch's mean loss, identical on every rank, so the optimizer step
  leaves bitwise-identical parameters everywhere;
- sums losses, correct counts and validation results across ranks; only rank 0 prints.

A rank that raises inside fit calls ``MPI.Abort`` (after printing its error with its rank), so the
other ranks end within seconds instead of blocking in the next collective. Configurations that
would train differently on different ranks (different sample counts, batch sizes, epochs, seeds or
parameter counts) are caught by one allgather before training and raise the same ValueError on
every rank; so does a run where some rank would get no data.

mpi4py is imported only when a communicator is first needed: ``import fastconv`` never loads MPI.
The launch is detected from the launcher's environment (PMI_SIZE for MPICH/Hydra, Slurm's PMI,
Intel MPI; OMPI_COMM_WORLD_SIZE for Open MPI), without mpi4py: ``launched_size()``.
"""

from __future__ import annotations

import os
import sys
import traceback
import zlib

import numpy as np

__all__ = [
    "Group",
    "abort_on_error",
    "default_num_threads",
    "get_group",
    "launched_local_size",
    "launched_rank",
    "launched_size",
]

# (world size, rank, ranks on this node) as MPI launchers export them: MPICH's Hydra and Intel MPI
# (PMI_*, MPI_LOCAL*), Open MPI (OMPI_COMM_WORLD_*), MVAPICH2 (MV2_COMM_WORLD_*).
_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK")
_LOCAL_SIZE_VARS = ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "MV2_COMM_WORLD_LOCAL_SIZE")


def _env_int(names):
    for name in names:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value), name
    return None, None


def launched_size():
    """The number of ranks an MPI launcher (mpiexec, srun) started, from its environment; 1 when
    this process was not started by one. Needs no mpi4py."""
    n, _ = _env_int(_SIZE_VARS)
    return max(n or 1, 1)


def launched_rank():
    """This process's rank as the launcher exported it (0 when not launched by one)."""
    r, _ = _env_int(_RANK_VARS)
    return r or 0


def launched_local_size():
    """Ranks on this node as the launcher exported it; the world size when it exports no local
    count (as if all ranks shared this node: never more threads than cores)."""
    n, _ = _env_int(_LOCAL_SIZE_VARS)
    return max(n or launched_size(), 1)


def default_num_threads():
    """Kernel threads per rank when nobody chose a count: this process's cores / ranks on the node
    (at least 1), so 2 ranks on a 2-core machine run one thread each instead of four on two cores."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // launched_local_size())


def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(
            f'distributed training needs mpi4py and an MPI library: pip install "fastconv[mpi]" ({e})'
        ) from None
    return MPI


class Group:
    """The ranks of one communicator as fit() uses them. ``Group()`` (or ``get_group(None)``) is a
    single process with no MPI at all: every collective is the identity, so fit runs one loop."""

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()
        self._flat = None

    @property
    def is_root(self):
        return self.rank == 0

    def __repr__(self):
        return f"Group(rank={self.rank}, size={self.size})"

    # ---- work split -----------------------------------------------------------------------------
    def bounds(self, n):
        """[start, stop) of this rank's contiguous piece of n items (sizes differ by at most 1)."""
        q, r = divmod(n, self.size)
        start = self.rank * q + min(self.rank, r)
        return start, start + q + (self.rank < r)

    def shard(self, items):
        """This rank's contiguous piece of items (an index array or an array of samples)."""
        start, stop = self.bounds(len(items))
        return items[start:stop]

    # ---- collectives ----------------------------------------------------------------------------
    def sum(self, values):
        """Element-wise sum over ranks of a few numbers, as a float64 array."""
        a = np.array(values, dtype=np.float64)
        if self.comm is not None and self.size > 1:
            self.comm.Allreduce(_in_place(), a)
        return a

    def check_in_sync(self, model):
        """RuntimeError unless every rank holds bitwise the same parameters (one allgather of a
        CRC-32 per rank): fit's guarantee, checked once per epoch, costs microseconds."""
        if self.comm is None or self.size == 1:
            return
        crc = 0
        for layer in model.layers:
            for p in layer.params.values():
                crc = zlib.crc32(
                    np.ascontiguousarray(model.backend.to_numpy(p)).view(np.uint8), crc
                )
        crcs = self.comm.allgather(crc)
        if len(set(crcs)) != 1:
            raise RuntimeError(
                f"distributed fit: the ranks' parameters differ after an epoch (CRC-32 per rank: "
                f"{crcs}); the MPI library's Allreduce did not give every rank the same sum"
            )

    def broadcast_parameters(self, model):
        """Overwrite every rank's parameters with rank 0's (one Bcast of a flat buffer)."""
        if self.comm is None or self.size == 1:
            return
        be = model.backend
        params = [(layer, k) for layer in model.layers for k in layer.params]
        host = [be.to_numpy(layer.params[k]) for layer, k in params]
        flat = np.concatenate([h.ravel() for h in host]) if host else np.zeros(0)
        self.comm.Bcast(flat, root=0)
        offset = 0
        for (layer, k), h in zip(params, host):
            layer.params[k] = be.asarray(flat[offset : offset + h.size].reshape(h.shape))
            offset += h.size

    def reduce_gradients(self, pairs, local_count, global_count, backend):
        """The (key, param, grad) pairs with each grad replaced by the global batch's mean gradient:
        each rank's local mean times local_count, summed over ranks with one Allreduce of one flat
        host buffer, then divided by global_count. A rank with local_count == 0 contributes zeros
        (its stale grads are not read)."""
        if self.comm is None or self.size == 1:
            return pairs
        dtype = np.dtype(pairs[0][1].dtype) if pairs else np.dtype(np.float32)
        total = sum(int(np.prod(p.shape)) for _, p, _ in pairs)
        if self._flat is None or self._flat.size != total or self._flat.dtype != dtype:
            self._flat = np.empty(total, dtype=dtype)
        flat, views, offset = self._flat, [], 0
        for _, p, g in pairs:
            v = flat[offset : offset + _size(p)].reshape(p.shape)
            if local_count and g is not None:
                v[...] = backend.to_numpy(g)
            else:
                v.fill(0)
            views.append(v)
            offset += v.size
        if local_count != 1:
            flat *= dtype.type(local_count)
        self.comm.Allreduce(_in_place(), flat)
        flat *= dtype.type(1.0 / global_count)
        return [(key, p, backend.asarray(v, dtype=v.dtype)) for (key, p, _), v in zip(pairs, views)]

    # ---- fit's protocol ---------------------------------------------------------------------------
    def run_fit(self, fit):
        """Call fit() (Sequential._fit) so that no rank is left waiting: an error before training
        starts (argument checks) is shared with every rank, which all raise; an error during
        training aborts every rank (MPI.Abort) after printing it."""
        if self.size == 1:
            return fit()
        self._agreed = self._started = False
        try:
            return fit()
        except Exception as e:
            if not self._agreed:  # this rank failed its own checks: the others raise it too
                self._agree(error=f"{type(e).__name__}: {e}")
            if not self._started:  # every rank raises, none waits
                raise
            self._abort(e)
            raise
        except BaseException as e:  # KeyboardInterrupt, SystemExit: the others cannot go on
            self._abort(e)
            raise

    def start_fit(self, model, rng, n, batch_size, epochs, shuffle, xv):
        """Called by fit on every rank once its own checks passed: the ranks must agree on the
        run, every rank needs data; then rank 0's weights, optimizer state and shuffling state
        become everyone's."""
        opt = model.optimizer
        self._agree(
            config=dict(
                samples=n,
                batch_size=batch_size,
                epochs=epochs,
                shuffle=shuffle,
                validation_samples=0 if xv is None else len(xv),
                input_shape=model.input_shape,
                parameters=model.count_params(),
                loss=type(model.loss).__name__,
                optimizer=type(opt).__name__,
                optimizer_iterations=opt.iterations,
            )
        )
        if n < self.size:
            raise ValueError(
                f"distributed fit: {n} training samples for {self.size} ranks: every rank needs at "
                "least one (use more data or fewer ranks)"
            )
        if batch_size < self.size:
            raise ValueError(
                f"distributed fit: batch_size={batch_size} is the global batch, split across "
                f"{self.size} ranks: it must be >= {self.size} so that every rank gets samples in "
                "every full step"
            )
        self._started = True
        self.broadcast_parameters(model)
        be = model.backend
        host = {
            k: tuple(be.to_numpy(a) for a in v) if isinstance(v, tuple) else be.to_numpy(v)
            for k, v in opt.state.items()
        }
        host = self.comm.bcast(host, root=0)
        opt.state = {
            k: tuple(be.asarray(a, dtype=a.dtype) for a in v)
            if isinstance(v, tuple)
            else be.asarray(v, dtype=v.dtype)
            for k, v in host.items()
        }
        rng.bit_generator.state = self.comm.bcast(rng.bit_generator.state, root=0)

    def layer_rng(self, entropy):
        """A Generator for a layer's own draws (dropout masks): the one-process stream on a single
        rank, else one stream per rank, each fixed by the seed and the rank."""
        if self.size == 1:
            return np.random.default_rng(entropy)
        return np.random.default_rng(np.random.SeedSequence(int(entropy), spawn_key=(self.rank,)))

    def _agree(self, error=None, config=None):
        """One allgather: raise on every rank if any rank reported an error or the configs differ."""
        self._agreed = True
        everyone = self.comm.allgather((error, config))
        failed = [(r, e) for r, (e, _) in enumerate(everyone) if e is not None]
        if failed:
            if error is not None:
                return  # this rank raises its own exception
            r, e = failed[0]
            raise ValueError(
                f"distributed fit: rank {r} of {self.size} failed before training: {e}"
            )
        for key in config:
            values = [c[key] for _, c in everyone]
            if any(v != values[0] for v in values):
                per_rank = ", ".join(f"rank {i}: {v!r}" for i, v in enumerate(values))
                raise ValueError(
                    f"distributed fit: every rank must pass the same {key}, got {per_rank}"
                )

    def _abort(self, exc):
        """Print exc with this rank's number and end every rank of the communicator."""
        sys.stdout.flush()
        # The one-line summary first and everything in one write: MPI.Abort may end the launcher's
        # output forwarding before a long traceback written piecemeal has all gone through.
        summary = (
            f"[rank {self.rank}/{self.size}] fastconv: {type(exc).__name__}: {exc}; "
            "aborting all ranks (MPI.Abort)\n"
        )
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        sys.stderr.write(summary + trace)
        sys.stderr.flush()
        self.comm.Abort(1)


def _in_place():
    return _import_mpi().IN_PLACE


def _size(a):
    return int(np.prod(a.shape))


def get_group(distributed):
    """A Group from fit's ``distributed`` argument: None/False (one process), True (MPI.COMM_WORLD),
    an mpi4py communicator, or a Group."""
    if distributed is None or distributed is False:
        return Group()
    if isinstance(distributed, Group):
        return distributed
    if distributed is True:
        MPI = _import_mpi()
        group = Group(MPI.COMM_WORLD)
        launched = launched_size()
        if group.size == 1 and launched > 1:
            raise RuntimeError(
                f"the launcher started {launched} ranks but MPI.COMM_WORLD has 1: the mpiexec "
                "on PATH belongs to another MPI than the one mpi4py was built for"
            )
        return group
    if hasattr(distributed, "Allreduce") and hasattr(distributed, "Get_rank"):
        return Group(distributed)
    raise TypeError(
        "distributed must be None, False, True (MPI.COMM_WORLD), an mpi4py communicator or a "
        f"fastconv.distributed.Group, got {distributed!r}"
    )


class abort_on_error:
    """``with abort_on_error(group):`` an exception inside (a nonzero SystemExit included) prints
    '[rank r/size] ...' with its traceback and aborts every rank (MPI.Abort): the others would
    otherwise wait forever in their next collective. On one process it just propagates."""

    def __init__(self, group):
        self.group = group

    def __enter__(self):
        return self.group

    def __exit__(self, exc_type, exc, tb):
        g = self.group
        if exc_type is None or g is None or g.size == 1:
            return False
        if issubclass(exc_type, SystemExit) and exc.code in (0, None):
            return False
        g._abort(exc)
        return False
