"""Running averages for losses, timings and other scalars."""

from __future__ import annotations

from collections import defaultdict
from typing import Dict, Optional, Union

import torch

__all__ = ["AverageMeter", "MetricMeter"]

Number = Union[int, float, torch.Tensor]


def _as_python_number(value: Number) -> float:
    return value.item() if isinstance(value, torch.Tensor) else value


class AverageMeter:
    """Latest value plus running average (arithmetic, or exponential with ``ema=True``)."""

    def __init__(self, ema: bool = False):
        self.ema = ema
        self.reset()

    def reset(self) -> None:
        self.val = 0
        self.avg = 0
        self.sum = 0
        self.count = 0

    def update(self, val: Number, n: int = 1) -> None:
        val = _as_python_number(val)
        self.val = val
        self.sum += val * n
        self.count += n
        if self.ema:
            self.avg = self.avg * 0.9 + self.val * 0.1
        else:
            self.avg = self.sum / self.count


class MetricMeter:
    """A named collection of :class:`AverageMeter`, rendered as ``name val (avg)`` pairs.

    Example::

        losses = MetricMeter()
        losses.update({"loss": 1.0, "acc": 50.0})
        str(losses)  # 'loss 1.0000 (1.0000) acc 50.0000 (50.0000)'
    """

    def __init__(self, delimiter: str = " "):
        self.meters: Dict[str, AverageMeter] = defaultdict(AverageMeter)
        self.delimiter = delimiter

    def update(self, input_dict: Optional[Dict[str, Number]]) -> None:
        if input_dict is None:
            return
        if not isinstance(input_dict, dict):
            raise TypeError("Input to MetricMeter.update() must be a dictionary")
        for name, value in input_dict.items():
            self.meters[name].update(_as_python_number(value))

    def __str__(self) -> str:
        return self.delimiter.join(f"{name} {meter.val:.4f} ({meter.avg:.4f})" for name, meter in self.meters.items())
