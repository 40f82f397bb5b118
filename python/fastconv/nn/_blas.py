"""Keep NumPy's BLAS on one thread while fastconv's kernels run.

The dense layers of these networks are small (at most 3136 x 128 per batch); OpenBLAS's worker
threads gain little on them and keep spinning after each call, competing for the cores that
fastconv's own thread pool is using. Measured on the 2-core machine: a cnn1 epoch took 2.4x longer
with OpenBLAS's default threading than with one BLAS thread. threadpoolctl (an optional
dependency, in the [train] extra) does the limiting; without it this is a no-op.
"""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def single_threaded_blas():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    # yield outside the except block, so errors raised in the body carry no ImportError context
    if threadpool_limits is None:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
