"""fastconv: fast Conv2D / MaxPool2D kernels (AVX2/AVX-512 C++, CUDA) for NCHW float32 arrays,
checked against a NumPy reference, with a Keras-like layer API (fastconv.nn).

    import fastconv
    y = fastconv.conv2d(x, w, b, padding="same")
"""

from __future__ import annotations

import numbers as _numbers
import os as _os
import sys as _sys

from . import _C, reference
from .ops import (
    conv2d,
    conv2d_algo,
    conv2d_algos,
    conv2d_backward,
    conv2d_bwd_data,
    conv2d_bwd_weights,
    conv2d_relu_maxpool2d,
    conv2d_relu_maxpool2d_bwd_data,
    conv2d_relu_maxpool2d_bwd_weights,
    get_conv_algo,
    max_pool2d,
    max_pool2d_algo,
    max_pool2d_backward,
    relu_maxpool2d_backward,
    set_conv_algo,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "conv2d",
    "conv2d_algo",
    "conv2d_algos",
    "conv2d_backward",
    "conv2d_bwd_data",
    "conv2d_bwd_weights",
    "conv2d_relu_maxpool2d",
    "conv2d_relu_maxpool2d_bwd_data",
    "conv2d_relu_maxpool2d_bwd_weights",
    "max_pool2d",
    "max_pool2d_algo",
    "max_pool2d_backward",
    "relu_maxpool2d_backward",
    "info",
    "env_settings",
    "env_value",
    "reference",
    "nn",
    "models",
    "datasets",
    "distributed",
    "cpu_isas",
    "get_cpu_isa",
    "set_cpu_isa",
    "get_num_threads",
    "set_num_threads",
    "get_output_cache_mb",
    "set_output_cache_mb",
    "get_winograd",
    "set_winograd",
    "get_conv_algo",
    "set_conv_algo",
]


def cpu_isas() -> list:
    """The CPU kernel paths this machine and build support, e.g. ['portable', 'avx2', 'avx512']."""
    return list(_C.available_isas())


def get_cpu_isa() -> str:
    """The CPU kernel path in use."""
    return _C.get_isa()


def set_cpu_isa(isa: str) -> None:
    """Force a CPU kernel path ('portable', 'avx2' or 'avx512'); ValueError if unsupported."""
    if not isinstance(isa, str):
        raise TypeError(f"isa must be a str, got {isa!r}")
    _C.set_isa(isa)


def get_num_threads() -> int:
    """Threads used by the CPU kernels."""
    return _C.get_num_threads()


def set_num_threads(n: int) -> None:
    """Set the CPU kernels' thread count (default: FASTCONV_NUM_THREADS, else all cores; under
    mpiexec, the cores / the ranks on this node)."""
    if isinstance(n, bool) or not isinstance(n, _numbers.Integral):
        raise TypeError(f"n must be an int, got {n!r}")
    if not 1 <= n <= 4096:
        raise ValueError(f"n must be an int from 1 to 4096, got {n!r}")
    _C.set_num_threads(int(n))


def get_output_cache_mb() -> float:
    """Most idle result memory kept for reuse, in MiB (see set_output_cache_mb)."""
    return _C.output_cache_limit() / 2**20


def set_output_cache_mb(mb) -> None:
    """Keep up to `mb` MiB of freed result arrays (those of 64 KiB and more) for the next result of
    the same size, instead of returning them to the system (default 256, or
    FASTCONV_OUTPUT_CACHE_MB). A fresh multi-megabyte array costs page faults that, for the
    MNIST-size layers, take as long as the convolution. 0 turns the cache off and frees what it
    holds."""
    if isinstance(mb, bool) or not isinstance(mb, _numbers.Real):
        raise TypeError(f"mb must be a number of MiB, got {mb!r}")
    if not 0 <= mb <= 2**20:
        raise ValueError(f"mb must be from 0 to 1048576 MiB, got {mb!r}")
    _C.set_output_cache_limit(int(float(mb) * 2**20))


def get_winograd() -> bool:
    """Whether the CPU kernels may use Winograd convolution (see set_winograd)."""
    return bool(_C.get_winograd())


def set_winograd(enabled: bool) -> None:
    """Allow (True, the default) or forbid (False) Winograd convolution on the CPU.

    Where allowed, 3x3 and 5x5 stride-1 convolutions with enough channels run Winograd F(2x2,
    3x3) / F(2x2, 5x5) on AVX-512 (fewer multiplies, a different rounding: F(2x2, 5x5)'s results
    differ from a direct sum by a few ulps more, and an infinite input can give NaN where a direct
    sum gives inf). False keeps the automatic choice (conv2d_algo) on direct or GEMM kernels, e.g.
    for results that must be exact on small integers; an algorithm forced with set_conv_algo
    still runs.
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be True or False, got {enabled!r}")
    _C.set_winograd(enabled)


def _set_debug_poison(on: bool) -> None:
    """Test hook: kernels fill outputs and workspaces with NaN before running."""
    _C.set_debug_poison(bool(on))


def env_settings() -> list:
    """Every FASTCONV_* environment variable: a dict per variable with its name, type, accepted
    values, default, who reads it and when, how to change it at run time, and its meaning."""
    return [dict(row) for row in _C.env_settings()]


def env_value(name: str):
    """The parsed value of one FASTCONV_* variable (env_settings() lists them), None where unset;
    ValueError naming the variable for a bad value, the same rule as the native readers."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str naming a FASTCONV_* variable, got {name!r}")
    return _C.env_value(name)


def info() -> dict:
    """Version, CPU kernel path, thread count, Winograd switch, forced conv algorithms, CUDA
    status, and the FASTCONV_* environment variables ("environment": name -> value, None where
    unset; env_settings() describes them)."""
    out = {
        "version": __version__,
        "cpu_isa": get_cpu_isa(),
        "cpu_isas": cpu_isas(),
        "num_threads": get_num_threads(),
        "output_cache_mb": get_output_cache_mb(),
        "winograd": get_winograd(),
        "conv_algo": {p: get_conv_algo(p) for p in ("fwd", "bwd_data", "bwd_weights")},
        "cuda_built": bool(_C.cuda_built),
        "cuda_device": None,
        "environment": {row["name"]: _os.environ.get(row["name"]) for row in _C.env_settings()},
    }
    if out["cuda_built"]:
        try:
            from . import _cuda_ops

            out["cuda_device"] = _cuda_ops.device_name()
        except Exception as exc:  # noqa: BLE001 - report why no GPU is usable
            out["cuda_device"] = f"unavailable ({exc})"
    return out


from . import datasets, distributed, models, nn  # noqa: E402  (the layer API builds on the ops above)

# The FASTCONV_* variables the library reads (one table, cpp/config.cpp; env_settings()), parsed
# by the same native parser as the C++ readers: a bad value is a ValueError naming the variable,
# here at import, not a silent guess later.


def _apply_environment():
    for row in _C.env_settings():
        if row["read_by"].startswith("library"):
            _C.env_value(row["name"])
    if _C.env_value("FASTCONV_CPU_ISA") is not None:
        isa = _C.env_value("FASTCONV_CPU_ISA")
        if isa not in cpu_isas():
            raise ValueError(
                f"FASTCONV_CPU_ISA must name a CPU path this CPU and build support "
                f"({', '.join(cpu_isas())}), got {isa!r}"
            )
        set_cpu_isa(isa)
    if _C.env_value("FASTCONV_NUM_THREADS") is not None:
        set_num_threads(_C.env_value("FASTCONV_NUM_THREADS"))
    elif distributed.launched_size() > 1:  # one of several MPI ranks: cores / ranks on this node
        set_num_threads(distributed.default_num_threads())
    if _C.env_value("FASTCONV_OUTPUT_CACHE_MB") is not None:
        set_output_cache_mb(_C.env_value("FASTCONV_OUTPUT_CACHE_MB"))


def _run_as_command():
    """True while `python -m fastconv ...` or the `fastconv` script imports the package."""
    argv = _sys.argv or [""]
    return argv[0] == "-m" or _os.path.basename(argv[0]) == "fastconv"


try:
    _apply_environment()
except ValueError as _exc:
    if not _run_as_command():
        raise
    # A command line gets the one-line message and exit status 2 (a bad argument), no traceback.
    _sys.stderr.write(f"fastconv: {_exc}\n")
    raise SystemExit(2) from None
