"""fastconv's parallel work on PyTorch's OpenMP threads.

fastconv's kernels normally run on fastconv's own thread pool. Beside PyTorch that makes two sets
of worker threads on the same cores, and they take cores from each other: PyTorch's libgomp
workers spin for milliseconds after each of its ops (a converted model's Linear, loss and
optimizer steps run between fastconv's calls), and fastconv's workers spin 200 us after each of
fastconv's. share_threads_with_torch() hands fastconv the GOMP_parallel entry of the OpenMP
runtime PyTorch loaded: fastconv's jobs then run on PyTorch's team (the calling thread plus
PyTorch's workers), with the same chunks and the same results, and fastconv's own pool is not
used. `import fastconv.torch` turns it on: on a quiet machine one set of threads is much faster
(a converted cnn1 training step took half the time). Its cost: an OpenMP team joins at the end of
every job, so a team thread that a busy machine has descheduled delays the call by its wait, where
fastconv's pool lets the caller finish without a late worker; PyTorch's own ops pay the same
(docs/TORCH.md has the measurements).
"""

from __future__ import annotations

import ctypes
import os

import torch

from fastconv import ops as _fastconv_ops

_RUNTIMES = ("libgomp", "libiomp5", "libomp")


def _torch_openmp_library():
    """Path of the OpenMP runtime loaded in this process that PyTorch uses, or None."""
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        with open("/proc/self/maps") as maps:
            paths = {
                line.split(None, 5)[5].strip()
                for line in maps
                if line.count(" ") >= 5 and any(r in line for r in _RUNTIMES)
            }
    except OSError:  # not Linux
        return None
    torch_dir = os.path.dirname(torch.__file__)
    ours = sorted(p for p in paths if p.startswith(torch_dir))
    if len(ours) == 1:
        return ours[0]
    return next(iter(paths)) if len(paths) == 1 else None


def gomp_parallel_address() -> int:
    """The address of GOMP_parallel in PyTorch's OpenMP runtime (already loaded), or 0."""
    path = _torch_openmp_library()
    if path is None or not hasattr(os, "RTLD_NOLOAD"):
        return 0
    try:
        lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LOCAL)
        return ctypes.cast(lib.GOMP_parallel, ctypes.c_void_p).value or 0
    except (OSError, AttributeError):
        return 0


def share_threads_with_torch(enabled: bool = True) -> bool:
    """Run fastconv's parallel work on PyTorch's OpenMP threads (True, what importing
    fastconv.torch sets), or on fastconv's own pool (False). Returns whether fastconv now uses
    PyTorch's threads (False where PyTorch's OpenMP runtime cannot be found). A forked child goes
    back to fastconv's pool."""
    address = gomp_parallel_address() if enabled else 0
    _fastconv_ops.set_team_parallel(address)
    return bool(address)


def threads_shared_with_torch() -> bool:
    return _fastconv_ops.team_parallel_set()
