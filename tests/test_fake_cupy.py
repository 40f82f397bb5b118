"""The CuPy stand-ins (tests/fake_cupy.py, and tests/simulated_gpu.py, which takes its cuda names
from it) hold to what CuPy 14.2 does where fastconv's code depends on it, so a test double never
accepts what CuPy would refuse. Always run: the behaviours read off CuPy 14.2.0's sources
(cupy/cuda/stream.pyx, cupy/_core/core.pyx). Where CuPy is importable (it needs no GPU to import:
the GPU image has it), the names and argument lists are compared with the real module too.
"""

from __future__ import annotations

import inspect

import fake_cupy as fcp
import numpy as np
import pytest
import simulated_gpu


def test_stream_arguments_are_cupys_in_cupys_order():
    assert fcp.cuda.Stream(True).ptr == 0  # Stream(null=False, non_blocking=False, ...)
    s = fcp.cuda.Stream(non_blocking=True)
    assert s.ptr not in (0, 1, 2)
    assert s.non_blocking
    assert fcp.cuda.Stream(ptds=True).ptr == 2  # cudaStreamPerThread


def test_capture_is_refused_on_the_legacy_stream_and_pairs():
    with pytest.raises(RuntimeError, match="cannot capture on the default"):
        fcp.cuda.Stream(null=True).begin_capture()
    s = fcp.cuda.Stream(non_blocking=True)
    with pytest.raises(RuntimeError, match="not capturing"):
        s.end_capture()
    s.begin_capture()
    assert s.is_capturing()
    with pytest.raises(RuntimeError, match="already capturing"):
        s.begin_capture()
    graph = s.end_capture()
    assert not s.is_capturing()
    ran = []
    graph.replay = lambda: ran.append(1)
    graph.launch(stream=s)
    graph.upload()
    assert ran == [1]
    assert graph.launches == 1


def test_using_allocator_routes_alloc_to_the_pool():
    fcp.reset()
    pool = fcp.cuda.MemoryPool()
    with fcp.cuda.using_allocator(pool.malloc):
        mp = fcp.cuda.alloc(64)
    assert pool.allocated == 64
    assert mp.ptr
    fcp.cuda.alloc(32)
    assert pool.allocated == 64
    pool.free_all_blocks()


def _device_arrays():
    yield fcp.ndarray((3,), np.float32)
    sim = simulated_gpu._fake_cupy()
    yield sim.empty(3, dtype=np.float32)


@pytest.mark.parametrize("make", [0, 1], ids=["fake_cupy", "simulated_gpu"])
def test_set_checks_as_cupy_does(make):
    """CuPy's ndarray.set neither casts nor broadcasts (GraphTrainer.begin_epoch relies on the
    tables' dtypes matching)."""
    a = list(_device_arrays())[make]
    a.set(np.arange(3, dtype=np.float32))
    with pytest.raises(TypeError, match="float64 array cannot be set to float32 array"):
        a.set(np.arange(3, dtype=np.float64))
    with pytest.raises(ValueError, match="Shape mismatch"):
        a.set(np.zeros(1, np.float32))
    with pytest.raises(TypeError, match="Only numpy.ndarray"):
        a.set([0.0, 1.0, 2.0])


def test_ndarray_refuses_what_it_cannot_honour():
    with pytest.raises(NotImplementedError):
        fcp.ndarray((2,), np.float32, memptr=fcp.cuda.alloc(8))
    with pytest.raises(NotImplementedError):
        fcp.ndarray((2, 2), np.float32, order="F")


# ---- against the real module, where it imports ---------------------------------------------------

# Every CuPy name fastconv's code reaches (python/fastconv/_cuda_ops.py, nn/cuda.py,
# nn/cuda_graph.py), as (object path, the parameters fastconv passes by name).
USED = [
    ("ndarray", ()),
    ("cuda.Device", ()),
    ("cuda.Stream", ("null", "non_blocking")),
    ("cuda.Stream.begin_capture", ("mode",)),
    ("cuda.Stream.end_capture", ()),
    ("cuda.Stream.is_capturing", ()),
    ("cuda.Stream.synchronize", ()),
    ("cuda.Graph.launch", ("stream",)),
    ("cuda.Graph.upload", ("stream",)),
    ("cuda.MemoryPool", ()),
    ("cuda.MemoryPool.malloc", ()),
    ("cuda.MemoryPool.free_all_blocks", ()),
    ("cuda.using_allocator", ("allocator",)),
    ("cuda.get_current_stream", ()),
    ("cuda.alloc", ()),
    ("cuda.runtime.getDevice", ()),
    ("cuda.runtime.getDeviceCount", ()),
    ("cuda.MemoryPointer", ()),
    ("ndarray.set", ("arr", "stream")),
    ("ndarray.get", ("stream",)),
]


def _resolve(module, path):
    obj = module
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _parameters(obj):
    """Parameter names from the signature, or from the first docstring line Cython writes
    ("Graph.launch(self, stream=None)") where inspect cannot read one."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        return list(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        head = (target.__doc__ or "").split("\n", 1)[0]
        inside = head[head.find("(") + 1 : head.rfind(")")]
        return [p.split("=")[0].split()[-1].lstrip("*") for p in inside.split(",") if p.strip()]


@pytest.mark.parametrize(("path", "names"), USED, ids=[p for p, _ in USED])
def test_real_cupy_has_what_fastconv_uses(path, names):
    cupy = pytest.importorskip("cupy")
    obj = _resolve(cupy, path)
    if names:
        params = _parameters(obj)
        missing = [n for n in names if n not in params]
        assert not missing, f"cupy.{path}: no parameter {missing} in {params}"


def test_real_cupy_facts_the_fakes_copy():
    cupy = pytest.importorskip("cupy")
    params = _parameters(cupy.cuda.Stream)
    assert params[params.index("null") :][:2] == ["null", "non_blocking"]  # the fake's order
    assert "device_id" in dir(cupy.cuda.MemoryPointer)
    src = inspect.getdoc(cupy.cuda.Stream.begin_capture) or ""
    assert "streamCaptureModeRelaxed" in src  # the mode that lets the pool cudaMalloc
