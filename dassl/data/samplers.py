"""Index samplers for the data loaders (``DATALOADER.*.SAMPLER``).

The three custom samplers reproduce upstream Dassl's semantics, including their RNG use: each
runs one full pass in its constructor to learn its length (which consumes Python/NumPy random
state before training starts) and draws with the stdlib ``random`` module (NumPy only for
RandomClassSampler's with-replacement top-up), so seeded runs pick the same indices.

``ShardedSequentialSampler`` is this project's addition for distributed evaluation.
"""

from __future__ import annotations

import copy
import random
from collections import defaultdict
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
from torch.utils.data.sampler import RandomSampler, Sampler, SequentialSampler

__all__ = [
    "build_sampler",
    "RandomDomainSampler",
    "SeqDomainSampler",
    "RandomClassSampler",
    "ShardedSequentialSampler",
    "RandomSampler",
    "SequentialSampler",
]


def _group_indices(data_source: Sequence, attribute: str) -> Dict[int, List[int]]:
    """``{value: [indices]}`` of ``item.<attribute>``, keys in order of first appearance."""
    groups: Dict[int, List[int]] = defaultdict(list)
    for index, item in enumerate(data_source):
        groups[getattr(item, attribute)].append(index)
    return groups


class _DomainBatchSampler(Sampler):
    """Shared machinery of the two domain samplers: every batch holds ``batch_size // n_domain``
    images from each of ``n_domain`` domains; a pass ends as soon as a domain used in the last
    round cannot fill another share."""

    def __init__(self, data_source: Sequence, batch_size: int, n_domain: int, domains: List[int]):
        self.data_source = data_source
        self.domain_dict = _group_indices(data_source, "domain")
        self.domains = domains
        if batch_size % n_domain != 0:
            raise ValueError(
                f"{type(self).__name__}: the batch size ({batch_size}) must be divisible by the number of "
                f"domains per batch ({n_domain}); change DATALOADER.*.BATCH_SIZE or N_DOMAIN"
            )
        self.batch_size = batch_size
        self.n_domain = n_domain
        self.n_img_per_domain = batch_size // n_domain
        self._check_domain_sizes()
        self.length = len(list(iter(self)))

    def _check_domain_sizes(self) -> None:
        for domain, indices in self.domain_dict.items():
            if len(indices) < self.n_img_per_domain:
                raise ValueError(
                    f"{type(self).__name__}: domain {domain} has {len(indices)} images, fewer than the "
                    f"{self.n_img_per_domain} per batch it must supply (batch size {self.batch_size} / "
                    f"{self.n_domain} domains); lower the batch size"
                )

    def _domains_for_round(self) -> List[int]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[int]:
        remaining = copy.deepcopy(self.domain_dict)
        final_idxs: List[int] = []
        stop_sampling = False
        while not stop_sampling:
            for domain in self._domains_for_round():
                picked = random.sample(remaining[domain], self.n_img_per_domain)
                final_idxs.extend(picked)
                for idx in picked:
                    remaining[domain].remove(idx)
                if len(remaining[domain]) < self.n_img_per_domain:
                    stop_sampling = True
        return iter(final_idxs)

    def __len__(self) -> int:
        return self.length


class RandomDomainSampler(_DomainBatchSampler):
    """Each batch: ``n_domain`` distinct domains drawn at random (``n_domain <= 0`` or None: all),
    ``batch_size // n_domain`` random images from each, without replacement within a pass."""

    def __init__(self, data_source: Sequence, batch_size: int, n_domain: Optional[int]):
        domains = list(_group_indices(data_source, "domain").keys())
        if n_domain is None or n_domain <= 0:
            n_domain = len(domains)
        if n_domain > len(domains):
            raise ValueError(
                f"RandomDomainSampler: N_DOMAIN={n_domain} but the data has only {len(domains)} domains"
            )
        super().__init__(data_source, batch_size, n_domain, domains)

    def _domains_for_round(self) -> List[int]:
        return random.sample(self.domains, self.n_domain)


class SeqDomainSampler(_DomainBatchSampler):
    """Each batch: every domain in sorted order, ``batch_size // n_domains`` random images each."""

    def __init__(self, data_source: Sequence, batch_size: int):
        domains = sorted(_group_indices(data_source, "domain").keys())
        super().__init__(data_source, batch_size, len(domains), domains)

    def _domains_for_round(self) -> List[int]:
        return self.domains


class RandomClassSampler(Sampler):
    """Each batch: ``batch_size // n_ins`` random classes with ``n_ins`` images each.

    Classes with fewer than ``n_ins`` images are topped up by drawing with replacement (NumPy);
    a pass ends when fewer than the per-batch number of classes have unused chunks left.
    """

    def __init__(self, data_source: Sequence, batch_size: int, n_ins: int):
        if batch_size < n_ins:
            raise ValueError(
                f"RandomClassSampler: batch_size (={batch_size}) must be no less than n_ins (={n_ins})"
            )
        self.data_source = data_source
        self.batch_size = batch_size
        self.n_ins = n_ins
        self.ncls_per_batch = batch_size // n_ins
        self.index_dic = _group_indices(data_source, "label")
        self.labels = list(self.index_dic.keys())
        if len(self.labels) < self.ncls_per_batch:
            raise ValueError(
                f"RandomClassSampler: a batch needs {self.ncls_per_batch} classes (batch size {batch_size} / "
                f"N_INS {n_ins}) but the data has only {len(self.labels)}"
            )
        self.length = len(list(iter(self)))

    def _chunks_of(self, label: int) -> List[List[int]]:
        indices = list(self.index_dic[label])
        if len(indices) < self.n_ins:
            indices = [int(i) for i in np.random.choice(indices, size=self.n_ins, replace=True)]
        random.shuffle(indices)
        n_chunks = len(indices) // self.n_ins
        return [indices[k * self.n_ins:(k + 1) * self.n_ins] for k in range(n_chunks)]

    def __iter__(self) -> Iterator[int]:
        chunks = {label: self._chunks_of(label) for label in self.labels}
        available = list(self.labels)
        final_idxs: List[int] = []
        while len(available) >= self.ncls_per_batch:
            for label in random.sample(available, self.ncls_per_batch):
                final_idxs.extend(chunks[label].pop(0))
                if not chunks[label]:
                    available.remove(label)
        return iter(final_idxs)

    def __len__(self) -> int:
        return self.length


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
    """Sampler named by ``sampler_type`` (``DATALOADER.TRAIN_X.SAMPLER`` etc.) over ``data_source``."""
    if sampler_type == "RandomSampler":
        return RandomSampler(data_source)
    if sampler_type == "SequentialSampler":
        return SequentialSampler(data_source)
    if sampler_type == "RandomDomainSampler":
        return RandomDomainSampler(data_source, batch_size, n_domain)
    if sampler_type == "SeqDomainSampler":
        return SeqDomainSampler(data_source, batch_size)
    if sampler_type == "RandomClassSampler":
        return RandomClassSampler(data_source, batch_size, n_ins)
    raise ValueError(
        f"Unknown sampler type: {sampler_type} (choose from RandomSampler, SequentialSampler, "
        "RandomDomainSampler, SeqDomainSampler, RandomClassSampler)"
    )
