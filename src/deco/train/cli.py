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
) -> None:
    """Train a model as CONFIG says: stage 1 trains the projector, stage 2 projector + LLM.

    The run directory (train.output_dir) gets config.yaml, versions.json, metrics.jsonl, checkpoint-N/
    folders and final/ (a full model). A killed run continues with --resume, with the same losses.

    Several processes: accelerate launch --config_file configs/accelerate/NAME.yaml -m deco.cli train CONFIG
    """
    from deco.train.entry import train_main

    train_main(config, overrides or [], resume=str(resume_from) if resume_from is not None else resume)


def register(app: typer.Typer) -> None:
    """Add `train` to the deco CLI."""
    app.command("train")(train_command)
