"""bench/_util.cupy_stream_of: how bench/conv_cuda.py hands torch's stream to CuPy (so fastconv's
launches queue behind cuDNN's). CuPy 14 deprecates cupy.cuda.ExternalStream (a DeprecationWarning
on every construction) in favour of Stream.from_external and the CUDA stream protocol; checked
here with stand-ins for both libraries (no GPU)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from _util import cupy_stream_of  # noqa: E402


class _TorchStream:
    cuda_stream = 0x1234

    def __cuda_stream__(self):
        return (0, self.cuda_stream)


def _cupy(with_from_external):
    made = []

    class ExternalStream:
        def __init__(self, ptr, device_id=-1):
            import warnings

            warnings.warn("ExternalStream is deprecated", DeprecationWarning, stacklevel=2)
            made.append(("external", ptr))

    class Stream:
        pass

    if with_from_external:
        Stream.from_external = classmethod(
            lambda cls, obj: made.append(("from_external", obj.__cuda_stream__()[1])) or cls()
        )
    cuda = types.SimpleNamespace(Stream=Stream, ExternalStream=ExternalStream)
    return types.SimpleNamespace(cuda=cuda), made


def test_the_stream_protocol_where_both_sides_have_it():
    cp, made = _cupy(True)
    cupy_stream_of(_TorchStream(), cp)
    assert made == [("from_external", 0x1234)]


@pytest.mark.parametrize("cupy_new", [True, False])
def test_external_stream_otherwise_without_the_deprecation_warning(cupy_new):
    cp, made = _cupy(cupy_new)
    old_torch = types.SimpleNamespace(cuda_stream=0x99)  # no __cuda_stream__
    cupy_stream_of(old_torch, cp)  # filterwarnings=error: a warning would fail this test
    assert made == [("external", 0x99)]
