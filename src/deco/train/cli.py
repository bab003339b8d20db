"""`deco train`: registered on the main CLI app (deco.cli imports this module and calls `register`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def train_command(
    config: Annotated[Path, typer.Argument(help="YAML config file (e.g. configs/tiny.yaml).")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Dotted overrides, e.g. train.max_steps=10 data.train_file=x.json.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the latest checkpoint in train.output_dir exactly.")
    ] = False,
    resume_from: Annotated[
        Path | None, typer.Option("--resume-from", help="Continue from this checkpoint folder.")
    ] = None,
    allow_change: Annotated[
        str | None, typer.Option("--allow-change", help="On resume, apply these changed settings from the resumed "
                                 "step on, e.g. train.lr,train.max_steps (recorded in metrics.jsonl and "
                                 "config_history.jsonl); any other change is refused.")
    ] = None,
    allow_pickle: Annotated[
        bool, typer.Option("--allow-pickle", help="Allow pickle (.bin/.pt) weights for vision.pretrained, "
                           "llm.pretrained, model.load_from and BLIP-2 (model.allow_pickle=true). Only for files you trust.")
    ] = False,
) -> None:
    """Train a model as CONFIG says: stage 1 trains the projector, stage 2 projector + LLM.

    The run directory (train.output_dir) gets config.yaml, versions.json, metrics.jsonl, checkpoint-N/
    folders and final/ (a full model). A killed run continues with --resume, with the same losses; a
    resume with changed settings is refused (one line per setting) unless --allow-change names them.
    SIGTERM or Ctrl-C finishes the current step, writes a checkpoint and exits (128 + the signal); a second
    signal exits at once.
    One `deco train` per output_dir at a time (a lock file, .deco.lock, names the holder).

    Several processes: accelerate launch --config_file configs/accelerate/NAME.yaml -m deco.cli train CONFIG
    """
    from deco.config import load_config

    extra = ["model.allow_pickle=true"] if allow_pickle else []
    # Validated before deco.train.entry loads torch, accelerate and transformers (seconds): a typo in an
    # override is reported at once. Same as train_main(config, overrides, ...), which library users call.
    resolved = load_config(config, [*(overrides or []), *extra])
    from deco.train.checks import check_train_config

    check_train_config(resolved)  # one process here; the run checks again with the launcher's count
    from deco.train.entry import run_training

    run_training(resolved, resume=str(resume_from) if resume_from is not None else resume, allow_change=allow_change)


def register(app: typer.Typer) -> None:
    """Add `train` to the deco CLI."""
    app.command("train")(train_command)
