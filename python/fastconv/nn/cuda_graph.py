"""CUDA-graph training: ``Sequential.fit(..., cuda_graph=True)`` on device "cuda".

Off by default, and NOT YET RUN ON A GPU (docs/CUDA.md, "Graph mode"): until a GPU run of
tests/test_nn_cuda_graph.py passes, treat it as experimental.

Eager fit on the GPU issues every kernel from Python and reads the loss back after every step;
at MNIST size that host work, not the GPU, sets the time per step. Here the whole training step
(forward, loss, backward, Adam) is captured once with CuPy's stream capture and replayed for every
full batch, so a step costs one copy of the batch and one graph launch.

A captured graph replays its kernels with the arguments they had at capture time. Everything
that changes from step to step must therefore live in device memory at a fixed address:
  - the batch: copied into fixed input buffers (x_buf, y_buf) before each replay;
  - the step: an int32 counter on the GPU, advanced by a kernel inside the graph; per-step
    values are tables indexed by it, filled on the host once per epoch:
      Adam's lr_t (bias correction; any schedule) -> lr[step]   (_C.cuda.adam_update reads it),
      each Dropout layer's seed                   -> seeds[step] (_C.cuda.dropout_mask reads it);
    the seeds are drawn from the layer's Generator in the eager order, and the mask kernel runs
    the CPU's generator (cpp/include/fastconv/dropout_rng.h), so the masks are the CPU's bits;
  - loss and correct count: summed on the GPU (Loss.device_sums), read once per epoch.
Other traps handled:
  - cuBLAS: CuPy refuses cuBLAS calls while a stream captures (NotImplementedError, CuPy <= 15),
    so Dense layers multiply with fastconv's conv kernels as 1x1 convolutions (graph_matmul), in
    every step of a graph-mode fit (captured or not), so all its steps compute alike;
  - memory: arrays allocated during capture come from a private CuPy memory pool that lives as
    long as the graph, so a block the graph writes is never handed to anyone else;
  - the last, shorter batch (other shapes) and the first full batch (which compiles CuPy's kernels
    and creates Adam's moments before capture) run the same step uncaptured;
  - synchronisation: nothing in the step reads the GPU from the host (max-pool backward skips its
    index-range check while the stream captures); FASTCONV_CUDA_SYNC=1 is refused up front;
  - the stream: capture needs a non-default stream; the training steps run on one (fastconv's
    ops queue on CuPy's current stream), which first waits for the legacy stream's work and is
    drained at every epoch's end (validation runs after that, on the legacy stream).
Supported: one process, the Adam optimizer, any of fastconv.nn's layers. CuPy >= 10 (stream
capture, Graph.launch); written against CuPy 14/15's API.
"""

from __future__ import annotations

import copy

import numpy as np

from .. import _C, ops
from .layers import Dropout
from .optimizers import Adam

__all__ = ["GraphTrainer", "check_graph_fit", "graph_matmul"]


def check_graph_fit(model, group):
    """ValueError naming what stands in the way of fit(cuda_graph=True), before anything moves."""
    if not isinstance(model.optimizer, Adam):
        raise ValueError(
            f"cuda_graph=True supports the Adam optimizer only, got "
            f"{type(model.optimizer).__name__}"
        )
    if group.size > 1:
        raise ValueError("cuda_graph=True runs in one process: distributed fit cannot use it")
    if model.backend.name != "cuda":
        raise ValueError(
            f"cuda_graph=True needs the model on device 'cuda' (model.to('cuda')), it is on "
            f"{model.backend.name!r}"
        )
    if _C.env_value("FASTCONV_CUDA_SYNC"):  # the native parser fastconv.env_value uses
        raise ValueError(
            "cuda_graph=True cannot run with FASTCONV_CUDA_SYNC=1 (a stream synchronisation "
            "inside a capture is illegal); unset it"
        )
    cp = model.backend.xp
    if not hasattr(cp.cuda.Stream, "begin_capture") or not hasattr(cp.cuda, "Graph"):
        raise RuntimeError(
            f"cuda_graph=True needs CuPy >= 10 (stream capture), got {cp.__version__}"
        )


def graph_matmul(a, b, trans_a=False, trans_b=False, out=None):
    """op(a) @ op(b) through fastconv's conv2d as a 1x1 convolution, no cuBLAS (which CuPy does
    not allow inside a stream capture). op(a) (n, k) is the batch of n images of k channels, and
    the weight is op(b).T (m, k): at most two transposed copies, both plain kernels. Works on
    NumPy arrays too (fastconv's CPU conv), which is how the CPU tests check it."""
    xp = np if isinstance(a, np.ndarray) else _module_of(a)
    lhs = xp.ascontiguousarray(a.T if trans_a else a)
    weight = xp.ascontiguousarray(b if trans_b else b.T)  # (m, k) = op(b).T
    n, k = lhs.shape
    m, k2 = weight.shape
    if k != k2:
        raise ValueError(f"matmul: inner sizes differ: {lhs.shape} @ {weight.T.shape}")
    y = ops.conv2d(lhs.reshape(n, k, 1, 1), weight.reshape(m, k, 1, 1)).reshape(n, m)
    if out is None:
        return y
    out[...] = y
    return out


def _module_of(a):
    from .backend import get_array_module

    return get_array_module(a)


def _ptr(a):
    return int(a.data.ptr)


class GraphTrainer:
    """The graph-mode training steps of one fit; see the module docstring. Use:
    begin_epoch(steps), train(x, y, idx) per batch, end_epoch() -> (summed loss, correct), and
    close() at the end (in a finally). Everything runs on self.stream (``with trainer.stream``)."""

    #: False runs every step uncaptured through the same code (the GPU tests' reference).
    capture_enabled = True

    def __init__(self, model, batch_size):
        self.cuda = _C.cuda
        self.model = model
        self.cp = cp = model.backend.xp
        self.batch_size = int(batch_size)
        self.device = int(cp.cuda.Device().id)
        # A non-blocking stream does not wait for the legacy default stream, where the weights
        # and the data were copied in: let that work finish first.
        cp.cuda.Device().synchronize()
        self.stream = cp.cuda.Stream(non_blocking=True)
        self.pool = cp.cuda.MemoryPool()  # the capture's private pool (kept as long as the graph)
        self.graph = None
        self.warm = False
        self.steps = None  # table length, fixed at the first epoch (the graph holds the tables)
        self.dropouts = [
            layer for layer in model.layers if isinstance(layer, Dropout) and layer.rate > 0
        ]
        opt = model.optimizer
        self.adam = (opt.beta_1, opt.beta_2, opt.epsilon)
        with self.stream:
            self.step = cp.zeros(1, dtype=cp.int32)
            self.loss_sum = cp.zeros((), dtype=cp.float64)
            self.correct = cp.zeros((), dtype=cp.int64)
            self.x_buf = cp.empty((self.batch_size, *model.input_shape), dtype=model.backend.dtype)
        self.y_buf = None  # shaped like the first full batch's targets
        self.lr = None
        self.seeds = {}
        # Last, so nothing can fail after it: Dense layers multiply without cuBLAS in every step
        # of this fit and Dropout takes its masks from the GPU; close() undoes both.
        self._backends = [layer.backend for layer in model.layers]
        graph_backend = copy.copy(model.backend)
        graph_backend._matmul = graph_matmul
        for layer in model.layers:
            layer.backend = graph_backend
        for layer in self.dropouts:
            layer.mask_source = self._mask_source(layer)

    # ---- per epoch ------------------------------------------------------------------------------
    def begin_epoch(self, steps):
        """Fill this epoch's tables (lr_t and dropout seeds per step, in eager order), zero the
        step counter and the totals. The first epoch fixes the tables' length."""
        cp, opt = self.cp, self.model.optimizer
        if self.steps is None:
            self.steps = steps
            with self.stream:
                self.lr = cp.empty(steps, dtype=cp.float32)
                for layer in self.dropouts:
                    self.seeds[layer] = cp.empty(steps, dtype=cp.uint64)
        if steps != self.steps:
            raise ValueError(f"every epoch must have {self.steps} steps, got {steps}")
        t0 = opt.iterations
        lr = np.array([opt.lr_at(t0 + i + 1) for i in range(steps)], dtype=np.float32)
        with self.stream:
            self.lr.set(lr, stream=self.stream)
            for layer in self.dropouts:
                seeds = np.array([layer.next_seed() for _ in range(steps)], dtype=np.uint64)
                self.seeds[layer].set(seeds, stream=self.stream)
            self.step.fill(0)
            self.loss_sum.fill(0)
            self.correct.fill(0)

    def end_epoch(self):
        """(summed loss, correct count) of the epoch: the epoch's one read from the GPU."""
        with self.stream:
            loss, correct = float(self.loss_sum), int(self.correct)
        return loss, correct

    # ---- per batch ------------------------------------------------------------------------------
    def train(self, x, y, idx):
        """One step on rows idx of (x, y): a full batch replays the graph (after one uncaptured
        warm-up step, and the capture), a shorter one runs uncaptured."""
        m = self.model
        with self.stream:
            xb, yb = m._batch(x, idx), m._batch(y, idx, dtype=False)
            m.optimizer.iterations += 1  # host bookkeeping; the GPU reads lr_t from its table
            if len(idx) != self.batch_size:
                self._step(xb, yb)
                return
            if self.y_buf is None:
                self.y_buf = self.cp.empty_like(yb)
            self.x_buf[...] = xb  # the graph reads its batch from these fixed buffers
            self.y_buf[...] = yb
            if not self.warm or not self.capture_enabled:
                self.warm = True
                self._step(self.x_buf, self.y_buf)
                return
            if self.graph is None:
                self._capture()
            self.graph.launch(stream=self.stream)

    def _capture(self):
        s = self.stream
        with self.cp.cuda.using_allocator(self.pool.malloc):
            s.begin_capture()
            try:
                self._step(self.x_buf, self.y_buf)
            except BaseException:
                try:
                    s.end_capture()  # leave capture mode; the step's own error is the news
                except Exception:  # noqa: BLE001, S110
                    pass
                raise
            self.graph = s.end_capture()

    def _step(self, x, y):
        """Forward, loss, backward, Adam and the device totals: the captured step, and the
        uncaptured one. Nothing here reads the GPU from the host."""
        m, cp = self.model, self.cp
        z = m._forward(x, True, True)
        total, dz, correct = m.loss.device_sums(z, y)
        m._backward(dz)
        b1, b2, eps = self.adam
        state = m.optimizer.state
        stream = self.stream.ptr
        for key, p, g in m._param_pairs():
            if g is None:
                continue
            st = state.get(key)
            if st is None:  # created by the uncaptured warm-up step, never inside a capture
                st = state[key] = (p * 0, p * 0)
            if not g.flags.c_contiguous:
                g = cp.ascontiguousarray(g)
            m1, m2 = st
            self.cuda.adam_update(
                self.device, stream, _ptr(p), _ptr(m1), _ptr(m2), _ptr(g), int(p.size),
                _ptr(self.lr), _ptr(self.step), b1, b2, eps,
            )  # fmt: skip
        self.loss_sum += total
        self.correct += correct
        self.step += 1

    def _mask_source(self, layer):
        """Dropout.mask_source for layer: its mask for this step, made on the GPU from the seed
        table at the step counter."""

        def mask(shape, keep):
            cp = self.cp
            out = cp.empty(shape, dtype=cp.float32)
            n = int(out.size)
            if n:
                self.cuda.dropout_mask(
                    self.device, self.stream.ptr, _ptr(out), n, float(keep),
                    _ptr(self.seeds[layer]), _ptr(self.step),
                )  # fmt: skip
            return out

        return mask

    def _synchronize(self):
        self.stream.synchronize()

    def close(self):
        """Wait for the stream, give the layers their backends back, drop the graph, then its
        pool (in that order: the pool outlives every replay)."""
        try:
            self._synchronize()
        finally:
            for layer, backend in zip(self.model.layers, self._backends):
                layer.backend = backend
            for layer in self.dropouts:
                layer.mask_source = None
            self.graph = None
            self.pool.free_all_blocks()
