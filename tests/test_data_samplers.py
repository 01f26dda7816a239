"""Samplers: the two torch samplers by name, and exact coverage of the sharded eval sampler."""

from __future__ import annotations

import pytest
from torch.utils.data import RandomSampler, SequentialSampler

from dassl.data.samplers import ShardedSequentialSampler, build_sampler


# --- build_sampler -------------------------------------------------------------------------------

def test_build_sampler_types():
    items = list(range(28))
    assert type(build_sampler("RandomSampler", data_source=items)) is RandomSampler
    sequential = build_sampler("SequentialSampler", data_source=items)
    assert type(sequential) is SequentialSampler and list(sequential) == list(range(len(items)))
    with pytest.raises(ValueError, match="Unknown sampler type: Foo"):
        build_sampler("Foo", data_source=items)
    with pytest.raises(ValueError, match="Unknown sampler type: RandomDomainSampler.*not part of this engine"):
        build_sampler("RandomDomainSampler", data_source=items, batch_size=6, n_domain=3)


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
