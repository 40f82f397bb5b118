"""Builds and loads the CUDA kernels for the CPU emulator (cuda/emu): test helper, not a test.

`load()` compiles cuda/*.cu (the production kernel sources, as C++), the emulator (cuda/emu) and
the few host files they need with the system C++ compiler into build/cuda_emu/<hash>/ (reused while
no source, flag or compiler changes), loads it with ctypes and returns an `Emulator`, or raises
`Unavailable` (no compiler, not Linux) with the reason. The Emulator's methods mirror the CUDA
entries: NumPy arrays in, NumPy arrays out. Each call puts inputs and outputs in buffers with NaN
guard bands around them, poisons the outputs, and checks afterwards that no guard was written: a
read past an input's end turns into NaN in the result, a write past an output's end fails.

    python tests/cuda_emu.py      # build (or find) the library and print its path
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SOURCES = (
    "cuda/emu/fiber.cpp",
    "cuda/emu/simt.cpp",
    "cuda/emu/runtime.cpp",
    "cuda/emu/run_kernels.cpp",
    "cuda/emu/selftest.cu",
    "cuda/conv2d.cu",
    "cuda/maxpool2d.cu",
    "cuda/device.cu",
    "cuda/train_step.cu",
    "cpp/config.cpp",
    "cpp/params.cpp",
    "cpp/debug.cpp",
)
HEADER_DIRS = ("cuda", "cuda/emu", "cpp/include/fastconv")
# -O1: fast enough to run, quick to build; never -flto, whose whole-program view could keep a
# __shared__ value in a register across a barrier that another fiber's write should invalidate.
FLAGS = ("-std=c++17", "-O1", "-g0", "-fPIC", "-pthread", "-DFASTCONV_CUDA_EMU")
# Per-file flags that mirror cmake/cuda.cmake's (--fmad=false: every operation rounds once).
FILE_FLAGS = {"cuda/train_step.cu": ("-ffp-contract=off",)}
INCLUDES = ("-Icuda/emu", "-Icuda", "-Icpp/include")  # cuda/emu first: its cuda_runtime.h

PASSES = {"fwd": 0, "bwd_data": 1, "bwd_weights": 2}
ALGOS = {None: 0, "direct": 1, "tiled": 2, "tiled128": 3, "tf32": 4}
SCHEDULES = {"forward": 0, "reverse": 1, "shuffle": 2}
GUARD = 1024  # elements of NaN guard before and after every buffer
GUARD_BITS = np.uint32(0x7FC0DEAD)  # a NaN no kernel produces: a guard write shows


class Unavailable(RuntimeError):
    """The emulator cannot be built here; the message says why."""


def compiler():
    """The C++ compiler to use: $CXX (may carry flags or a launcher), then c++, g++, clang++."""
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name.split()[0]):
            return name.split()
    return None


# What can be built: the ctypes library, and the sanitizer builds of cuda/emu/check_kernels.cpp
# over the same sources (ThreadSanitizer: race_annotations.h; AddressSanitizer: fiber.cpp).
TARGETS = {
    "library": {
        "file": "libfastconv_cuda_emu.so",
        "sources": SOURCES,
        "flags": (),
        "link": ("-shared",),
    },
    "racecheck": {
        "file": "racecheck",
        "sources": (*SOURCES, "cuda/emu/check_kernels.cpp"),
        "flags": ("-fsanitize=thread", "-g1"),  # -g1: line tables for the reports, a quicker build
        "link": ("-fsanitize=thread",),
    },
    "memcheck": {
        "file": "memcheck",
        "sources": (*SOURCES, "cuda/emu/check_kernels.cpp"),
        # -O0 (after FLAGS' -O1): half the build time, and AddressSanitizer needs no optimizer.
        "flags": ("-fsanitize=address", "-fno-omit-frame-pointer", "-g1", "-O0"),
        "link": ("-fsanitize=address",),
    },
}


def build(out_root=ROOT / "build" / "cuda_emu", target="library"):
    """Path of the emulator library (or of another TARGETS entry), compiling it first when no
    up-to-date copy exists."""
    if not sys.platform.startswith("linux"):
        raise Unavailable(
            f"the CUDA emulator needs Linux (ucontext, dl_iterate_phdr), not {sys.platform}"
        )
    cxx = compiler()
    if cxx is None:
        raise Unavailable("no C++ compiler found (set CXX, or install g++)")
    spec = TARGETS[target]
    version = subprocess.run([*cxx, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("\0".join([*cxx, version, *FLAGS, repr(FILE_FLAGS), repr(spec)]).encode())
    files = list(spec["sources"]) + sorted(
        str(p.relative_to(ROOT)) for d in HEADER_DIRS for p in (ROOT / d).glob("*.*h")
    )
    for f in files:
        key.update(f.encode() + b"\0" + (ROOT / f).read_bytes())
    out = Path(out_root) / key.hexdigest()[:16]
    product = out / spec["file"]
    if product.exists():
        return product
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only checkout: build in the temporary directory instead
        out = Path(tempfile.gettempdir()) / "fastconv_cuda_emu" / out.name
        product = out / spec["file"]
        if product.exists():
            return product
        out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out))
    try:
        _compile_and_link(cxx, work, product, spec)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return product


def _compile_and_link(cxx, work, product, spec):
    def compile_one(src):
        obj = work / (src.replace("/", "_") + ".o")
        lang = ["-x", "c++"] if src.endswith(".cu") else []
        flags = [*FLAGS, *spec["flags"], *FILE_FLAGS.get(src, ())]
        cmd = [*cxx, *flags, *INCLUDES, *lang, "-c", src, "-o", str(obj)]
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"emulator build failed: {' '.join(cmd)}\n{r.stderr}")
        return str(obj)

    jobs = max(1, min(4, os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        objs = list(pool.map(compile_one, spec["sources"]))
    tmp = work / product.name
    cmd = [*cxx, *spec["link"], "-pthread", *objs, "-o", str(tmp), "-ldl"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"emulator link failed: {' '.join(cmd)}\n{r.stderr}")
    os.replace(tmp, product)  # atomic: a concurrent build sees the old state or the whole file


def sanitizer_reason(sanitizer, cxx=None):
    """None if the compiler builds and runs a -fsanitize=<sanitizer> program here, else why not."""
    cxx = cxx or compiler()
    if cxx is None:
        return "no C++ compiler found"
    with tempfile.TemporaryDirectory() as d:
        src, exe = Path(d) / "probe.cpp", Path(d) / "probe"
        src.write_text("int main() { return 0; }\n")
        flag = f"-fsanitize={sanitizer}"
        r = subprocess.run([*cxx, flag, str(src), "-o", str(exe)], capture_output=True, text=True)
        if r.returncode != 0:
            return f"{' '.join(cxx)} cannot build with {flag}: {r.stderr.strip()[-200:]}"
        r = subprocess.run([str(exe)], capture_output=True, text=True)
        if r.returncode != 0:
            return f"the {sanitizer} sanitizer does not start here: {r.stderr.strip()[-200:]}"
    return None


RUNTIME = ("cuda/emu/fiber.cpp", "cuda/emu/simt.cpp", "cuda/emu/runtime.cpp")


def build_program(source, out_dir):
    """Compiles a stand-alone CUDA program (e.g. cuda/dev/emu_vs_gpu.cu) against the emulator into
    out_dir and returns the executable's path (RuntimeError with the compiler's output if not)."""
    cxx = compiler()
    if cxx is None or not sys.platform.startswith("linux"):
        raise Unavailable("no C++ compiler found (set CXX, or install g++)")
    exe = Path(out_dir) / Path(source).stem
    cmd = [
        *cxx,
        *FLAGS,
        *INCLUDES,
        "-x",
        "c++",
        source,
        "-x",
        "none",
        *RUNTIME,
        "-o",
        str(exe),
        "-ldl",
    ]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"emulator build failed: {' '.join(cmd)}\n{r.stderr}")
    return exe


def _padding(padding):
    """The public API's padding (int, pair, 'same', 'valid') as (mode, pad_h, pad_w)."""
    if isinstance(padding, str):
        return {"valid": 1, "same": 2}[padding], 0, 0
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return 0, ph, pw


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


_P, _I, _I64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
_SIGNATURES = {
    "fc_emu_configure": [_I, ctypes.c_uint64, _I, _I, _I],
    "fc_emu_set_device": [_I],
    "fc_emu_set_conv_algo": [_I, _I],
    "fc_emu_stats": [_P],
    "fc_emu_take_launches": [_P, _I],
    "fc_emu_conv2d_out_shape": [_P, _P],
    "fc_emu_maxpool2d_out_shape": [_P, _P],
    "fc_emu_conv2d_fwd": [_P, _P, _P, _P, _P, _I],
    "fc_emu_conv2d_bwd_data": [_P, _P, _P, _P],
    "fc_emu_conv2d_bwd_weights_workspace": [_P, _P],
    "fc_emu_conv2d_bwd_weights": [_P, _P, _P, _P, _P, _P, _I64],
    "fc_emu_chosen_conv_algo": [_I, _P, _P],
    "fc_emu_maxpool2d_fwd": [_P, _P, _P, _P],
    "fc_emu_maxpool2d_bwd": [_P, _P, _P, _P, _I],
    "fc_emu_selftest": [_I, _P, _P, _I],
    "fc_emu_selftest_dynamic_shared": [_P, _P, _I, _I, _I, _I],
    "fc_emu_dropout_mask": [_P, _I64, ctypes.c_double, _P, _P],
    "fc_emu_adam_update": [
        _P,
        _P,
        _P,
        _P,
        _I64,
        _P,
        _P,
        ctypes.c_double,
        ctypes.c_double,
        ctypes.c_double,
    ],
}
SELFTESTS = {
    "sum_missing_barrier": 0,
    "read_unwritten_shared": 1,
    "divergent_barrier": 2,
    "warp_ops": 3,
    "shared_isolation": 4,
    "oversized_block": 5,
    "async_pipeline": 6,
    "async_pipeline_early_read": 7,
    "async_pipeline_early_refill": 11,
    "mma_tf32": 8,
    "vector_reverse4": 9,
    "trap_one_thread": 10,
}


class _Buffer:
    """A float32/int64 array inside a larger buffer whose ends are a NaN guard pattern."""

    def __init__(self, shape, dtype, data=None):
        n = int(np.prod(shape))
        self.whole = np.empty(n + 2 * GUARD, dtype)
        self.whole.view(np.uint32 if dtype == np.float32 else np.int64)[:] = (
            GUARD_BITS if dtype == np.float32 else -0x5EAD
        )
        self.array = self.whole[GUARD : GUARD + n].reshape(shape)
        if data is not None:
            self.array[...] = data
        elif dtype == np.float32:
            self.array[...] = np.nan  # poison: an element the kernel does not write stays NaN

    def ptr(self):
        return self.array.ctypes.data

    def check_guards(self, name):
        bits = self.whole.view(np.uint32 if self.whole.dtype == np.float32 else np.int64)
        expected = GUARD_BITS if self.whole.dtype == np.float32 else -0x5EAD
        for part, where in ((bits[:GUARD], "before"), (bits[-GUARD:], "after")):
            bad = np.flatnonzero(part != expected)
            assert bad.size == 0, (
                f"{name}: the kernel wrote {bad.size} element(s) {where} the buffer"
            )


class Emulator:
    """The CUDA entries on the CPU. Geometry arguments are the public API's (fastconv.conv2d)."""

    def __init__(self, path):
        self.path = Path(path)
        self.lib = ctypes.CDLL(str(path))
        for name, args in _SIGNATURES.items():
            getattr(self.lib, name).argtypes = args
        self.lib.fc_emu_last_error.restype = ctypes.c_char_p
        self.lib.fc_emu_selftest_error.restype = ctypes.c_char_p
        self.lib.fc_emu_set_debug_poison(1)
        self._names = None

    # ---- control

    def configure(
        self, schedule="reverse", seed=1, workers=1, poison_shared=True, eager_async_copies=False
    ):
        """Thread order between barriers, OS workers running blocks, shared-memory poisoning, and
        whether cp.async copies land when issued (else at their wait)."""
        self.lib.fc_emu_configure(
            SCHEDULES[schedule], seed, workers, int(poison_shared), int(eager_async_copies)
        )

    def set_device(self, device):
        """Emulated device 0 has an H100's 132 SMs, device 1 has 4 (split plans depend on it)."""
        self._check(self.lib.fc_emu_set_device(device))

    def set_conv_algo(self, pass_name, algo):
        self.lib.fc_emu_set_conv_algo(PASSES[pass_name], ALGOS[algo])

    def stats(self):
        out = (ctypes.c_uint64 * 6)()
        self.lib.fc_emu_stats(out)
        keys = ("launches", "blocks", "threads", "barriers", "warp_ops", "poisoned_blocks")
        return dict(zip(keys, (int(v) for v in out)))

    def reset_stats(self):
        self.lib.fc_emu_reset_stats()
        self.launches()

    def launches(self):
        """The launches since the last call: dicts with the kernel's name, grid and block."""
        out = (ctypes.c_int64 * (7 * 4096))()
        n = self.lib.fc_emu_take_launches(out, 4096)
        names = self._kernel_names()
        return [
            {
                "kernel": names.get(out[7 * i], f"<offset {out[7 * i]:#x}>"),
                "grid": tuple(out[7 * i + 1 : 7 * i + 4]),
                "block": tuple(out[7 * i + 4 : 7 * i + 7]),
            }
            for i in range(n)
        ]

    def _kernel_names(self):
        if self._names is None:
            nm = shutil.which("nm")
            self._names = {}
            if nm is not None:
                text = subprocess.run(
                    [nm, "-C", "--defined-only", str(self.path)], capture_output=True, text=True
                ).stdout
                for line in text.splitlines():
                    parts = line.split(" ", 2)
                    if len(parts) == 3 and parts[1] in "tTwW":  # W: template kernels
                        self._names[int(parts[0], 16)] = parts[2]
        return self._names

    def _check(self, rc):
        if rc == 1:
            raise ValueError(self.lib.fc_emu_last_error().decode())
        if rc != 0:
            raise RuntimeError(self.lib.fc_emu_last_error().decode())

    # ---- geometry

    @staticmethod
    def _conv_geo(x_shape, w_shape, stride, padding, dilation, groups):
        mode, ph, pw = _padding(padding)
        n, c, h, w = x_shape
        k, _, kh, kw = w_shape
        return np.array(
            [n, c, h, w, k, kh, kw, *_pair(stride), mode, ph, pw, *_pair(dilation), groups],
            np.int64,
        )

    @staticmethod
    def _pool_geo(x_shape, kernel_size, stride, padding, dilation, ceil_mode):
        mode, ph, pw = _padding(padding)
        stride = kernel_size if stride is None else stride
        return np.array(
            [
                *x_shape,
                *_pair(kernel_size),
                *_pair(stride),
                mode,
                ph,
                pw,
                *_pair(dilation),
                int(ceil_mode),
            ],
            np.int64,
        )

    # ---- entries

    def _call(self, fn, *args):
        self._check(fn(*args))

    def _out_shape(self, fn, geo):
        out = np.zeros(4, np.int64)
        self._call(fn, geo.ctypes.data, out.ctypes.data)
        return tuple(int(v) for v in out)

    def conv2d_fwd(self, x, w, b=None, stride=1, padding=0, dilation=1, groups=1, relu=False):
        """y = conv(x, w) + b (ReLU-clamped if relu) by conv2d_fwd__cuda."""
        geo = self._conv_geo(x.shape, w.shape, stride, padding, dilation, groups)
        xb, wb = _Buffer(x.shape, np.float32, x), _Buffer(w.shape, np.float32, w)
        bb = None if b is None else _Buffer(b.shape, np.float32, b)
        yb = _Buffer(self._out_shape(self.lib.fc_emu_conv2d_out_shape, geo), np.float32)
        self._call(
            self.lib.fc_emu_conv2d_fwd,
            yb.ptr(),
            xb.ptr(),
            wb.ptr(),
            None if bb is None else bb.ptr(),
            geo.ctypes.data,
            int(relu),
        )
        yb.check_guards("y")
        return yb.array.copy()

    def conv2d_bwd_data(self, dy, w, x_shape, stride=1, padding=0, dilation=1, groups=1):
        """dx by conv2d_bwd_data__cuda."""
        geo = self._conv_geo(x_shape, w.shape, stride, padding, dilation, groups)
        dyb, wb = _Buffer(dy.shape, np.float32, dy), _Buffer(w.shape, np.float32, w)
        dxb = _Buffer(x_shape, np.float32)
        self._call(self.lib.fc_emu_conv2d_bwd_data, dxb.ptr(), dyb.ptr(), wb.ptr(), geo.ctypes.data)
        dxb.check_guards("dx")
        return dxb.array.copy()

    def conv2d_bwd_weights(
        self, dy, x, w_shape, stride=1, padding=0, dilation=1, groups=1, bias=True
    ):
        """(dw, db) by conv2d_bwd_weights__cuda (db None without bias), with its workspace."""
        geo = self._conv_geo(x.shape, w_shape, stride, padding, dilation, groups)
        ws_bytes = np.zeros(1, np.int64)
        self._call(
            self.lib.fc_emu_conv2d_bwd_weights_workspace, geo.ctypes.data, ws_bytes.ctypes.data
        )
        dyb, xb = _Buffer(dy.shape, np.float32, dy), _Buffer(x.shape, np.float32, x)
        dwb = _Buffer(w_shape, np.float32)
        dbb = _Buffer((w_shape[0],), np.float32) if bias else None
        wsb = _Buffer((int(ws_bytes[0]) // 4,), np.float32)
        self._call(
            self.lib.fc_emu_conv2d_bwd_weights,
            dwb.ptr(),
            None if dbb is None else dbb.ptr(),
            dyb.ptr(),
            xb.ptr(),
            geo.ctypes.data,
            wsb.ptr(),
            int(ws_bytes[0]),
        )
        dwb.check_guards("dw")
        wsb.check_guards("workspace")
        if dbb is not None:
            dbb.check_guards("db")
        return dwb.array.copy(), None if dbb is None else dbb.array.copy()

    def chosen_conv_algo(
        self, pass_name, x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1
    ):
        """'direct' or 'tiled': the family the pass runs on this problem."""
        geo = self._conv_geo(x_shape, w_shape, stride, padding, dilation, groups)
        out = np.zeros(1, np.int32)
        self._call(
            self.lib.fc_emu_chosen_conv_algo, PASSES[pass_name], geo.ctypes.data, out.ctypes.data
        )
        return {1: "direct", 2: "tiled", 3: "tiled128", 4: "tf32"}[int(out[0])]

    def maxpool2d_fwd(self, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        """(y, indices) by maxpool2d_fwd__cuda."""
        geo = self._pool_geo(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
        shape = self._out_shape(self.lib.fc_emu_maxpool2d_out_shape, geo)
        xb, yb, ib = (
            _Buffer(x.shape, np.float32, x),
            _Buffer(shape, np.float32),
            _Buffer(shape, np.int64),
        )
        ib.array[...] = -1
        self._call(self.lib.fc_emu_maxpool2d_fwd, yb.ptr(), ib.ptr(), xb.ptr(), geo.ctypes.data)
        yb.check_guards("y")
        ib.check_guards("indices")
        return yb.array.copy(), ib.array.copy()

    def maxpool2d_bwd(
        self,
        dy,
        indices,
        x_shape,
        kernel_size,
        stride=None,
        padding=0,
        dilation=1,
        ceil_mode=False,
        gather=True,
    ):
        """dx by maxpool2d_bwd__cuda: the gather (forward geometry given) or the atomicAdd scatter."""
        geo = self._pool_geo(x_shape, kernel_size, stride, padding, dilation, ceil_mode)
        dyb, ib = _Buffer(dy.shape, np.float32, dy), _Buffer(indices.shape, np.int64, indices)
        dxb = _Buffer(x_shape, np.float32)
        self._call(
            self.lib.fc_emu_maxpool2d_bwd,
            dxb.ptr(),
            dyb.ptr(),
            ib.ptr(),
            geo.ctypes.data,
            int(gather),
        )
        dxb.check_guards("dx")
        return dxb.array.copy()

    def selftest_dynamic_shared(self, x, blocks, shared_bytes, raise_limit, n_written=256):
        """selftest.cu's reverse_dynamic_shared: each block's 256 floats of x reversed."""
        out = _Buffer((blocks * 256,), np.float32)
        xb = _Buffer(x.shape, np.float32, x)
        rc = self.lib.fc_emu_selftest_dynamic_shared(
            out.ptr(), xb.ptr(), blocks, shared_bytes, int(raise_limit), n_written
        )
        if rc != 0:
            raise RuntimeError(self.lib.fc_emu_selftest_error().decode())
        out.check_guards("reverse_dynamic_shared")
        return out.array.copy()

    def dropout_mask(self, n, keep, seeds, step):
        """dropout_mask__cuda: the mask (n floats) for seed seeds[step]."""
        seeds = np.ascontiguousarray(seeds, np.uint64)
        stepb = np.array([step], np.int32)
        mb = _Buffer((n,), np.float32)
        self._call(
            self.lib.fc_emu_dropout_mask, mb.ptr(), n, keep, seeds.ctypes.data, stepb.ctypes.data
        )
        mb.check_guards("mask")
        return mb.array.copy()

    def adam_update(self, p, m, v, g, lr_table, step, beta_1, beta_2, epsilon):
        """adam_update__cuda on copies of p, m, v; returns the new (p, m, v)."""
        bufs = [_Buffer(a.shape, np.float32, a) for a in (p, m, v, g)]
        lr = np.ascontiguousarray(lr_table, np.float32)
        stepb = np.array([step], np.int32)
        self._call(
            self.lib.fc_emu_adam_update,
            *(b.ptr() for b in bufs),
            p.size,
            lr.ctypes.data,
            stepb.ctypes.data,
            beta_1,
            beta_2,
            epsilon,
        )
        for b, name in zip(bufs, "pmvg"):
            b.check_guards(name)
        return tuple(b.array.copy() for b in bufs[:3])

    def selftest(self, name, x, out_per_thread=1, blocks=1):
        """Runs one of cuda/emu/selftest.cu's kernels on x; its output (NaN where not written)."""
        out = _Buffer((blocks * 256 * out_per_thread,), np.float32)
        xb = _Buffer(x.shape, np.float32, x)
        rc = self.lib.fc_emu_selftest(SELFTESTS[name], out.ptr(), xb.ptr(), blocks)
        if rc != 0:
            raise RuntimeError(self.lib.fc_emu_selftest_error().decode())
        out.check_guards(name)
        return out.array.copy()


def load():
    """An Emulator on the (built if needed) library; Unavailable with the reason if it cannot be."""
    return Emulator(build())


if __name__ == "__main__":
    print(build())
