"""`deco <command>`: a thin layer over the library. Errors from bad input print one clear line."""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from deco.console import output_console
from deco.errors import DecoError, StoppedBySignal

app = typer.Typer(
    name="deco",
    help="Build, train, evaluate and analyse multimodal LLMs with pooled visual tokens (DeCo).\n\n"
    "Every command runs torch on DECO_THREADS CPU threads, else OMP_NUM_THREADS, else 1 (fastest for small "
    "models on a shared machine; set more on an idle many-core one). `deco sample DIR` writes data to try "
    "every command on.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = output_console()


@app.command("projectors")
def projectors_command(
    dv: Annotated[int, typer.Option(help="Vision feature width Dv.")] = 1024,
    dl: Annotated[int, typer.Option(help="LLM width Dl.")] = 4096,
    grid: Annotated[str, typer.Option(help="Input patch grid HxW.")] = "24x24",
    tokens: Annotated[
        int | None, typer.Option(help="Output tokens for compressing projectors (a square, e.g. 144).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List every projector with its output tokens and parameter count at the given sizes."""
    from deco.projectors.catalog import projector_catalog

    rows = projector_catalog(dv, dl, grid, tokens)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"Projectors at Dv={dv}, Dl={dl}, grid {grid}" + (f", {tokens} tokens" if tokens else ""))
    for col, justify in (("name", "left"), ("tokens", "right"), ("params", "right"), ("description", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(row["name"], str(row["tokens"]), f"{row['params']:,}", escape(row["description"]))
    console.print(table)


@app.command("config")
def config_command(
    config: Annotated[Path | None, typer.Argument(help="YAML config file (defaults if omitted).")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="Dotted overrides, e.g. train.lr=1e-3.")] = None,
) -> None:
    """Print the resolved config (file + overrides) as YAML, after validating it."""
    import yaml

    from deco.config import load_config

    resolved = load_config(config, overrides or [])
    typer.echo(yaml.safe_dump(resolved.to_dict(), sort_keys=False))


@app.command("info")
def info_command(
    config: Annotated[Path, typer.Argument(help="YAML config file.")],
    overrides: Annotated[list[str] | None, typer.Argument(help="Dotted overrides.")] = None,
) -> None:
    """Build the model a config describes and print its geometry and parameters per component."""
    from deco.config import load_config

    resolved = load_config(config, overrides or [])  # a typo is reported before torch loads (seconds)
    from deco.model.builder import build_model
    from deco.train.step.freeze import apply_stage

    model = build_model(resolved)
    apply_stage(model, resolved.train)  # trainable = what `deco train` trains in this config's stage
    table = Table(title=f"Model (trainable in stage {resolved.train.stage})")
    table.add_column("component")
    table.add_column("parameters", justify="right")
    table.add_column("trainable", justify="right")
    for name, (total, trainable) in model.component_parameters().items():
        table.add_row(name, f"{total:,}", f"{trainable:,}")
    console.print(table)
    console.print(f"vision geometry: {model.vision_tower.geometry()}")
    console.print(f"projector: {model.projector.name} -> {model.num_image_tokens} visual tokens per image")
    if model.multi_level_layers is not None:
        console.print(f"multi-level features: vision layers {list(model.multi_level_layers)} "
                      f"(+ layer {model.vision_tower.feature_layer} for the queries)")
    if model.anyres is not None:  # per-layout counts (global view + tiles + layout tokens)
        for line in model.anyres.token_report():
            console.print(line)


@app.command("recipes")
def recipes_command(
    path: Annotated[
        str | None, typer.Option("--path", help="Print the file of this recipe (e.g. accelerate/ddp) and exit.")
    ] = None,
) -> None:
    """List the named recipes shipped with deco: every command taking a CONFIG accepts these names."""
    from deco.recipe_index import list_recipes, resolve_config_file

    if path is not None:  # for tools that want a file: accelerate launch --config_file $(deco recipes --path ...)
        typer.echo(str(resolve_config_file(path)))
        return
    for name, description in list_recipes():
        typer.echo(f"{name:32s} {description}")


# Feature packages add their own commands: each module defines `register(app: typer.Typer)` and
# keeps heavy imports inside the command functions so `deco --help` stays fast.
_COMMAND_MODULES = (
    "deco.train.cli",
    "deco.demo.cli",
    "deco.eval.cli",
    "deco.analysis.cli",
    "deco.bench.cli",
    "deco.interop.cli",
    "deco.app.cli",
    "deco.sample.cli",
    "deco.data.cli",
)


def _register_feature_commands() -> None:
    import importlib
    import importlib.util

    for name in _COMMAND_MODULES:
        package = name.rsplit(".", 1)[0]
        if importlib.util.find_spec(package) is not None and importlib.util.find_spec(name) is not None:
            importlib.import_module(name).register(app)


_register_feature_commands()


def unwrap_help(text: str) -> str:
    """Join the lines of each paragraph of a docstring; lines that start a list item or are indented stay.

    Docstrings are wrapped to fit the source file, but typer keeps their single line breaks, so help
    printed at another width breaks mid-sentence. Joined, rich wraps each paragraph to the terminal.
    """
    paragraphs = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        if paragraph.startswith("\b"):  # click's "do not rewrap" marker: kept as written
            paragraphs.append(paragraph)
            continue
        lines: list[str] = []
        for line in paragraph.split("\n"):
            if lines and not line.startswith(("-", "*", " ")):
                lines[-1] += " " + line
            else:
                lines.append(line)
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


for _info in app.registered_commands:
    _text = _info.help or (_info.callback.__doc__ if _info.callback else None)
    if _text:
        _info.help = unwrap_help(_text)


def main() -> None:
    """Entry point: run the app, turning deco's input errors into a message and exit code 2."""
    from deco.threads import export_thread_env

    try:
        export_thread_env()  # before torch is imported: every command follows one thread rule
        app()
    except StoppedBySignal as exc:  # not an error: saved and stopped as asked; the signal's status, as a shell expects
        print(exc, file=sys.stderr, flush=True)
        sys.exit(exc.status)
    except (DecoError, OSError) as exc:
        # OSError: an unwritable folder or a full disk is the machine's state, not a bug: one line too.
        # soft_wrap: never hard-wrap, so a long path stays on one line in a log file.
        from rich.markup import escape

        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
