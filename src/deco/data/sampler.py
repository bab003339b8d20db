"""LLaVA's modality-length grouping: batches of one modality and similar lengths, seeded and DDP-aware.

How an epoch is laid out (`G = world_size * batch_size` samples per optimizer step):
1. Split indices into image samples (length > 0) and text-only samples (length < 0), as LLaVA's
   `modality_lengths`; a mixed batch would pad text rows to the long image rows.
2. Shuffle each group with a generator seeded by `seed + epoch`; cut it into megabatches of
   `G * megabatch_mult`, sort each megabatch by length (longest first) and cut it into global batches
   of G. (`megabatch_mult=1` is LLaVA's setting: grouping only within one step.)
3. Shuffle the order of the full global batches; the leftovers of both groups form the last,
   mixed batches (as LLaVA), padded by repeating early indices so every rank gets as many
   (or dropped with `drop_last`).
4. Rank r takes its share of every global batch (balanced by total length), so with a DataLoader of
   `batch_size` each rank's k-th batch belongs to the same global step on every rank.

LLaVA draws its per-modality order from the global RNG (not the seeded generator); here every draw
uses the seeded generator, so the order is a function of (seed, epoch) alone. With `accelerate`,
either pass world_size=1 and let it shard the DataLoader's batches, or pass the real world size and
rank and tell accelerate not to shard.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from deco.errors import ConfigError


class ModalityLengthGroupedSampler(Sampler[int]):
    """Indices for one rank: modality-pure, length-grouped global batches in a seeded order."""

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        world_size: int = 1,
        rank: int = 0,
        seed: int = 0,
        group_by_modality: bool = True,
        group_by_length: bool = True,
        megabatch_mult: int = 50,
        drop_last: bool = False,
    ) -> None:
        for name, value in (
            ("batch_size", batch_size),
            ("world_size", world_size),
            ("megabatch_mult", megabatch_mult),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"sampler {name} must be a positive integer, got {value!r}")
        if not 0 <= rank < world_size:
            raise ConfigError(f"sampler rank {rank} is outside 0..{world_size - 1}")
        if not lengths:
            raise ConfigError("sampler got no lengths (empty dataset)")
        if any(n == 0 for n in lengths):
            raise ConfigError("sampler lengths must be non-zero (positive: with image, negative: text only)")
        self.lengths = [int(n) for n in lengths]
        self.batch_size, self.world_size, self.rank, self.seed = batch_size, world_size, rank, seed
        self.group_by_modality, self.group_by_length = group_by_modality, group_by_length
        self.megabatch_mult, self.drop_last = megabatch_mult, drop_last
        self.epoch = 0
        self._cache: tuple[int, list[int]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order to produce (call before each epoch, as DistributedSampler)."""
        self.epoch = epoch

    def global_batches(self) -> list[list[int]]:
        """This epoch's global batches (each of world_size * batch_size indices, the last maybe fewer)."""
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        step = self.world_size * self.batch_size
        if self.group_by_modality:
            groups = [
                [i for i, n in enumerate(self.lengths) if n > 0],
                [i for i, n in enumerate(self.lengths) if n < 0],
            ]
            groups = [grp for grp in groups if grp]
        else:
            groups = [list(range(len(self.lengths)))]
        full: list[list[int]] = []
        leftover: list[int] = []
        for group in groups:
            order = [group[i] for i in torch.randperm(len(group), generator=g).tolist()]
            if self.group_by_length:
                mega = step * self.megabatch_mult
                order = [
                    i
                    for s in range(0, len(order), mega)
                    for i in sorted(order[s : s + mega], key=self._size, reverse=True)
                ]
            cut = len(order) - len(order) % step
            full += [order[s : s + step] for s in range(0, cut, step)]
            leftover += order[cut:]
        batches = [full[i] for i in torch.randperm(len(full), generator=g).tolist()]
        leftover.sort(key=self._size, reverse=True)
        batches += [leftover[s : s + step] for s in range(0, len(leftover), step)]
        if batches and len(batches[-1]) < step:
            if self.drop_last:
                batches.pop()
            else:
                batches[-1] = self._pad_to_ranks(batches[-1], [i for b in batches for i in b])
        return batches

    def _size(self, index: int) -> int:
        return abs(self.lengths[index])

    def _pad_to_ranks(self, last: list[int], pool: list[int]) -> list[int]:
        """Repeat early indices so that the last batch splits evenly over the ranks."""
        need = -len(last) % self.world_size
        return last + [pool[k % len(pool)] for k in range(need)]

    def _split(self, batch: list[int]) -> list[list[int]]:
        """Deal one global batch to the ranks, equal counts, balancing total length (longest first)."""
        per_rank = len(batch) // self.world_size
        if not self.group_by_length:
            return [batch[r * per_rank : (r + 1) * per_rank] for r in range(self.world_size)]
        chunks: list[list[int]] = [[] for _ in range(self.world_size)]
        totals = [0] * self.world_size
        for index in sorted(batch, key=self._size, reverse=True):
            r = min((r for r in range(self.world_size) if len(chunks[r]) < per_rank), key=lambda r: totals[r])
            chunks[r].append(index)
            totals[r] += self._size(index)
        return chunks

    def _indices(self) -> list[int]:
        if self._cache is None or self._cache[0] != self.epoch:
            mine = [i for batch in self.global_batches() for i in self._split(batch)[self.rank]]
            self._cache = (self.epoch, mine)
        return self._cache[1]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        return len(self._indices())
