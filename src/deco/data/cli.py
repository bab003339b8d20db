"""`deco data check`: the data preflight, registered on the main CLI (heavy imports inside the command)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def check_command(
    data: Annotated[Path, typer.Argument(help="LLaVA-format JSON or JSONL file.")],
    images: Annotated[
        Path | None, typer.Option("--images", help="Folder the records' image paths are relative to.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Decoding processes (default: every core).")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Bad-sample report, JSONL (default: DATA's name + .check.jsonl "
                                                   "in the current folder).")
    ] = None,
    allow_multi_image: Annotated[
        bool, typer.Option("--allow-multi-image", help="Records may list several images (data.allow_multi_image).")
    ] = False,
    allow_outside: Annotated[
        bool, typer.Option("--allow-outside-image-folder", help="Accept image paths that resolve outside --images.")
    ] = False,
) -> None:
    """Validate every record and decode every image in parallel; print a summary, write the bad samples.

    The report has one JSON line per bad sample: file, line, id, reason. Exit status 0 when every
    sample is good, 1 when some are bad (the report says which), 2 when the file cannot be read at all.
    """
    from deco.data.check import check_data, write_report

    if workers is not None and workers < 1:
        from deco.errors import ConfigError

        raise ConfigError(f"--workers must be >= 1, got {workers}")
    result = check_data(data, images, workers, allow_multi_image, allow_outside)
    target = write_report(result.bad, report or Path(f"{data.name}.check.jsonl"))
    typer.echo(result.summary())
    for bad in result.bad[:10]:
        typer.echo(f"  {bad.file}:{bad.line}: sample '{bad.id}': {bad.reason}")
    if len(result.bad) > 10:
        typer.echo(f"  ... {len(result.bad) - 10} more")
    typer.echo(f"report: {target} ({len(result.bad)} bad sample(s))")
    if result.bad:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `deco data check` to the deco CLI."""
    data_app = typer.Typer(help="Check training data before a run (records and every image).",
                           no_args_is_help=True)
    data_app.command("check")(check_command)
    app.add_typer(data_app, name="data")
