"""`deco app`: the web page to ask models about images and see what their visual tokens hold."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deco.reducers.registry import REDUCE_HELP


def app_command(
    model: Annotated[list[str] | None, typer.Option(
        "--model", help="Saved model folder or run directory; twice to compare two models side by side. "
                        "Default: the models `deco demo` trained in --demo-dir.")] = None,
    demo_dir: Annotated[Path, typer.Option(help="A `deco demo` output folder to offer models from.")] = Path("deco-demo"),
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default: only this machine).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 7860,
    max_upload_mb: Annotated[float, typer.Option(help="Largest image upload accepted, in MB.")] = 10.0,
    reduce: Annotated[str | None, typer.Option(help=REDUCE_HELP + " Applied to every model the page offers.")] = None,
) -> None:
    """Serve a page: upload an image or pick a demo scene, ask, and see each answer word's and visual token's map."""
    from deco.app.server import build_app, serve
    from deco.errors import ConfigError

    if not 0 < port < 65536:
        raise ConfigError(f"--port must be between 1 and 65535, got {port}")
    if not max_upload_mb > 0:
        raise ConfigError(f"--max-upload-mb must be positive, got {max_upload_mb}")
    from deco.reducers.registry import parse_reduce

    spec = parse_reduce(reduce)  # a bad --reduce fails before the page starts
    page = build_app(model or None, demo_dir, max_upload_mb, None if spec is None else str(spec))
    typer.echo(f"deco app on http://{host}:{port} (Ctrl-C stops it)")
    serve(page, host, port, max_upload_mb)


def register(app: typer.Typer) -> None:
    """Add `app` to the deco CLI."""
    app.command("app")(app_command)
