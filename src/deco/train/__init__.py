"""Training: the two-stage LLaVA recipe on accelerate (CPU, 1 GPU, DDP, FSDP, DeepSpeed), resumable.

Start at `entry.run_training(config, resume)`: it plans the resume, builds the model and data (`setup`),
and runs the loop. `train_main(path, overrides, resume)` loads the config and runs it (`deco train`
does the same through `cli`, after `checks` validated what needs no model). The rest by concern:
- `step/`: the optimizer step (loop, loss, optim, accel, wrapper, compiled, freeze);
- `loading/`: which samples each process reads and how they reach it (batches, loader, wire, prefetch);
- `rundir/`: the run's state on disk (checkpoint, snapshot, resume, fingerprint, state, preflight,
  diskerrors, stopping);
- `report/`: what a run tells (progress, metrics, tracking, probe, diagnostics, runinfo).
"""

from deco.lazy import lazy_exports

__all__ = ["run_training", "train_main"]
# Lazy, so that `deco --help` (which imports deco.train.cli) does not load torch and accelerate.
__getattr__ = lazy_exports(__name__, {name: "entry" for name in __all__})
