"""`deco score`: the command over `deco.eval.score` (registered by deco.cli through `register`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

_BENCHMARKS = "vqav2, textvqa, vizwiz, gqa, pope, mme, mmbench, scienceqa, seed"


def register(app: typer.Typer) -> None:
    """Add the `score` command to the deco app."""

    @app.command("score")
    def score_command(
        benchmark: Annotated[str, typer.Option(help=f"Benchmark name, exactly one of: {_BENCHMARKS}.")],
        preds: Annotated[Path, typer.Option(help="Predictions, one JSON line each: deco's or a LLaVA answer file.")],
        data: Annotated[Path, typer.Option(help="Annotation file or folder as the benchmark publishes it "
                                                "(names in src/deco/eval/README.md), or simplified JSONL.")],
        out: Annotated[Path | None, typer.Option(help="Also write the full result as JSON here.")] = None,
        missing: Annotated[str, typer.Option(help="Questions without a prediction: wrong (count as wrong), "
                                                  "skip (leave out) or error.")] = "wrong",
        as_json: Annotated[bool, typer.Option("--json", help="Print the full result as JSON.")] = False,
    ) -> None:
        """Score predictions against local annotations by the benchmark's official rules.

        Prints the headline metric, the other top-level metrics and the counts of missing, extra and empty predictions. Malformed lines, duplicate answers and annotation files of another benchmark are errors; nothing is downloaded.
        """
        from deco.eval.score import score, summarize

        result = score(benchmark, preds, data, out_path=out, missing=missing)
        typer.echo(json.dumps(result, indent=2) if as_json else summarize(result))
