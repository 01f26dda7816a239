"""Samplers: custom batch composition, RNG-exact agreement with a plain restatement of the
upstream algorithm, construction-time RNG use, and exact coverage of the sharded eval sampler."""

from __future__ import annotations

import copy
import random
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import pytest
from torch.utils.data import RandomSampler, SequentialSampler

from dassl.data.samplers import (
    RandomClassSampler,
    RandomDomainSampler,
    SeqDomainSampler,
    ShardedSequentialSampler,
    build_sampler,
)


@dataclass
class Item:  # the samplers only read .label / .domain, so no image files are needed
    label: int
    domain: int


def make_items(per_domain=(9, 7, 12), n_labels=4):
    items = []
    for domain, count in enumerate(per_domain):
        items += [Item(label=i % n_labels, domain=domain) for i in range(count)]
    random.Random(0).shuffle(items)
    return items


def batches(indices, size):
    return [indices[i:i + size] for i in range(0, len(indices), size)]


# --- straightforward restatements of dassl-api.md 4.4 (the reference for RNG order) ---------

def reference_domain_pass(items, batch_size, n_domain, sequential=False):
    groups = defaultdict(list)
    for i, item in enumerate(items):
        groups[item.domain].append(i)
    domains = sorted(groups) if sequential else list(groups)
    if not n_domain or n_domain <= 0:
        n_domain = len(domains)
    k = batch_size // n_domain
    groups = copy.deepcopy(groups)
    out, stop = [], False
    while not stop:
        chosen = domains if sequential else random.sample(domains, n_domain)
        for d in chosen:
            picked = random.sample(groups[d], k)
            out += picked
            for i in picked:
                groups[d].remove(i)
            if len(groups[d]) < k:
                stop = True
    return out


def reference_class_pass(items, batch_size, n_ins):
    groups = defaultdict(list)
    for i, item in enumerate(items):
        groups[item.label].append(i)
    labels = list(groups)
    chunks = {}
    for label in labels:
        idxs = list(groups[label])
        if len(idxs) < n_ins:
            idxs = list(np.random.choice(idxs, size=n_ins, replace=True))
        random.shuffle(idxs)
        chunks[label] = [idxs[j:j + n_ins] for j in range(0, len(idxs) - n_ins + 1, n_ins)]
    available, out = list(labels), []
    while len(available) >= batch_size // n_ins:
        for label in random.sample(available, batch_size // n_ins):
            out += chunks[label].pop(0)
            if not chunks[label]:
                available.remove(label)
    return [int(i) for i in out]


def seed_all(seed):
    random.seed(seed)
    np.random.seed(seed)


# --- RandomDomainSampler ----------------------------------------------------------------------

@pytest.mark.parametrize("n_domain", [0, 2, 3])
def test_random_domain_sampler_matches_reference_pass(n_domain):
    items = make_items()
    seed_all(5)
    sampler = RandomDomainSampler(items, batch_size=6, n_domain=n_domain)
    epoch = list(sampler)
    seed_all(5)
    ref_len = len(reference_domain_pass(items, 6, n_domain))  # the constructor's pass
    assert epoch == reference_domain_pass(items, 6, n_domain)
    assert len(sampler) == ref_len


def test_random_domain_sampler_batch_composition():
    items = make_items()
    random.seed(1)
    indices = list(RandomDomainSampler(items, batch_size=6, n_domain=2))
    assert len(indices) == len(set(indices)) and len(indices) % 6 == 0
    for batch in batches(indices, 6):
        counts = Counter(items[i].domain for i in batch)
        assert len(counts) == 2 and set(counts.values()) == {3}


def test_domain_sampler_errors():
    items = make_items()
    with pytest.raises(ValueError, match="divisible"):
        RandomDomainSampler(items, batch_size=7, n_domain=2)
    with pytest.raises(ValueError, match="only 3 domains"):
        RandomDomainSampler(items, batch_size=8, n_domain=4)
    with pytest.raises(ValueError, match="fewer than"):
        RandomDomainSampler(make_items((2, 9)), batch_size=6, n_domain=2)


def test_custom_samplers_consume_rng_at_construction():
    items = make_items()
    random.seed(0)
    before = random.getstate()
    RandomDomainSampler(items, batch_size=6, n_domain=2)
    assert random.getstate() != before


# --- SeqDomainSampler ---------------------------------------------------------------------------

def test_seq_domain_sampler_visits_domains_in_sorted_order():
    items = make_items()
    seed_all(2)
    indices = list(SeqDomainSampler(items, batch_size=6))
    seed_all(2)
    reference_domain_pass(items, 6, 0, sequential=True)
    assert indices == reference_domain_pass(items, 6, 0, sequential=True)
    for batch in batches(indices, 6):
        assert [items[i].domain for i in batch] == [0, 0, 1, 1, 2, 2]


def test_seq_domain_sampler_requires_divisible_batch():
    with pytest.raises(ValueError, match="divisible"):
        SeqDomainSampler(make_items(), batch_size=8)


# --- RandomClassSampler ------------------------------------------------------------------------

def test_random_class_sampler_matches_reference_pass():
    items = make_items((9, 7, 12), n_labels=5)
    items += [Item(label=9, domain=0)]  # a class with one image: topped up with replacement
    seed_all(7)
    sampler = RandomClassSampler(items, batch_size=6, n_ins=2)
    epoch = list(sampler)
    seed_all(7)
    first = reference_class_pass(items, 6, 2)
    assert epoch == reference_class_pass(items, 6, 2)
    assert len(sampler) == len(first)
    for batch in batches(epoch, 6):
        labels = [items[i].label for i in batch]
        assert labels[0] == labels[1] and labels[2] == labels[3] and labels[4] == labels[5]
        assert len({labels[0], labels[2], labels[4]}) == 3


def test_random_class_sampler_errors():
    items = make_items()
    with pytest.raises(ValueError, match="no less than n_ins"):
        RandomClassSampler(items, batch_size=2, n_ins=4)
    with pytest.raises(ValueError, match="needs 8 classes"):
        RandomClassSampler(items, batch_size=16, n_ins=2)


# --- build_sampler -------------------------------------------------------------------------------

def test_build_sampler_types():
    items = make_items()
    assert type(build_sampler("RandomSampler", data_source=items)) is RandomSampler
    sequential = build_sampler("SequentialSampler", data_source=items)
    assert type(sequential) is SequentialSampler and list(sequential) == list(range(len(items)))
    assert isinstance(build_sampler("RandomDomainSampler", data_source=items, batch_size=6, n_domain=3),
                      RandomDomainSampler)
    assert isinstance(build_sampler("SeqDomainSampler", data_source=items, batch_size=6), SeqDomainSampler)
    assert isinstance(build_sampler("RandomClassSampler", data_source=items, batch_size=4, n_ins=2),
                      RandomClassSampler)
    with pytest.raises(ValueError, match="Unknown sampler type: Foo"):
        build_sampler("Foo", data_source=items)


# --- ShardedSequentialSampler --------------------------------------------------------------------

@pytest.mark.parametrize("n_items", [0, 1, 5, 7, 8, 100])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_sharded_sampler_covers_every_index_exactly_once(n_items, world):
    data = list(range(n_items))
    shards = [list(ShardedSequentialSampler(data, num_replicas=world, rank=r)) for r in range(world)]
    for rank, shard in enumerate(shards):
        assert shard == list(range(rank, n_items, world))
        assert len(ShardedSequentialSampler(data, num_replicas=world, rank=rank)) == len(shard)
    assert sorted(i for shard in shards for i in shard) == data
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_sharded_sampler_defaults_to_single_process_and_rejects_bad_rank():
    assert list(ShardedSequentialSampler(list(range(4)))) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="invalid rank 2"):
        ShardedSequentialSampler([1, 2], num_replicas=2, rank=2)
