"""The collectives the trainers need in a torchrun (data-parallel) run.

The engine averages the optimizer's gradients over ranks by itself; what a method adds on top
(negatives and BatchNorm statistics of the global batch, gradients it combines before the
optimizer sees them) lives here. Only ``torch.distributed`` is used, never ``dassl.utils``
(upstream Dassl, which the trainer files must also run on, has no distributed helpers).
Every function is the identity in a single process.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward returns this rank's slice of the summed gradient."""

    @staticmethod
    def forward(ctx, tensor):
        gathered = [torch.zeros_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, tensor.contiguous())
        return tuple(gathered)

    @staticmethod
    def backward(ctx, *grads):
        grad = torch.stack(grads)
        dist.all_reduce(grad)
        return grad[dist.get_rank()]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` [B, ...] from every rank → [W·B, ...], differentiable (W = 1: itself).

    Every rank must pass the same B. In backward each rank receives the sum over ranks of the
    gradients w.r.t. its own rows (every rank's loss used them).
    """
    if world()[1] == 1:
        return tensor
    return torch.cat(_GatherWithGrad.apply(tensor))


@torch.no_grad()
def all_reduce_mean_(tensors: Iterable[torch.Tensor]) -> None:
    """Overwrite each tensor with its mean over the ranks (e.g. gradients a method combines itself
    before the optimizer step, which the engine's own averaging comes too late for)."""
    _, world_size = world()
    if world_size == 1:
        return
    for tensor in tensors:
        dist.all_reduce(tensor)  # sum
        tensor /= world_size
