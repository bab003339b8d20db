"""ModalityLengthGroupedSampler: seeded, modality-pure, length-grouped, and split correctly over ranks."""

from __future__ import annotations

import random

import pytest
from torch.utils.data import DataLoader

from deco.data import ModalityLengthGroupedSampler
from deco.errors import ConfigError


def mixed_lengths(n_image=203, n_text=117, seed=0):
    rng = random.Random(seed)
    lengths = [rng.randint(600, 1200) for _ in range(n_image)] + [
        -rng.randint(20, 900) for _ in range(n_text)
    ]
    rng.shuffle(lengths)
    return lengths


def test_same_seed_and_epoch_same_order_and_epochs_differ():
    lengths = mixed_lengths()
    a = ModalityLengthGroupedSampler(lengths, batch_size=8, seed=3)
    b = ModalityLengthGroupedSampler(lengths, batch_size=8, seed=3)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first and sorted(a) == sorted(first)
    a.set_epoch(0)
    assert list(a) == first
    assert list(ModalityLengthGroupedSampler(lengths, batch_size=8, seed=4)) != first


def test_every_index_once_and_batches_are_modality_pure_except_the_tail():
    lengths = mixed_lengths()
    sampler = ModalityLengthGroupedSampler(lengths, batch_size=8, seed=0)
    order = list(sampler)
    assert sorted(order) == list(range(len(lengths)))
    batches = [order[i : i + 8] for i in range(0, len(order), 8)]
    mixed = [b for b in batches if len({lengths[i] > 0 for i in b}) > 1]
    # 203 % 8 = 3 and 117 % 8 = 5 leftovers form one mixed batch, placed last.
    assert len(mixed) <= 1 and (not mixed or mixed[0] == batches[-1])


def test_length_grouping_reduces_padding():
    lengths = mixed_lengths(400, 300)

    def padding(order, bs=8):
        batches = [order[i : i + bs] for i in range(0, len(order), bs)]
        return sum(
            max(abs(lengths[i]) for i in b) * len(b) - sum(abs(lengths[i]) for i in b) for b in batches
        )

    grouped = padding(list(ModalityLengthGroupedSampler(lengths, batch_size=8, seed=0)))
    shuffled = padding(
        list(ModalityLengthGroupedSampler(lengths, 8, seed=0, group_by_length=False, group_by_modality=False))
    )
    assert grouped < shuffled / 4


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_split_each_global_batch_and_cover_the_data(world_size):
    lengths = mixed_lengths()
    bs = 4
    samplers = [
        ModalityLengthGroupedSampler(lengths, bs, world_size=world_size, rank=r, seed=1)
        for r in range(world_size)
    ]
    per_rank = [list(s) for s in samplers]
    assert len({len(p) for p in per_rank}) == 1 and all(len(s) == len(per_rank[0]) for s in samplers)
    seen = [i for p in per_rank for i in p]
    assert set(seen) == set(range(len(lengths)))
    assert len(seen) - len(lengths) < world_size  # only the last batch is padded, by < world_size repeats
    # The k-th batch on every rank comes from the same global batch.
    single = ModalityLengthGroupedSampler(lengths, bs, world_size=world_size, rank=0, seed=1).global_batches()
    for k, global_batch in enumerate(single):
        union = [i for p in per_rank for i in p[k * bs : (k + 1) * bs]]
        assert sorted(union) == sorted(global_batch)


def test_drop_last_drops_the_partial_global_batch():
    lengths = mixed_lengths(10, 7)
    samplers = [
        ModalityLengthGroupedSampler(lengths, 3, world_size=2, rank=r, drop_last=True) for r in range(2)
    ]
    assert all(len(s) % 3 == 0 for s in samplers)
    assert len(set(samplers[0]) | set(samplers[1])) == len(list(samplers[0])) * 2


def test_single_modality_and_dataloader_use():
    lengths = [5, 9, 2, 7, 3, 8, 1, 6]
    sampler = ModalityLengthGroupedSampler(lengths, batch_size=2, megabatch_mult=4, seed=0)
    loader = DataLoader(list(range(8)), batch_size=2, sampler=sampler)
    batches = [b.tolist() for b in loader]
    # One megabatch of 8 sorted longest first: pairs of neighbours in length.
    assert sorted(sorted(lengths[i] for i in b) for b in batches) == [[1, 2], [3, 5], [6, 7], [8, 9]]


def test_bad_arguments():
    with pytest.raises(ConfigError, match="batch_size"):
        ModalityLengthGroupedSampler([1, 2], 0)
    with pytest.raises(ConfigError, match="rank 2"):
        ModalityLengthGroupedSampler([1, 2], 1, world_size=2, rank=2)
    with pytest.raises(ConfigError, match="non-zero"):
        ModalityLengthGroupedSampler([1, 0], 1)
    with pytest.raises(ConfigError, match="empty"):
        ModalityLengthGroupedSampler([], 1)
