"""`deco analyze`: explain one answer (three relevance maps + figures) or measure models on many images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deco.reducers.registry import REDUCE_HELP


def register(app: typer.Typer) -> None:
    """Add the `analyze` command to the deco CLI."""
    app.command("analyze")(analyze_command)


def analyze_command(
    model: Annotated[
        list[str], typer.Option("--model", help="Saved model folder or run directory (its final/). "
                                                "Repeat with --metrics to compare models.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    image: Annotated[Path | None, typer.Option(help="Image to explain an answer about.")] = None,
    question: Annotated[str | None, typer.Option(help="Question about the image.")] = None,
    answer: Annotated[
        str | None, typer.Option(help="Explain this answer instead of generating one (greedy).")
    ] = None,
    template: Annotated[
        str, typer.Option(help="Prompt template (vicuna_v1, chatml, plain) or 'none' for '<image>\\nQUESTION'.")
    ] = "vicuna_v1",
    max_new_tokens: Annotated[int, typer.Option(help="Longest generated answer.")] = 16,
    route: Annotated[
        str, typer.Option(help="Query-to-Patch route: auto, exact (deco), attention, gradient.")
    ] = "auto",
    metrics: Annotated[bool, typer.Option("--metrics", help="Measure redundancy/coverage/spatial fidelity.")] = False,
    images: Annotated[Path | None, typer.Option(help="Folder of images for --metrics.")] = None,
    max_images: Annotated[int, typer.Option(help="Use at most this many images from --images.")] = 32,
    threshold: Annotated[float, typer.Option(help="Coverage: share of the uniform relevance a patch needs.")] = 0.5,
    duplicate_cos: Annotated[float, typer.Option(help="Cosine at or above which two tokens are near-duplicates.")] = 0.95,
    max_queries: Annotated[int, typer.Option(help="Most tokens drawn in the Query-to-Patch figure.")] = 64,
    chunk_size: Annotated[int, typer.Option(help="Tokens explained per backward pass (memory vs speed).")] = 8,
    allow_pickle: Annotated[
        bool, typer.Option("--allow-pickle", help="Allow pickle (.bin/.pt) weights. Only for files you trust.")
    ] = False,
    reduce: Annotated[str | None, typer.Option(help=REDUCE_HELP + " Maps and metrics then cover the kept tokens.")] = None,
) -> None:
    """Relevance maps (Query-to-Patch, Text-to-Query, Text-to-Patch) for one answer, or --metrics over images."""
    from deco.errors import ConfigError
    from deco.reducers.registry import parse_reduce

    spec = parse_reduce(reduce)  # a bad --reduce fails before anything loads
    if metrics:
        if images is None:
            raise ConfigError("--metrics needs --images DIR (a folder of images to measure the projectors on)")
        _metrics(model, images, out, route, max_images, threshold, duplicate_cos, chunk_size, allow_pickle,
                 None if spec is None else str(spec))
        return
    if image is None or question is None:
        raise ConfigError("explaining an answer needs --image IMG and --question TEXT (or use --metrics --images DIR)")
    if len(model) != 1:
        raise ConfigError(f"explaining an answer takes one --model, got {len(model)} (several are for --metrics)")
    _explain(model[0], image, question, answer, None if template == "none" else template, max_new_tokens,
             route, out, max_queries, chunk_size, allow_pickle, None if spec is None else str(spec))


def _explain(
    model_path: str, image: Path, question: str, answer: str | None, template: str | None, max_new_tokens: int,
    route: str, out: Path, max_queries: int, chunk_size: int, allow_pickle: bool = False, reduce: str | None = None,
) -> None:
    from deco.analysis.explanation import explain, load_images
    from deco.analysis.loading import load_for_analysis
    from deco.analysis.outputs import write_explanation
    from deco.analysis.text_query import build_prompt

    build_prompt(question, template)  # bad question or template: fail before loading anything
    (pil,) = load_images(image)  # unreadable image: fail before loading the model
    model = load_for_analysis(model_path, allow_pickle)
    if reduce is not None:
        from deco.reducers.apply import apply_reducer

        apply_reducer(model, reduce)
    exp = explain(model, pil, question, answer, template, max_new_tokens, route, chunk_size)
    paths = write_explanation(exp, out, Path(model_path).name, max_queries)
    typer.echo(f"answer: {exp.answer!r}")
    typer.echo(f"Query-to-Patch route: {exp.q2p.route} ({exp.q2p.note})")
    typer.echo(f"explained in {exp.timings['total_s']:.2f} s; wrote " + ", ".join(p.name for p in paths.values())
               + f" to {out}")


def _metrics(
    models: list[str], images: Path, out: Path, route: str, max_images: int, threshold: float,
    duplicate_cos: float, chunk_size: int, allow_pickle: bool = False, reduce: str | None = None,
) -> None:
    from deco.analysis.compare import compare_projectors, markdown_table, write_table
    from deco.analysis.figures import metrics_bar_chart
    from deco.analysis.loading import images_in

    files = images_in(images, max_images)
    chosen: list | dict = list(models)
    if reduce is not None:  # each model with the reducer in place, labelled so in the table
        from deco.analysis.loading import load_for_analysis
        from deco.reducers.apply import apply_reducer

        chosen = {}
        for path in models:
            loaded = load_for_analysis(path, allow_pickle)
            apply_reducer(loaded, reduce)
            chosen[f"{Path(path).name}+{reduce}"] = loaded
    rows = compare_projectors(chosen, files, route, threshold, duplicate_cos, max_images, chunk_size,
                              allow_pickle)
    json_path, md_path = write_table(rows, out)
    chart = metrics_bar_chart(rows, out / "metrics.png", f"Visual-token metrics on {len(files)} images")
    typer.echo(markdown_table(rows))
    typer.echo(f"wrote {json_path.name}, {md_path.name}, {chart.name} to {out}")
