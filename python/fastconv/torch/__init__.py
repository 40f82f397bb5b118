"""fastconv as a PyTorch backend (the optional extra ``pip install 'fastconv[torch]'``).

    import fastconv.torch
    model = fastconv.torch.convert(model)      # nn.Conv2d / nn.MaxPool2d -> fastconv's, in place

- torch.ops.fastconv.*: the kernels as PyTorch operators (CPU; CUDA on fastconv's CUDA build),
  with fake kernels (torch.compile, FakeTensor) and autograd.
- fastconv.torch.functional: conv2d / max_pool2d / conv2d_relu_max_pool2d with
  torch.nn.functional's signatures, falling back to PyTorch's ops where fastconv cannot run a call.
- Conv2d, MaxPool2d, Conv2dReLUMaxPool2d: torch.nn modules on those; convert() installs them.

Threads: when FASTCONV_NUM_THREADS is unset, importing this module sets fastconv's thread count
to torch.get_num_threads() (which follows OMP_NUM_THREADS, and torchrun sets OMP_NUM_THREADS=1
per process), so N ranks on N cores do not run N x N threads. Call fastconv.set_num_threads to
change it afterwards. Importing it also runs fastconv's parallel work on PyTorch's own OpenMP
threads (share_threads_with_torch(), _threads.py) rather than on a second pool of threads beside
them; share_threads_with_torch(False) goes back to fastconv's pool.

docs/TORCH.md has the details, the DDP launch line and the measured speed.
"""

from __future__ import annotations

import torch

import fastconv
from fastconv.torch import _cuda_kernels, _ops, functional  # noqa: F401  (registers the kernels)
from fastconv.torch._threads import share_threads_with_torch, threads_shared_with_torch
from fastconv.torch.convert import ConversionReport, convert
from fastconv.torch.modules import Conv2d, Conv2dReLUMaxPool2d, Dropout, MaxPool2d

__all__ = [
    "Conv2d",
    "Conv2dReLUMaxPool2d",
    "ConversionReport",
    "Dropout",
    "MaxPool2d",
    "convert",
    "functional",
    "ops",
    "share_threads_with_torch",
    "threads_shared_with_torch",
]

ops = torch.ops.fastconv

if fastconv.env_value("FASTCONV_NUM_THREADS") is None:
    fastconv.set_num_threads(max(1, torch.get_num_threads()))

# One set of threads, not two taking cores from each other: PyTorch's OpenMP workers spin for
# milliseconds after each of its ops, so a pool of fastconv's own beside them lost up to half its
# speed in a training step (docs/TORCH.md, "Threads").
share_threads_with_torch(True)
