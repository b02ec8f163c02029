"""Evaluation shards: every index evaluated once, whole batches per rank where asked, gathered back in order."""

import pytest

from bora.distributed import shard


@pytest.mark.parametrize("count, block, world", [(9, 1, 2), (9, 4, 2), (10, 4, 3), (3, 8, 2), (0, 4, 2)])
def test_shards_cover_every_index_once_in_whole_blocks(monkeypatch, count, block, world):
    monkeypatch.setenv("WORLD_SIZE", str(world))
    shards = []
    for rank in range(world):
        monkeypatch.setenv("RANK", str(rank))
        shards.append(shard(count, block))
    assert sorted(i for part in shards for i in part) == list(range(count))
    for rank, part in enumerate(shards):  # rank r holds blocks r, r + world, ...: each one whole, in order
        assert part == sorted(part) and all((i // block) % world == rank for i in part)


def test_blocks_of_a_batch_are_the_batches_of_one_process(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert shard(9, 4) == [0, 1, 2, 3, 8]
    monkeypatch.setenv("RANK", "1")
    assert shard(9, 4) == [4, 5, 6, 7]
    assert shard(9, 1) == [1, 3, 5, 7]  # one example at a time: every world-th
