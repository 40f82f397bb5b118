"""fastconv.torch.convert: switch a PyTorch model's Conv2d / MaxPool2d (and, asked, Dropout)
modules to fastconv's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from torch import nn

from fastconv.torch.modules import Conv2d, Conv2dReLUMaxPool2d, Dropout, MaxPool2d

__all__ = ["convert", "ConversionReport"]


@dataclass
class ConversionReport:
    """What convert() did: module names (as in model.named_modules()) with a note each."""

    converted: List[Tuple[str, str]] = field(default_factory=list)
    fused: List[Tuple[str, str]] = field(default_factory=list)
    left: List[Tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"fastconv.torch.convert: {len(self.converted)} converted, {len(self.fused)} fused, "
            f"{len(self.left)} left to PyTorch"
        ]
        for title, rows in (("fused", self.fused), ("left", self.left)):
            lines += [f"  {title}: {name or '<root>'}: {note}" for name, note in rows]
        return "\n".join(lines)


def _conv_reason(m: nn.Module) -> Optional[str]:
    """Why a Conv2d stays PyTorch's, or None when fastconv can run it."""
    if type(m) not in (nn.Conv2d, Conv2d):
        return f"{type(m).__name__} is not torch.nn.Conv2d itself (a subclass may override forward)"
    if m.padding_mode != "zeros":
        return f"padding_mode={m.padding_mode!r} (fastconv pads with zeros only)"
    return None


def _pool_reason(m: nn.Module) -> Optional[str]:
    if type(m) not in (nn.MaxPool2d, MaxPool2d):
        return f"{type(m).__name__} is not torch.nn.MaxPool2d itself"
    return None


def _is_fusable_pool(m: nn.Module) -> bool:
    return (
        _pool_reason(m) is None
        and not m.ceil_mode
        and m.dilation in (1, (1, 1))
        and m.kernel_size in (2, (2, 2))
        and m.stride in (2, (2, 2), None)
        and m.padding in (0, (0, 0))
        and not m.return_indices
    )


def _fuse_sequential(seq: nn.Sequential, prefix: str, report: ConversionReport) -> None:
    names = list(seq._modules)
    i = 0
    while i + 2 < len(names):
        conv, relu, pool = (seq._modules[n] for n in names[i : i + 3])
        if (
            _conv_reason(conv) is None
            and type(relu) is nn.ReLU
            and _is_fusable_pool(pool)
            and type(conv) is not Conv2dReLUMaxPool2d
        ):
            conv.__class__ = Conv2dReLUMaxPool2d
            seq._modules[names[i + 1]] = nn.Identity()
            seq._modules[names[i + 2]] = nn.Identity()
            report.fused.append(
                (
                    prefix + names[i],
                    f"Conv2d -> ReLU ({names[i + 1]}) -> MaxPool2d(2) ({names[i + 2]})",
                )
            )
            i += 3
        else:
            i += 1


def convert(model: nn.Module, *, fuse: bool = True, dropout: bool = True, report: bool = False):
    """Switch `model`'s supported modules to fastconv's, in place, and return the model.

    Every torch.nn.Conv2d with padding_mode='zeros' becomes fastconv.torch.Conv2d and every
    torch.nn.MaxPool2d becomes fastconv.torch.MaxPool2d, by changing
    the module's class: its parameters (the same Parameter objects, so an optimizer built before
    still holds them), buffers, hooks and state_dict names stay as they were. With fuse=True, an
    nn.Sequential's Conv2d -> ReLU -> MaxPool2d(2, 2) runs become one Conv2dReLUMaxPool2d (the
    conv module, keeping its name) followed by two nn.Identity. Other convolution and pooling
    modules (Conv1d, ConvTranspose2d, AvgPool2d, subclasses, ...) are left to
    PyTorch. Each converted module still falls back to PyTorch's op for an input fastconv cannot
    take (see fastconv.torch.functional). Convert before wrapping the model in
    DistributedDataParallel or torch.compile.

    dropout=True (the default) also switches every torch.nn.Dropout (the class itself) to
    fastconv.torch.Dropout: the same distribution and scaling on fastconv's kernel (about a fifth
    of a stock keras_cnn step is PyTorch's bernoulli_), with fastconv's random masks rather than
    PyTorch's. They are seeded from PyTorch's generator, so torch.manual_seed still makes runs
    repeatable; a training run's numbers differ from stock PyTorch's as with any other seed.
    dropout=False keeps PyTorch's dropout and its masks.

    With report=True returns (model, ConversionReport) naming what was converted, fused and left.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    rep = ConversionReport()
    if fuse:
        for name, m in list(model.named_modules()):
            if isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward:
                _fuse_sequential(m, f"{name}." if name else "", rep)
    fused = {name for name, _ in rep.fused}
    for name, m in model.named_modules():
        kind = type(m).__name__
        if isinstance(m, nn.Conv2d) or "Conv" in kind:
            if name in fused:
                continue
            reason = _conv_reason(m) if isinstance(m, nn.Conv2d) else f"{kind} is not Conv2d"
            if reason is None:
                m.__class__ = Conv2d
                rep.converted.append((name, "Conv2d"))
            else:
                rep.left.append((name, reason))
        elif isinstance(m, nn.MaxPool2d) or "Pool" in kind:
            reason = _pool_reason(m) if isinstance(m, nn.MaxPool2d) else f"{kind} is not MaxPool2d"
            if reason is None:
                m.__class__ = MaxPool2d
                rep.converted.append((name, "MaxPool2d"))
            else:
                rep.left.append((name, reason))
        elif dropout and type(m) in (nn.Dropout, Dropout):
            m.__class__ = Dropout
            rep.converted.append((name, "Dropout"))
    return (model, rep) if report else model
