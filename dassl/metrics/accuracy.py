from __future__ import annotations

from typing import List, Sequence

import torch

__all__ = ["compute_accuracy"]


def compute_accuracy(output, target: torch.Tensor, topk: Sequence[int] = (1,)) -> List[torch.Tensor]:
    """Top-k accuracy in percent, one 1-element tensor per ``k``.

    ``output`` is ``[B, C]`` scores (or a tuple/list whose first element is); ``target`` is ``[B]``.
    """
    if isinstance(output, (tuple, list)):
        output = output[0]
    maxk = max(topk)
    batch_size = target.size(0)
    _, pred = output.topk(maxk, 1, True, True)
    correct = pred.t().eq(target.view(1, -1).expand_as(pred.t()))
    return [correct[:k].reshape(-1).float().sum(0, keepdim=True).mul_(100.0 / batch_size) for k in topk]
