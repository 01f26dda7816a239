"""Index samplers for the data loaders (``DATALOADER.*.SAMPLER``).

Upstream's batch-composing samplers (``RandomDomainSampler``, ``SeqDomainSampler``,
``RandomClassSampler``) serve its DA/DG trainers and are not reimplemented: the client configs use
``RandomSampler`` for training and ``SequentialSampler`` for evaluation.
``ShardedSequentialSampler`` is this project's addition for distributed evaluation.
"""

from __future__ import annotations

from typing import Iterator, Optional, Sequence

from torch.utils.data.sampler import RandomSampler, Sampler, SequentialSampler

__all__ = ["build_sampler", "ShardedSequentialSampler", "RandomSampler", "SequentialSampler"]


class ShardedSequentialSampler(Sampler):
    """Evaluation sharding: rank ``r`` of ``W`` gets indices ``r, r+W, r+2W, ...`` in order.

    Unlike ``DistributedSampler`` nothing is padded or dropped, so across ranks every item is
    visited exactly once and gathered metrics equal single-process ones. Shards differ in length
    by at most one (a rank may even get none when there are fewer items than ranks).
    """

    def __init__(self, data_source: Sequence, num_replicas: Optional[int] = None, rank: Optional[int] = None):
        if num_replicas is None or rank is None:
            from dassl.utils.distributed import get_rank, get_world_size

            num_replicas = get_world_size() if num_replicas is None else num_replicas
            rank = get_rank() if rank is None else rank
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"ShardedSequentialSampler: invalid rank {rank} for world size {num_replicas}")
        self.data_source = data_source
        self.num_replicas = num_replicas
        self.rank = rank

    def _indices(self) -> range:
        return range(self.rank, len(self.data_source), self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        return len(self._indices())


def build_sampler(
    sampler_type: str,
    cfg=None,
    data_source: Optional[Sequence] = None,
    batch_size: int = 32,
    n_domain: int = 0,
    n_ins: int = 16,
) -> Sampler:
    """Sampler named by ``sampler_type`` (``DATALOADER.*.SAMPLER``) over ``data_source``.

    The signature is upstream's; ``batch_size``, ``n_domain`` and ``n_ins`` only configured the
    batch-composing samplers that are not reimplemented.
    """
    if sampler_type == "RandomSampler":
        return RandomSampler(data_source)
    if sampler_type == "SequentialSampler":
        return SequentialSampler(data_source)
    raise ValueError(
        f"Unknown sampler type: {sampler_type} (choose from RandomSampler, SequentialSampler; upstream's "
        "domain/class samplers for DA/DG trainers are not part of this engine)"
    )
