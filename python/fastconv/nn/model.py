"""Sequential: a stack of layers with Keras' compile / fit / evaluate / predict (fit returns a
History, nn/history.py).

Layout is NCHW (channels first): images are (N, C, H, W); (N, H, W) arrays get the channel axis
added when the model's input shape is (1, H, W). Everything runs in the backend's dtype (float32
on the CPU and the GPU): a batch is converted once on entry and never upcast.

Devices: Sequential(..., device="cuda") or model.to("cuda") puts the parameters on the GPU (CuPy
arrays; see fastconv.nn.cuda). fit/evaluate/predict still take host (NumPy) arrays — or CuPy
arrays — and move one batch at a time; losses and metrics come back as Python floats, predict()
and get_weights() return NumPy arrays on every device, save_weights/load_weights use host .npz
files. model.to("cpu") brings everything back (exactly: float32 in, float32 out).

    model = Sequential([Conv2D(20, 5, padding="same", activation="relu"), MaxPooling2D(2),
                        Flatten(), Dense(10)], input_shape=(1, 28, 28), seed=0)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=100, epochs=10, validation_split=0.1)
    loss, acc = model.evaluate(x_test, y_test)
"""

from __future__ import annotations

import contextlib
import errno
import io
import math
import os
import time

import numpy as np

from .. import distributed as _distributed
from .._atomic import atomic_write
from . import losses as _losses
from . import optimizers as _optimizers
from ._blas import single_threaded_blas
from .backend import get_array_module, get_backend
from .history import History, _Progress
from .layers import Activation, Conv2D, Layer, MaxPooling2D

__all__ = ["History", "Sequential"]


def _check_int(value, name, low=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _check_samples(x, name, method):
    """ValueError unless x holds at least one sample, all finite (NaN/Inf in a training or
    evaluation batch poisons the weights or the metrics; predict lets them through, as the ops)."""
    if len(x) == 0:
        raise ValueError(f"{name} holds no samples (shape {tuple(x.shape)}): {method} needs one")
    if x.dtype.kind != "f":
        return
    lo, hi = float(x.min()), float(x.max())  # NaN propagates through min/max: no temporary array
    if math.isfinite(lo) and math.isfinite(hi):
        return
    xp = get_array_module(x)
    first = int(xp.flatnonzero(~xp.isfinite(x.reshape(-1)))[0])
    where = tuple(int(i) for i in np.unravel_index(first, x.shape))
    raise ValueError(
        f"{name} holds NaN or Inf (first at index {where}): {method} needs finite values"
    )


def split_index(n, validation_split, name="validation_split"):
    """Where fit's validation_split cuts n samples: the first split_index(...) train, the rest
    validate (Keras' rule); ValueError when either side would be empty."""
    if validation_split == 0:
        return n
    split_at = int(math.floor(n * (1.0 - validation_split) + 1e-9))
    if split_at <= 0 or split_at >= n:
        raise ValueError(
            f"{name}={validation_split} of {n} samples leaves {split_at} for training and "
            f"{n - split_at} for validation: each needs at least one"
        )
    return split_at


class Sequential:
    """A linear stack of layers (NCHW). input_shape is per sample, e.g. (1, 28, 28); seed makes
    the initial weights (and, unless fit() gets its own seed, shuffling and dropout) reproducible;
    device names the backend ("cpu" = fastconv's kernels in float32, "reference" = float64 NumPy,
    "cuda" = fastconv's CUDA kernels on CuPy arrays, float32). The weights are drawn on the host,
    so a seed gives the same initial weights on every device."""

    def __init__(self, layers=None, input_shape=None, seed=None, device="cpu", name="sequential"):
        self.layers = []
        self.name = name
        if seed is not None:
            _check_int(seed, "seed", low=0)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.backend = get_backend(device)
        self.input_shape = (
            None
            if input_shape is None
            else tuple(_check_int(d, "input_shape") for d in input_shape)
        )
        self.optimizer = None
        self.loss = None
        self.metrics = []
        for layer in layers or []:
            self.add(layer)
        if self.input_shape is not None and self.layers:
            self.build(self.input_shape)

    # ---- structure ------------------------------------------------------------------------------
    def add(self, layer):
        if not isinstance(layer, Layer):
            raise TypeError(f"layers must be fastconv.nn layers, got {layer!r}")
        if layer.built:
            raise ValueError(f"layer {layer!r} is already built into a model")
        self.layers.append(layer)

    @property
    def built(self):
        return bool(self.layers) and all(layer.built for layer in self.layers)

    def build(self, input_shape=None):
        """Create every layer's parameters for a per-sample input_shape (C, H, W) or (features,)."""
        if input_shape is None:
            input_shape = self.input_shape
        if input_shape is None:
            raise ValueError(
                "input_shape is needed to build the model, e.g. input_shape=(1, 28, 28)"
            )
        if not self.layers:
            raise ValueError("the model has no layers")
        if not isinstance(input_shape, (tuple, list)) or not input_shape:
            raise ValueError(f"input_shape must be a tuple of ints >= 1, got {input_shape!r}")
        self.input_shape = tuple(_check_int(d, "input_shape") for d in input_shape)
        used = {}
        shape = self.input_shape
        for layer in self.layers:
            base = layer.name or _snake(type(layer).__name__)
            k = used.get(base, 0)
            used[base] = k + 1
            if layer.name is None or k:
                layer.name = base if k == 0 else f"{base}_{k}"
            try:
                shape = layer.build(shape, self.backend, self._rng)
            except MemoryError as e:  # e.g. Dense(2**40): say which layer asked for it
                raise MemoryError(
                    f"layer '{layer.name}' ({type(layer).__name__}) on input {shape}: its "
                    f"parameters do not fit in memory ({e})"
                ) from None
        seen_params = False
        for layer in self.layers:
            layer.need_input_grad = (
                seen_params  # the first parametrised layer's input needs no gradient
            )
            seen_params = seen_params or bool(layer.params)
        # A ReLU followed by a max-pool: the pool's gradient reaches only each window's winner, and
        # the winner's ReLU derivative is (pooled value > 0). Masking the pooled gradient (a quarter
        # of the size for 2x2 windows) replaces the full-size ReLU mask of the layer before.
        for layer, nxt in zip(self.layers, self.layers[1:]):
            fuse = layer.activation == "relu" and isinstance(nxt, MaxPooling2D)
            layer.relu_grad_in_next = fuse
            nxt.mask_nonpositive = fuse or getattr(nxt, "mask_nonpositive", False)
        # Conv2D(relu) -> MaxPooling2D(2x2, stride 2, valid): on a backend with conv_relu_pool
        # (the CPU) the conv runs both as one op (Conv2D.call), same values and gradients, without
        # writing the full-size activation.
        for layer, nxt in zip(self.layers, self.layers[1:]):
            pairable = (
                isinstance(layer, Conv2D)
                and layer.activation == "relu"
                and isinstance(nxt, MaxPooling2D)
                and nxt.pool_size == (2, 2)
                and nxt.strides == (2, 2)
                and nxt.padding == "valid"
            )
            layer.pool_partner = nxt if pairable else None
        return self

    @property
    def device(self):
        """The backend's name: "cpu", "reference", "cuda", ..."""
        return self.backend.name

    def to(self, device):
        """Move the parameters (and the optimizer's moments) to another backend: "cpu",
        "reference", "cuda" (CuPy; ImportError / RuntimeError, with nothing moved, when CuPy, a
        CUDA build or a GPU is missing) or a registered one. Values are copied exactly (through
        the host), so to("cuda").to("cpu") gives back the same float32 weights. Returns self."""
        old, new = self.backend, get_backend(device)
        if new is old:
            return self
        for layer in self.layers:
            if layer.built:
                layer.to(new)
            else:
                layer.backend = new
        if self.optimizer is not None:
            self.optimizer.move_state(lambda a: new.asarray(old.to_numpy(a)))
        self.backend = new
        return self

    def count_params(self):
        self._require_built()
        return sum(layer.count_params() for layer in self.layers)

    def summary(self, print_fn=print):
        """Print layer, output shape (None is the batch axis), parameters and the total."""
        self._require_built()
        rows = [("Layer (type)", "Output Shape", "Param #")]
        for layer in self.layers:
            rows.append(
                (
                    f"{layer.name} ({type(layer).__name__})",
                    str((None, *layer.output_shape)),
                    f"{layer.count_params():,}",
                )
            )
        w0 = max(len(r[0]) for r in rows) + 2
        w1 = max(len(r[1]) for r in rows) + 2
        line = "-" * (w0 + w1 + 10)
        out = [f'Model: "{self.name}" (NCHW, input {(None, *self.input_shape)})', line]
        out += [f"{a:<{w0}}{b:<{w1}}{c:>8}" for a, b, c in rows[:1]] + ["=" * len(line)]
        out += [f"{a:<{w0}}{b:<{w1}}{c:>8}" for a, b, c in rows[1:]]
        out += ["=" * len(line), f"Total params: {self.count_params():,}", line]
        text = "\n".join(out)
        print_fn(text)
        return text

    def _require_built(self):
        if not self.built:
            raise ValueError(
                "the model is not built yet: give input_shape=... or call build() or fit() first"
            )

    # ---- compile and data -----------------------------------------------------------------------
    def compile(self, optimizer="adam", loss="sparse_categorical_crossentropy", metrics=None):
        """optimizer: "adam", "sgd" or an Optimizer; loss: "sparse_categorical_crossentropy"
        (integer labels) or "categorical_crossentropy" (one-hot); metrics: None or ["accuracy"]."""
        self.optimizer = _optimizers.get(optimizer)
        self.loss = _losses.get(loss)
        metrics = list(metrics or [])
        for m in metrics:
            if m not in ("accuracy", "acc"):
                raise ValueError(f"metrics may only hold 'accuracy', got {metrics!r}")
        self.metrics = ["accuracy"] if metrics else []
        return self

    def _prep_x(self, x, name="x"):
        x = np.asarray(x) if isinstance(x, (list, tuple)) else x
        if not hasattr(x, "ndim") or getattr(x, "dtype", np.dtype(object)).kind not in "fiub":
            raise TypeError(f"{name} must be a numeric array, got {type(x).__name__}")
        if self.input_shape is None:
            self.input_shape = (1, *x.shape[1:]) if x.ndim == 3 else tuple(x.shape[1:])
        if x.ndim == 3 and len(self.input_shape) == 3 and self.input_shape[0] == 1:
            x = x[:, None]  # (N, H, W) images: add the channel axis (NCHW)
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"{name} must be (N, {', '.join(map(str, self.input_shape))}) (NCHW), got {x.shape}"
            )
        if not self.built:
            self.build(self.input_shape)
        return x

    def _prep_y(self, y, n, name="y"):
        y = np.asarray(y) if isinstance(y, (list, tuple)) else y
        if not hasattr(y, "ndim") or y.ndim == 0 or len(y) != n:
            raise ValueError(
                f"{name} must have one target per sample ({n}), got {getattr(y, 'shape', y)}"
            )
        self.loss.check_targets(y, self.layers[-1].output_shape[-1])
        return y

    def _batch(self, a, idx, dtype=True):
        """Rows idx of a, on the backend's device (gathered where a lives, then moved once)."""
        if not isinstance(a, np.ndarray):  # a device array: index it with a device index
            idx = get_array_module(a).asarray(idx)
        b = a[idx]
        return self.backend.asarray(b) if dtype else self.backend.asarray(b, dtype=b.dtype)

    # ---- passes ---------------------------------------------------------------------------------
    def _folded(self):
        """The layers to run for logits: a final softmax layer is left out (folded into the loss)."""
        last = self.layers[-1]
        if isinstance(last, Activation) and last.activation == "softmax" and len(self.layers) > 1:
            return self.layers[:-1]
        return self.layers

    def _forward(self, x, training, logits):
        layers = self._folded() if logits else self.layers
        for i, layer in enumerate(layers):
            x = layer.forward(x, training=training, logits=logits and i == len(layers) - 1)
        return x

    def _backward(self, dz):
        for layer in reversed(self._folded()):
            dz = layer.backward(dz)
            if dz is None:
                break

    def _param_pairs(self):
        return [
            ((i, k), p, layer.grads[k])
            for i, layer in enumerate(self.layers)
            for k, p in layer.params.items()
        ]

    def loss_and_grads(self, x, y, training=False):
        """(loss, logits) for one batch, leaving each layer's grads filled (for gradient checks)."""
        self._check_compiled()
        x = self._prep_x(x)
        y = self._prep_y(y, len(x))
        _check_samples(x, "x", "loss_and_grads")
        z = self._forward(self.backend.asarray(x), training, True)
        loss, dz = self.loss(z, self.backend.asarray(y, dtype=y.dtype))
        self._backward(dz)
        return loss, z

    def train_on_batch(self, x, y):
        """One optimizer step on a prepared batch; returns (loss, number of correct predictions).
        Only Python numbers leave it, so the layers may reuse their arrays from step to step.
        x must already have the model's per-sample shape; the targets are checked as fit checks
        them (fit itself skips these per-step checks: it checked the whole data once)."""
        self._check_compiled()
        if len(x) == 0 or getattr(y, "ndim", 0) == 0 or len(y) != len(x):
            raise ValueError(
                f"train_on_batch needs one target per sample and at least one sample, got x "
                f"{tuple(getattr(x, 'shape', ()))} and y {tuple(getattr(y, 'shape', ()))}"
            )
        self.loss.check_targets(y, self.layers[-1].output_shape[-1])
        return self._train_on_batch(x, y)

    def _train_on_batch(self, x, y, reduce_grads=None):
        """train_on_batch; reduce_grads (distributed fit) maps the (key, param, grad) pairs to the
        global batch's before the optimizer step."""
        layers = self._folded()
        for layer in layers[:-1]:  # the last one's output (the logits) is not a reused buffer
            layer.reuse_buffers = True
        try:
            z = self._forward(x, True, True)
            if self.metrics:
                loss, dz, correct = self.loss.with_accuracy(z, y)
            else:
                (loss, dz), correct = self.loss(z, y), 0
            self._backward(dz)
            pairs = self._param_pairs()
            self.optimizer.step(pairs if reduce_grads is None else reduce_grads(pairs))
        finally:
            for layer in layers[:-1]:
                layer.reuse_buffers = False
        return loss, correct

    def _check_compiled(self):
        if self.loss is None:
            raise ValueError("compile() the model before fit(), evaluate() or loss_and_grads()")

    def fit(
        self,
        x,
        y,
        batch_size=32,
        epochs=1,
        validation_split=0.0,
        validation_data=None,
        shuffle=True,
        seed=None,
        verbose=1,
        distributed=None,
        cuda_graph=False,
    ):
        """Train; returns a History. validation_split holds out the last fraction of (x, y) before
        shuffling, as Keras does; validation_data=(x_val, y_val) takes precedence. verbose: 0 silent,
        1 a progress bar per epoch (tqdm if installed), 2 one line per epoch.

        distributed: None (one process), True (MPI.COMM_WORLD) or an mpi4py communicator: data-
        parallel training (fastconv.distributed; docs/DISTRIBUTED.md). Every rank passes the same
        full (x, y) and arguments; batch_size is the global batch, split across the ranks; only
        rank 0 prints; every rank returns the same History and ends with the same weights.

        cuda_graph: False (default) or True on device "cuda" with Adam, one process: each full
        batch replays the training step captured once as a CUDA graph (nn/cuda_graph.py); loss
        and accuracy are summed on the GPU and read once per epoch. Experimental: not yet run on
        a GPU (docs/CUDA.md, "Graph mode")."""
        if not isinstance(cuda_graph, (bool, np.bool_)):
            raise TypeError(f"cuda_graph must be a bool, got {cuda_graph!r}")
        group = _distributed.get_group(distributed)
        args = (x, y, batch_size, epochs, validation_split, validation_data, shuffle, seed, verbose)
        return group.run_fit(lambda: self._fit(group, *args, bool(cuda_graph)))

    def _fit(
        self,
        group,
        x,
        y,
        batch_size,
        epochs,
        validation_split,
        validation_data,
        shuffle,
        seed,
        verbose,
        cuda_graph=False,
    ):
        self._check_compiled()
        if cuda_graph:
            from .cuda_graph import check_graph_fit

            check_graph_fit(self, group)
        x = self._prep_x(x)
        y = self._prep_y(y, len(x))
        _check_samples(x, "x", "fit")
        _check_samples(y, "y", "fit")
        batch_size = _check_int(batch_size, "batch_size")
        epochs = _check_int(epochs, "epochs")
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be a bool, got {shuffle!r}")
        if (
            isinstance(validation_split, bool)
            or not isinstance(validation_split, (int, float, np.floating))
            or not 0.0 <= validation_split < 1.0
        ):
            raise ValueError(
                f"validation_split must be a float in [0, 1), got {validation_split!r}"
            )
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (x_val, y_val)")
            xv = self._prep_x(validation_data[0], "validation_data x")
            yv = self._prep_y(validation_data[1], len(xv), "validation_data y")
            _check_samples(xv, "validation_data x", "fit")
            _check_samples(yv, "validation_data y", "fit")
        elif validation_split > 0:
            split_at = split_index(len(x), validation_split)
            x, xv, y, yv = x[:split_at], x[split_at:], y[:split_at], y[split_at:]
        else:
            xv = yv = None
        rng = self._rng if seed is None else np.random.default_rng(_check_int(seed, "seed", low=0))
        if group.size > 1:  # the checks every rank must pass; then rank 0's weights and rng state
            group.start_fit(self, rng, len(x), batch_size, epochs, shuffle, xv)
        for layer in self.layers:
            if hasattr(layer, "rng"):  # dropout masks: deterministic, distinct on every rank
                layer.rng = group.layer_rng(rng.integers(2**63))
        n = len(x)
        history = History()
        history.params = dict(
            batch_size=batch_size,
            epochs=epochs,
            samples=n,
            validation_samples=0 if xv is None else len(xv),
            ranks=group.size,
        )
        trainer = None
        if cuda_graph:
            from .cuda_graph import GraphTrainer

            trainer = GraphTrainer(self, batch_size)
        try:
            with single_threaded_blas():
                self._fit_epochs(
                    x, y, xv, yv, epochs, batch_size, shuffle, rng, verbose, history, group, trainer
                )
        except BaseException:
            # The fit's own error is the one to report: a failed step can leave the stream in an
            # error state, and close() (which restores the layers whatever happens) then raises too.
            if trainer is not None:
                with contextlib.suppress(Exception):
                    trainer.close()
            raise
        if trainer is not None:
            trainer.close()
        self.history = history
        return history

    def _fit_epochs(
        self, x, y, xv, yv, epochs, batch_size, shuffle, rng, verbose, history, group, trainer
    ):
        """The epochs of fit. group (fastconv.distributed.Group) gives this rank its piece of every
        batch and sums gradients and metrics over the ranks; one process is a group of one.
        trainer: None, or the GraphTrainer of fit(cuda_graph=True), which runs the steps on its
        own stream and sums loss and accuracy on the GPU (the progress bar then counts images)."""
        n = len(x)
        for epoch in range(epochs):
            order = rng.permutation(n) if shuffle else np.arange(n)
            prog = _Progress(n, f"Epoch {epoch + 1}/{epochs}", verbose if group.is_root else 0)
            t0 = time.perf_counter()
            total_loss, total_correct, mine = 0.0, 0, 0
            if trainer is not None:
                trainer.begin_epoch(-(-n // batch_size))
            for start in range(0, n, batch_size):
                batch = order[start : start + batch_size]
                idx = group.shard(batch)  # the whole batch in one process
                if shuffle:
                    idx = np.sort(idx)  # gather in memory order: same batch, faster copy
                if trainer is not None:
                    trainer.train(x, y, idx)
                    prog.update(len(batch), None, None)
                    continue
                loss, correct = self._train_step(x, y, idx, len(batch), group)
                total_loss += loss * len(idx)
                total_correct += correct
                mine += len(idx)
                prog.update(
                    len(batch),
                    total_loss / max(mine, 1),
                    total_correct / max(mine, 1) if self.metrics else None,
                )
            if trainer is not None:
                total_loss, total_correct = trainer.end_epoch()  # waits for the epoch's work
            seconds = time.perf_counter() - t0
            group.check_in_sync(self)
            total_loss, total_correct = group.sum([total_loss, total_correct])
            logs = {"loss": total_loss / n}
            if self.metrics:
                logs["accuracy"] = total_correct / n
            if xv is not None:  # each rank evaluates its piece of the validation set
                res = self.evaluate(xv, yv, batch_size=max(batch_size, 500), distributed=group)
                if self.metrics:
                    logs["val_loss"], logs["val_accuracy"] = res
                else:
                    logs["val_loss"] = res
            prog.close(seconds, logs)
            history._append(epoch, logs, seconds, n)

    def _train_step(self, x, y, idx, global_count, group):
        """One step on rows idx of (x, y), this rank's piece of a global batch of global_count."""
        if group.size == 1:
            return self._train_on_batch(self._batch(x, idx), self._batch(y, idx, dtype=False))

        def reduce_grads(pairs):
            return group.reduce_gradients(pairs, len(idx), global_count, self.backend)

        if len(idx) == 0:  # a last batch shorter than the ranks: this one adds zeros, still steps
            self.optimizer.step(reduce_grads(self._param_pairs()))
            return 0.0, 0
        xb, yb = self._batch(x, idx), self._batch(y, idx, dtype=False)
        return self._train_on_batch(xb, yb, reduce_grads)

    def _evaluate_sums(self, x, y, batch_size):
        """(summed loss, correct predictions, samples) over prepared (x, y)."""
        total_loss, correct = 0.0, 0
        for start in range(0, len(x), batch_size):
            sl = slice(start, start + batch_size)
            yb = self.backend.asarray(y[sl], dtype=y.dtype)
            z = self._forward(self.backend.asarray(x[sl]), False, True)
            loss, _ = self.loss(z, yb)
            total_loss += loss * len(yb)
            correct += int((z.argmax(axis=1) == self.loss.labels(yb)).sum())
        return total_loss, correct, len(x)

    def evaluate(self, x, y, batch_size=500, verbose=0, distributed=None):
        """[loss, accuracy] when compiled with metrics=["accuracy"], else the loss (as Keras).
        distributed (as in fit): every rank passes the full (x, y), evaluates its piece, and every
        rank gets the totals."""
        group = _distributed.get_group(distributed)
        with _distributed.abort_on_error(group):
            self._check_compiled()
            x = self._prep_x(x)
            y = self._prep_y(y, len(x))
            _check_samples(x, "x", "evaluate")
            _check_samples(y, "y", "evaluate")
            batch_size = _check_int(batch_size, "batch_size")
            start, stop = group.bounds(len(x))
            sums = self._evaluate_sums(x[start:stop], y[start:stop], batch_size)
            total_loss, correct, _ = group.sum(sums) if group.size > 1 else sums
        loss = total_loss / len(x)
        if verbose and group.is_root:
            print(f"loss={loss:.4f} accuracy={correct / len(x):.4f}")
        return [loss, correct / len(x)] if self.metrics else loss

    def predict(self, x, batch_size=500):
        """The model's outputs (softmax probabilities when it ends in a softmax, else logits), as a
        NumPy array on every device (as Keras returns host arrays): a GPU model copies each batch's
        outputs back. No samples in, no samples out: x of shape (0, ...) gives (0, *output_shape)
        (as Keras and PyTorch). NaN/Inf in x propagate to the outputs."""
        x = self._prep_x(x)
        batch_size = _check_int(batch_size, "batch_size")
        if len(x) == 0:
            return np.empty((0, *self.layers[-1].output_shape), dtype=self.backend.dtype)
        out = [
            self.backend.to_numpy(
                self._forward(self.backend.asarray(x[s : s + batch_size]), False, False)
            )
            for s in range(0, len(x), batch_size)
        ]
        return np.concatenate(out)

    def __call__(self, x):
        return self.predict(x)

    # ---- weights --------------------------------------------------------------------------------
    def get_weights(self):
        """Every parameter as a NumPy array, in layer order: copies (as Keras), so training
        afterwards does not change them."""
        self._require_built()
        return [
            np.array(self.backend.to_numpy(p), copy=True)
            for layer in self.layers
            for p in layer.params.values()
        ]

    def set_weights(self, weights):
        """Set every parameter from a list in get_weights' order (copied in). All or nothing: a
        wrong count, shape, non-float dtype or a NaN/Inf raises ValueError naming the parameter,
        and the model is left as it was."""
        self._require_built()
        slots = self._weight_slots()
        if not isinstance(weights, (list, tuple)) or len(weights) != len(slots):
            got = len(weights) if isinstance(weights, (list, tuple)) else type(weights).__name__
            raise ValueError(
                f"weights must be a list of {len(slots)} arrays (get_weights' order), got {got}"
            )
        self._assign_weights(
            {
                key: self._checked_weight(a, where, p, "weights")
                for (key, where, p), a in zip(slots, weights)
            }
        )
        return self

    def _weight_slots(self):
        """(file key, description, parameter) of every parameter, in layer order."""
        return [
            (f"{layer.name}.{k}", f"layer {i} '{layer.name}' ({type(layer).__name__}) {k}", p)
            for i, layer in enumerate(self.layers)
            for k, p in layer.params.items()
        ]

    def _checked_weight(self, a, where, p, source):
        """a as a backend array for parameter p, or ValueError naming source and where."""
        try:
            a = np.asarray(self.backend.to_numpy(a))
        except Exception as e:  # noqa: BLE001 - anything that is not array-like
            raise ValueError(f"{source}: {where} is not an array: {e}") from None
        if a.dtype.kind != "f":
            raise ValueError(f"{source}: {where} has dtype {a.dtype}, expected floating point")
        if a.shape != tuple(p.shape):
            raise ValueError(
                f"{source}: {where} has shape {a.shape} but {tuple(p.shape)} in the model"
            )
        if a.size and not np.isfinite(a).all():
            raise ValueError(f"{source}: {where} holds NaN or Inf values")
        return self.backend.asarray(np.array(a, copy=True))

    def _assign_weights(self, arrays):
        """Put checked arrays (file key -> backend array) in place; nothing here can fail."""
        for layer in self.layers:
            for k in layer.params:
                layer.params[k] = arrays[f"{layer.name}.{k}"]
        if self.optimizer is not None:
            self.optimizer.reset()

    def save_weights(self, path):
        """Write every parameter to an .npz file (no pickle), atomically: the file at path is
        the old one or the new one, and no temporary file is left behind, even when the process
        is killed (see fastconv._atomic)."""
        self._require_built()
        arrays = {
            "__layers__": np.array([f"{type(lyr).__name__}:{lyr.name}" for lyr in self.layers])
        }
        for layer in self.layers:
            for k, p in layer.params.items():
                arrays[f"{layer.name}.{k}"] = self.backend.to_numpy(p)
        atomic_write(path, lambda f: np.savez(f, **arrays))

    def load_weights(self, path):
        """Read weights saved by save_weights. All or nothing: every array is read and checked
        (present, no extra ones, shape, floating dtype, finite) before any is assigned, so a bad
        file raises ValueError naming the file and the parameter and leaves the model as it was.
        A missing or unreadable file raises OSError naming it."""
        self._require_built()
        path = os.fspath(path)
        if os.path.isdir(path):
            raise IsADirectoryError(errno.EISDIR, "is a folder, expected a weights .npz file", path)
        with open(path, "rb") as f:
            data = io.BytesIO(f.read())
        try:
            npz = np.load(data, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
        except Exception as e:  # noqa: BLE001 - whatever the bytes are, it is not a weights file
            raise ValueError(f"{path} is not a weights .npz file: {e}") from None
        with npz:
            keys = set(npz.files) - {"__layers__"}
            slots = self._weight_slots()
            arrays = {}
            for key, where, p in slots:
                if key not in keys:
                    raise ValueError(f"{path} has no weights for {where} of shape {tuple(p.shape)}")
                try:
                    a = npz[key]
                except Exception as e:  # noqa: BLE001 - CRC, zlib, .npy header: a corrupt member
                    raise ValueError(f"{path}: {where} ({key!r}) is corrupt: {e}") from None
                arrays[key] = self._checked_weight(a, where, p, path)
            extra = sorted(keys - {key for key, _, _ in slots})
            if extra:
                raise ValueError(f"{path} holds weights the model has no layer for: {extra}")
        self._assign_weights(arrays)
        return self


def _snake(name):
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and (not name[i - 1].isupper() and not name[i - 1].isdigit()):
            out.append("_")
        out.append(ch.lower())
    return "".join(out)
