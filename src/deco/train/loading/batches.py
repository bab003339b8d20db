"""Which samples each process reads at each optimizer step: the data position of a run.

An epoch is a seeded order of global batches (G = global_batch_size samples each, the incomplete
tail dropped). Global batch k is cut into `accum x world` micro-batches of `per_device` samples:
micro-batch a of rank r holds positions [(a * world + r) * per_device, ... + per_device). So the
samples of an optimizer step do not depend on how many processes or accumulation steps share it,
which is what makes 1 process and N processes train on the same data, and lets a run resume at a
step with nothing but (epoch, step_in_epoch).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from deco.data import ModalityLengthGroupedSampler
from deco.errors import ConfigError, DataError


@dataclass
class BatchPlan:
    """The global-batch layout of a run."""

    num_samples: int
    global_batch: int
    per_device: int
    world_size: int
    seed: int
    # Modality lengths (positive: with image, negative: text only) for LLaVA's grouping; None = shuffle.
    modality_lengths: Sequence[int] | None = None

    def __post_init__(self) -> None:
        per_step = self.per_device * self.world_size
        if self.global_batch % per_step:
            raise ConfigError(
                f"train.global_batch_size={self.global_batch} is not divisible by per_device_batch_size "
                f"({self.per_device}) x processes ({self.world_size}) = {per_step}"
            )
        if self.num_samples < self.global_batch:
            raise DataError(
                f"the dataset has {self.num_samples} usable samples, fewer than one global batch "
                f"(train.global_batch_size={self.global_batch})"
            )
        self._cache: tuple[int, list[list[int]]] | None = None

    @property
    def accum(self) -> int:
        """Gradient accumulation steps per optimizer step on each process."""
        return self.global_batch // (self.per_device * self.world_size)

    @property
    def steps_per_epoch(self) -> int:
        """Full global batches per epoch (the incomplete tail is dropped)."""
        return self.num_samples // self.global_batch

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The epoch's global batches, a function of (seed, epoch) only."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        if self.modality_lengths is not None:
            sampler = ModalityLengthGroupedSampler(
                self.modality_lengths, batch_size=self.global_batch, world_size=1, seed=self.seed, drop_last=True
            )
            sampler.set_epoch(epoch)
            batches = [b for b in sampler.global_batches() if len(b) == self.global_batch]
        else:
            g = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(self.num_samples, generator=g).tolist()
            batches = [order[k : k + self.global_batch] for k in range(0, self.steps_per_epoch * self.global_batch,
                                                                          self.global_batch)]
        self._cache = (epoch, batches)
        return batches

    def micro_batches(self, epoch: int, step_in_epoch: int, rank: int) -> list[list[int]]:
        """This rank's `accum` micro-batches (dataset indices) for one optimizer step."""
        batch = self.epoch_batches(epoch)[step_in_epoch]
        p, w = self.per_device, self.world_size
        return [batch[(a * w + rank) * p : (a * w + rank + 1) * p] for a in range(self.accum)]

    def position_after(self, epoch: int, step_in_epoch: int) -> tuple[int, int]:
        """(epoch, step_in_epoch) of the step after the given one."""
        step_in_epoch += 1
        if step_in_epoch >= self.steps_per_epoch:
            return epoch + 1, 0
        return epoch, step_in_epoch


class StepBatchSampler:
    """A DataLoader batch sampler: this rank's micro-batches from a position for `num_steps` steps."""

    def __init__(self, plan: BatchPlan, rank: int, epoch: int, step_in_epoch: int, num_steps: int) -> None:
        self.plan, self.rank = plan, rank
        self.epoch, self.step_in_epoch, self.num_steps = epoch, step_in_epoch, num_steps

    def __iter__(self) -> Iterator[list[int]]:
        epoch, pos = self.epoch, self.step_in_epoch
        for _ in range(self.num_steps):
            yield from self.plan.micro_batches(epoch, pos, self.rank)
            epoch, pos = self.plan.position_after(epoch, pos)

    def __len__(self) -> int:
        return self.num_steps * self.plan.accum
