"""Drop-in torch.nn modules on fastconv's kernels.

Conv2d and MaxPool2d subclass PyTorch's own, so the constructor, parameters, state_dict names,
initialisation, repr and padding="same" are PyTorch's; only the computation changes, and it falls
back to PyTorch's op for any call fastconv does not support (fastconv.torch.functional).
Conv2dReLUMaxPool2d is a Conv2d that also applies ReLU and a 2x2 max-pool in one fastconv pass:
fastconv.torch.convert puts it where an nn.Sequential runs Conv2d -> ReLU -> MaxPool2d(2).
Dropout (what convert puts in each nn.Dropout's place unless dropout=False) is torch.nn.Dropout on
fastconv's dropout kernel, with fastconv's random stream instead of PyTorch's.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from fastconv.torch import functional as fF

__all__ = ["Conv2d", "MaxPool2d", "Conv2dReLUMaxPool2d", "Dropout"]


class Conv2d(nn.Conv2d):
    """torch.nn.Conv2d computed by fastconv (PyTorch's op for padding_mode other than 'zeros'
    and for the inputs fastconv.torch.functional.conv2d hands back to PyTorch)."""

    def _conv_forward(self, input, weight, bias):
        if self.padding_mode != "zeros":
            return super()._conv_forward(input, weight, bias)
        return fF.conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class MaxPool2d(nn.MaxPool2d):
    """torch.nn.MaxPool2d computed by fastconv, dilation and ceil_mode included (PyTorch's op for
    an input fastconv.torch.functional.max_pool2d hands back to PyTorch)."""

    def forward(self, input):
        return fF.max_pool2d(
            input, self.kernel_size, self.stride, self.padding, self.dilation,
            ceil_mode=self.ceil_mode, return_indices=self.return_indices,
        )  # fmt: skip


class Conv2dReLUMaxPool2d(Conv2d):
    """Conv2d -> ReLU -> MaxPool2d(2, 2) in one module, with Conv2d's parameters and state_dict
    names (convert() replaces the ReLU and the pool by nn.Identity beside it). Falls back to the
    three PyTorch ops where fastconv cannot run the call (e.g. a conv output smaller than 2x2)."""

    def forward(self, input):
        if self.padding_mode != "zeros":
            return F.max_pool2d(F.relu(super()._conv_forward(input, self.weight, self.bias)), 2)
        return fF.conv2d_relu_max_pool2d(
            input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )

    def extra_repr(self) -> str:
        return super().extra_repr() + ", then ReLU and MaxPool2d(2, 2) (fused)"


class Dropout(nn.Dropout):
    """torch.nn.Dropout on fastconv's dropout kernel (fastconv.torch.functional.dropout): the same
    distribution and scaling, fastconv's random masks (seeded from PyTorch's generator)."""

    def forward(self, input):
        return fF.dropout(input, self.p, self.training, self.inplace)
