"""`deco export` and `deco chat`, registered on the main CLI (heavy imports stay inside the commands)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from deco.reducers.registry import REDUCE_HELP


class ExportFormat(str, Enum):
    """Folder layouts `deco export` writes."""

    hf = "hf"
    hf_llava = "hf-llava"
    deco = "deco"


MODEL_HELP = "A run folder (its final/), a saved deco model folder, or an HF LLaVA checkpoint folder."
DTYPE_HELP = "float32, bfloat16 or float16 for HF LLaVA folders (default: the checkpoint's own)."
PICKLE_HELP = "Allow pickle (.bin/.pt) weights in model folders. Only for files you trust: unpickling runs code."


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def export_command(
    model: Annotated[Path, typer.Option("--model", help=MODEL_HELP)],
    out: Annotated[Path, typer.Option("--out", help="Folder to write (must be empty or new).")],
    format: Annotated[
        ExportFormat, typer.Option("--format", help="hf: a transformers model (model_type deco, any projector; "
                                   "AutoModelForImageTextToText after `import deco`); hf-llava: "
                                   "LlavaForConditionalGeneration (mlp/linear projectors); deco: deco's own folder "
                                   "for any projector. Every folder gets a model card (README.md).")
    ] = ExportFormat.hf_llava,
    template: Annotated[
        str | None, typer.Option("--template", help="Conversation template to record (default: the model's own).")
    ] = None,
    verify: Annotated[
        bool, typer.Option("--verify", help="Reload the written folder and compare logits with the model.")
    ] = False,
    dtype: Annotated[str | None, typer.Option("--dtype", help=DTYPE_HELP)] = None,
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle", help=PICKLE_HELP)] = False,
) -> None:
    """Write a model as a transformers folder, an HF LLaVA checkpoint or a deco folder: what a hub upload holds."""
    from deco.errors import ConfigError
    from deco.interop.export import export_model

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} exists and is not an empty folder; choose a new folder")
    with _no_progress_bars():
        written, diff = export_model(model, out, format.value, template, allow_pickle, verify, dtype)
    typer.echo(f"wrote {format.value} folder {written}")
    if diff is not None:
        typer.echo(f"verified: reloaded logits differ from the model's by at most {diff:.3g}")


def chat_command(
    model: Annotated[Path, typer.Option("--model", help=MODEL_HELP)],
    image: Annotated[Path | None, typer.Option("--image", help="Image to talk about.")] = None,
    prompt: Annotated[
        str | None, typer.Option("--prompt", help="Ask this one question, print the answer and exit.")
    ] = None,
    template: Annotated[
        str | None, typer.Option("--template", help="Conversation template (default: the model's own).")
    ] = None,
    system: Annotated[str | None, typer.Option("--system", help="System prompt (default: the template's).")] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Longest answer in tokens.")] = 256,
    temperature: Annotated[float, typer.Option("--temperature", help="0 = greedy; > 0 samples.")] = 0.0,
    top_p: Annotated[float, typer.Option("--top-p", help="Nucleus sampling mass (with --temperature > 0).")] = 1.0,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for sampling.")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1, ... (default: cuda if present).")] = "auto",
    dtype: Annotated[str | None, typer.Option("--dtype", help=DTYPE_HELP)] = None,
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle", help=PICKLE_HELP)] = False,
    reduce: Annotated[str | None, typer.Option("--reduce", help=REDUCE_HELP)] = None,
) -> None:
    """Chat with a model about an image: an interactive terminal, or one answer with --prompt."""
    from deco.reducers.registry import parse_reduce

    reduce_spec = parse_reduce(reduce)  # a bad --reduce fails before the model loads
    import torch

    from deco.interop.chat import ChatSession, GenerationOptions, run_interactive
    from deco.interop.resolve import load_any_model, prompt_style

    options = GenerationOptions(max_new_tokens, temperature, top_p, seed)
    options.validate()
    with _no_progress_bars():  # HF's "Loading weights" bars would mix with the conversation
        loaded = load_any_model(model, allow_pickle=allow_pickle, dtype=dtype)
    target = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    loaded.to(target)
    if reduce_spec is not None:
        from deco.reducers.apply import apply_reducer

        apply_reducer(loaded, reduce_spec)
    style = prompt_style(loaded, model, template)
    session = ChatSession(loaded, style, options, system)
    session.set_image(image)
    if prompt is not None:
        typer.echo(session.ask(prompt))
        return
    typer.echo(f"model {model} on {target}; prompts use {style.describe()}")
    if style.template == "plain":
        typer.echo("template 'plain' (stage 1) captions the image: the question text is not used")
    elif session.single_turn:
        typer.echo(f"template '{style.template}' is single-turn: each question starts a new conversation")
    run_interactive(session)


def register(app: typer.Typer) -> None:
    """Add `export` and `chat` to the deco CLI."""
    app.command("export")(export_command)
    app.command("chat")(chat_command)
