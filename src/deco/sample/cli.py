"""`deco sample`: registered on the main CLI app (deco.cli imports this module and calls `register`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def sample_command(
    out: Annotated[Path, typer.Argument(help="Folder to write the sample into (created if needed).")] = Path("sample"),
) -> None:
    """Write a tiny sample to try every command on: 8 images, a LLaVA-format training file, GQA and POPE questions.

    Files: OUT/images/*.jpg, OUT/train.json, OUT/gqa/testdev_balanced_questions.json and
    OUT/pope/coco_pope_random.json, in the layouts the real datasets use. Nothing is downloaded.
    """
    from deco.sample.scenes import SCENES
    from deco.sample.writer import write_sample

    paths = write_sample(out)
    typer.echo(f"wrote {len(SCENES)} images to {paths['images']}/, {paths['train']}, {paths['gqa']} and {paths['pope']}")


def register(app: typer.Typer) -> None:
    """Add `sample` to the deco CLI."""
    app.command("sample")(sample_command)
