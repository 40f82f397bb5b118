"""What fit() reports: History (its return value) and the per-epoch progress line."""

from __future__ import annotations

import sys
import time

__all__ = ["History"]


class History:
    """What fit() returns: ``history`` maps "loss", "accuracy" (and "val_loss", "val_accuracy"
    when there is validation data) to one value per epoch; ``epoch_seconds`` is the wall time
    of each epoch's training pass and ``images_per_second`` its throughput."""

    def __init__(self):
        self.history = {}
        self.epoch = []
        self.epoch_seconds = []
        self.images_per_second = []
        self.params = {}

    def _append(self, epoch, logs, seconds, images):
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(float(v))
        self.epoch_seconds.append(float(seconds))
        self.images_per_second.append(float(images / seconds) if seconds > 0 else float("inf"))

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)})"


class _Progress:
    """One epoch's progress: tqdm when installed, else a plain line (redrawn on a terminal)."""

    def __init__(self, total, desc, verbose, stream=None):
        self.total, self.desc, self.verbose = total, desc, verbose
        self.stream = sys.stderr if stream is None else stream
        self.done, self.t0, self.last = 0, time.perf_counter(), 0.0
        self.bar = None
        if verbose == 1:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(
                    total=total,
                    desc=desc,
                    unit="img",
                    unit_scale=True,
                    leave=True,
                    file=self.stream,
                )
        self.tty = (
            verbose == 1
            and self.bar is None
            and hasattr(self.stream, "isatty")
            and self.stream.isatty()
        )

    def update(self, n, loss, acc):
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix_str(self._metrics(loss, acc), refresh=False)
        elif self.tty:
            now = time.perf_counter()
            if now - self.last > 0.25 or self.done >= self.total:
                self.last = now
                rate = self.done / max(now - self.t0, 1e-9)
                self.stream.write(
                    f"\r{self.desc} {self.done}/{self.total} [{rate:,.0f} img/s] "
                    f"{self._metrics(loss, acc)}"
                )
                self.stream.flush()

    @staticmethod
    def _metrics(loss, acc):
        if loss is None:  # graph-mode fit: the totals stay on the GPU until the epoch ends
            return ""
        s = f"loss={loss:.4f}"
        return s if acc is None else s + f" accuracy={acc:.4f}"

    def close(self, seconds, logs):
        extra = " ".join(f"{k}={v:.4f}" for k, v in logs.items())
        if self.bar is not None:
            self.bar.set_postfix_str(extra)
            self.bar.close()
        elif self.verbose:
            rate = self.total / max(seconds, 1e-9)
            self.stream.write(
                ("\r" if self.tty else "")
                + f"{self.desc} {self.total}/{self.total} {seconds:.1f}s [{rate:,.0f} img/s] {extra}\n"
            )
            self.stream.flush()
