"""The optimizer-step loop: accumulate micro-batches, normalise by the step's global loss tokens, clip,
check for non-finite values, step, log, checkpoint."""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

from deco.config import TrainSection
from deco.errors import NonFiniteError
from deco.train.loading.batches import BatchPlan
from deco.train.loading.wire import shutdown_workers
from deco.train.report.diagnostics import BlockDiagnostics
from deco.train.report.metrics import MetricsWriter
from deco.train.report.progress import Reporter
from deco.train.rundir.state import TrainState
from deco.train.rundir.stopping import StopRequest, TrainingStopped
from deco.train.step import accel
from deco.train.step.loss import count_loss_tokens, summed_token_loss

# What the model reads from a batch; tensors go to the device, `image_layouts` (AnyRes) stays a list.
MODEL_KEYS = ("input_ids", "attention_mask", "pixel_values", "image_layouts")


@dataclass
class StepResult:
    """One optimizer step, summed over micro-batches and processes."""

    loss: float
    loss_tokens: int
    tokens: int
    samples: int
    grad_norm: float | None
    stepped: bool
    seconds: float
    # Of `seconds`, the time spent waiting for the data loader's micro-batches.
    data_seconds: float = 0.0


@dataclass
class Loop:
    """Everything the loop touches; built by entry.run_training."""

    accelerator: Accelerator
    model: Any
    optimizer: Any
    scheduler: Any
    plan: BatchPlan
    batches: Iterator[dict[str, Any]]
    state: TrainState
    train: TrainSection
    total_steps: int
    reporter: Reporter
    metrics: MetricsWriter | None
    save: Callable[[], Any]
    window: list[StepResult] = field(default_factory=list)
    last_saved: int = -1
    diagnostics: BlockDiagnostics | None = None  # train.diagnostics_every > 0 (main process)
    stop: StopRequest | None = None  # set by SIGTERM / SIGINT (deco.train.rundir.stopping)
    last_checkpoint: Path | None = None

    def run(self) -> None:
        """Train from state.step to total_steps; on a stop signal, checkpoint the finished step and raise
        TrainingStopped."""
        self.reporter.start(self.total_steps, self.state.step)
        try:
            while self.state.step < self.total_steps:
                self._advance(self.next_step())
                stopping = self._stop_requested()
                if stopping or self.train.save_every > 0 and self.state.step % self.train.save_every == 0:
                    self._save()
                if stopping:
                    assert self.stop is not None and self.stop.signum is not None
                    raise TrainingStopped(self.stop.signum, self.state.step, self.total_steps, self.last_checkpoint)
            if self.last_saved != self.state.step:
                self._save()
        finally:
            self.reporter.close()
            # Stop the loader workers now, also when the run failed: an exception's traceback keeps the
            # iterator alive, and a worker left waiting would hold the process at exit.
            close = getattr(self.batches, "close", None)
            if close is not None:
                close()
            shutdown_workers(self.batches)

    def _stop_requested(self) -> bool:
        """Whether a stop signal arrived; with several processes, whether any got one (all must stop at the
        same step: saving is collective)."""
        local = self.stop is not None and self.stop.requested
        acc = self.accelerator
        if acc.num_processes == 1:
            return local
        flag = acc.reduce(torch.tensor([int(local)], device=acc.device), "max")
        if self.stop is not None and not local and bool(flag.item()):
            self.stop.signum = signal.SIGTERM  # another process got it; stop with the same status
        return bool(flag.item())

    # ---- one optimizer step -----------------------------------------------------------------

    def next_step(self) -> StepResult:
        """Take the next optimizer step's micro-batches from the loader and run the step (`deco bench`
        times exactly this)."""
        start = time.perf_counter()  # throughput counts waiting for data too
        micro = [next(self.batches) for _ in range(self.plan.accum)]
        waited = time.perf_counter() - start
        result = self.step(micro, start)
        result.data_seconds = waited
        return result

    def step(self, micro: list[dict[str, Any]], start: float) -> StepResult:
        """Forward/backward every micro-batch, then clip and step (or stop / skip on non-finite values)."""
        acc, device = self.accelerator, self.accelerator.device
        counts = torch.tensor(
            [sum(count_loss_tokens(b["labels"]) for b in micro),
             sum(int(b["attention_mask"].sum()) for b in micro),
             sum(len(b["sample_ids"]) for b in micro)],
            dtype=torch.int64,
        )  # counted on the host from the loader's CPU tensors: no device round trip on one process
        counts = acc.reduce(counts.to(device), "sum").cpu() if acc.num_processes > 1 else counts
        n_tokens = int(counts[0])
        # Each process's gradient is averaged over processes (DDP/FSDP/ZeRO) and accelerate divides the
        # loss by the accumulation steps; undo both so the step's gradient is sum(token losses) / n_tokens.
        scale = acc.num_processes * self.plan.accum / max(n_tokens, 1)
        sums: list[torch.Tensor] = []
        every = self.train.diagnostics_every
        diagnose = self.diagnostics is not None and every > 0 and (self.state.step + 1) % every == 0
        if diagnose:
            self.diagnostics.start()
        for batch in micro:
            inputs = {k: to_device(batch.get(k), device) for k in MODEL_KEYS}
            labels = batch["labels"].to(device, non_blocking=True)
            with acc.accumulate(self.model):
                logits = self.model(**inputs)  # [B, T, V]
                summed = summed_token_loss(logits, labels)
                del logits
                acc.backward(summed * scale)
            sums.append(summed.detach().double())
        # One host sync for the whole step (not one per micro-batch, nor a second for the norm): the
        # summed loss, the gradient norm, and which micro-batches were non-finite (to name their samples
        # if the step stops).
        per_micro = torch.stack(sums)  # [accum]
        loss_sum = per_micro.sum()
        loss_sum = acc.reduce(loss_sum, "sum") if acc.num_processes > 1 else loss_sum
        if diagnose:  # gradients as backward left them, before clipping
            self.diagnostics.record(self.state.step + 1)
        norm = accel.grad_norm_of(acc, self.model, self.train.max_grad_norm)
        norm_slot = (norm.detach().double().to(per_micro.device) if norm is not None
                     else torch.zeros((), dtype=torch.float64, device=per_micro.device))
        loss_value, norm_value, *finite = torch.cat(
            [loss_sum.reshape(1), norm_slot.reshape(1), per_micro.isfinite().double()]).tolist()
        bad_ids = [i for batch, ok in zip(micro, finite, strict=True) if not ok for i in batch["sample_ids"]]
        loss = loss_value / max(n_tokens, 1)
        grad_norm = None if norm is None else norm_value
        # fp16: an inf gradient with a finite loss is the loss scaler's overflow, which it skips itself.
        grad_ok = grad_norm is None or math.isfinite(grad_norm) or (
            self.train.precision == "fp16" and math.isfinite(loss))
        stepped = False
        if n_tokens == 0:
            self.reporter.info(f"step {self.state.step + 1}: no loss tokens in the batch; step skipped")
        elif math.isfinite(loss) and grad_ok:
            self.optimizer.step()
            stepped = not acc.optimizer_step_was_skipped
        else:
            self._nonfinite(micro, loss, grad_norm, bad_ids)
        self.optimizer.zero_grad(set_to_none=True)
        return StepResult(loss, n_tokens, int(counts[1]), int(counts[2]), grad_norm, stepped,
                          time.perf_counter() - start)

    def _nonfinite(self, micro: list[dict[str, Any]], loss: float, grad_norm: float | None, bad: list[str]) -> None:
        """Stop with the step and sample ids, or count a skipped step (train.on_nonfinite)."""
        step = self.state.step + 1
        what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {grad_norm}"
        ids = bad or [i for b in micro for i in b["sample_ids"]]
        all_ids = [i for part in gather_object([ids]) for i in part] if self.accelerator.num_processes > 1 else ids
        if self.train.on_nonfinite == "error":
            raise NonFiniteError(
                f"non-finite {what} at step {step} (epoch {self.state.epoch}); batch sample ids: "
                f"{all_ids[:20]}{' ...' if len(all_ids) > 20 else ''}. Nothing was written for this step; "
                "set train.on_nonfinite=skip to skip such steps"
            )
        self.state.skipped_steps += 1
        self.state.skipped_step_ids.append(step)
        self.reporter.info(f"step {step}: non-finite {what}, step skipped (sample ids {all_ids[:10]})")

    # ---- bookkeeping --------------------------------------------------------------------------

    def _advance(self, result: StepResult) -> None:
        lrs = self.scheduler.get_last_lr()  # the lr this step used (the scheduler steps after)
        self.scheduler.step()
        s = self.state
        s.step += 1
        s.epoch, s.step_in_epoch = self.plan.position_after(s.epoch, s.step_in_epoch)
        s.samples_seen += result.samples
        s.tokens_seen += result.tokens
        s.loss_tokens_seen += result.loss_tokens
        self.window.append(result)
        if s.step % max(1, self.train.log_every) == 0 or s.step == self.total_steps:
            self._log(lrs)

    def _log(self, lrs: list[float]) -> None:
        w, s = self.window, self.state
        seconds = sum(r.seconds for r in w) or 1e-9
        names = [g.get("name", str(i)) for i, g in enumerate(self.optimizer.param_groups)]
        by_name = dict(zip(names, lrs, strict=True))
        norms = [r.grad_norm for r in w if r.grad_norm is not None]
        record = {
            "step": s.step,
            "epoch": s.epoch + s.step_in_epoch / self.plan.steps_per_epoch,
            "loss": sum(r.loss for r in w) / len(w),
            "lr": by_name.get("llm", by_name.get("projector", lrs[0])),
            "projector_lr": by_name.get("projector", lrs[0]),
            "grad_norm": norms[-1] if norms else None,
            "loss_tokens": sum(r.loss_tokens for r in w),
            "tokens_per_s": sum(r.tokens for r in w) / seconds,
            "samples_per_s": sum(r.samples for r in w) / seconds,
            # Of the logged steps' time, the fraction spent waiting for the data loader.
            "data_wait_fraction": sum(r.data_seconds for r in w) / seconds,
            "skipped_steps": s.skipped_steps,
            "time": time.time(),
        }
        self.window = []
        if self.metrics is not None:
            self.metrics.write(record)
        self.reporter.step(record, self.total_steps)

    def _save(self) -> None:
        self.last_checkpoint = self.save()
        self.last_saved = self.state.step


def to_device(value: Any, device: torch.device) -> Any:
    """A batch entry on the device: tensors moved, None and plain lists (AnyRes layouts) as they are.

    non_blocking: from pinned memory (the loader pins on CUDA) the copy overlaps the previous
    micro-batch's compute; the stream orders it before any use. From unpinned memory it is a plain copy.
    """
    return value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
