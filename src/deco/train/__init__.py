"""Training: the two-stage LLaVA recipe on accelerate (CPU, 1 GPU, DDP, FSDP, DeepSpeed), resumable.

`run_training(config, resume)` runs a job; `train_main(path, overrides, resume)` loads the config and
runs it (`deco train` does the same, validating before torch loads). Modules: checks (config checks that
need no model), freeze (stage -> trainable), optim (AdamW groups, schedule), batches (data position),
loss (summed token loss), loop (the step), checkpoint/snapshot/state (atomic save and exact resume),
metrics (metrics.jsonl), progress (bar or quiet lines), accel (backend differences), cli (`deco train`).
"""

from deco.lazy import lazy_exports

__all__ = ["run_training", "train_main"]
# Lazy, so that `deco --help` (which imports deco.train.cli) does not load torch and accelerate.
__getattr__ = lazy_exports(__name__, {name: "entry" for name in __all__})
