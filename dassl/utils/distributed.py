"""Thin helpers around ``torch.distributed`` for torchrun-launched data-parallel training.

Every function is a cheap no-op in a single process (no process group), so engine code calls
them unconditionally and single-process behaviour stays exactly upstream Dassl's. Trainer files
do not import this module (upstream Dassl has none); their collectives are in
``trainers/distributed.py``.
"""

from __future__ import annotations

import os
from typing import Iterable, List

import torch
import torch.distributed as dist
import torch.nn as nn

__all__ = [
    "init_distributed_from_env",
    "is_distributed",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "barrier",
    "shutdown_distributed",
    "all_gather_tensor",
    "all_reduce_mean_",
    "broadcast_module_",
]


def init_distributed_from_env() -> bool:
    """Create the default process group from torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``.

    Uses NCCL when CUDA is available (and pins this process to ``cuda:LOCAL_RANK``), otherwise
    gloo. Returns True if a process group exists afterwards; without ``WORLD_SIZE`` or with a
    world size of 1 nothing is done and False is returned.
    """
    if is_distributed():
        return True
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return False
    for var in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise RuntimeError(
                f"WORLD_SIZE={world_size} but {var} is not set; launch with torchrun "
                "(e.g. `torchrun --nproc_per_node=2 train.py ...`)"
            )
    rank = int(os.environ["RANK"])
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return True


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shutdown_distributed() -> None:
    """Leave the process group once every rank is done. A gloo group left to interpreter exit can
    abort its process ("terminate called without an active exception") while peers still talk."""
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()


def _collective_device(tensor: torch.Tensor) -> torch.device:
    """NCCL only moves CUDA tensors; gloo needs CPU ones."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@torch.no_grad()
def all_gather_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0 (rank order), without autograd.

    Ranks may hold different numbers of rows (e.g. the last, shorter test batch): each rank pads
    to the largest size, gathers, and the padding is cut off again.
    """
    if not is_distributed():
        return tensor
    device = _collective_device(tensor)
    local = tensor.detach().to(device)
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(get_world_size())]
    dist.all_gather(sizes, torch.tensor([local.shape[0]], dtype=torch.long, device=device))
    sizes = [int(s.item()) for s in sizes]
    max_size = max(sizes)
    if local.shape[0] < max_size:
        pad = local.new_zeros((max_size - local.shape[0], *local.shape[1:]))
        local = torch.cat([local, pad], dim=0)
    gathered = [torch.empty_like(local) for _ in sizes]
    dist.all_gather(gathered, local)
    return torch.cat([g[:n] for g, n in zip(gathered, sizes)], dim=0).to(tensor.device)


@torch.no_grad()
def all_reduce_mean_(tensors: Iterable[torch.Tensor]) -> None:
    """Average each tensor over all ranks, in place."""
    if not is_distributed():
        return
    world_size = get_world_size()
    for tensor in tensors:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(world_size)


@torch.no_grad()
def broadcast_module_(module: nn.Module, src: int = 0) -> None:
    """Copy ``module``'s parameters and buffers from rank ``src`` to every other rank, in place."""
    if not is_distributed():
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=src)


def gather_python_objects(obj) -> List:
    """``all_gather_object`` wrapper (list with one entry per rank; ``[obj]`` when single-process)."""
    if not is_distributed():
        return [obj]
    out: List = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out
