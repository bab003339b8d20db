"""`deco score` and `deco eval`: commands over `deco.eval.score` and `deco.eval.runner` (registered by
deco.cli through `register`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from deco.reducers.registry import REDUCE_HELP

_BENCHMARKS = "vqav2, textvqa, vizwiz, gqa, pope, mme, mmbench, scienceqa, seed"
_SUBMISSION_HELP = ("Test splits without answers (vqav2, textvqa, vizwiz, mmbench): write the server's submission "
                    "file here (default: beside the predictions, NAME.submission.json; .tsv or .xlsx for mmbench).")

_REDUCE_HELP = REDUCE_HELP.replace("Default: none.", "Default: eval.reduce, none.")


def register(app: typer.Typer) -> None:
    """Add the `score` and `eval` commands to the deco app."""

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
        submission: Annotated[Path | None, typer.Option(help=_SUBMISSION_HELP)] = None,
    ) -> None:
        """Score predictions against local annotations by the benchmark's official rules.

        Prints the headline metric, the other top-level metrics and the counts of missing, extra and empty predictions. Malformed lines, duplicate answers and annotation files of another benchmark are errors; nothing is downloaded. A test split without answers (VQAv2 test-dev, TextVQA/VizWiz/MMBench test) is not scored: its submission file for the evaluation server is written instead.
        """
        from deco.eval.score import score, summarize

        result = score(benchmark, preds, data, out_path=out, missing=missing, submission=submission)
        typer.echo(json.dumps(result, indent=2) if as_json else summarize(result))

    @app.command("eval")
    def eval_command(
        model: Annotated[Path, typer.Option(help="A saved model folder, or a training run directory holding final/.")],
        out: Annotated[Path, typer.Option(help="Prediction JSONL; an existing file of the same run is resumed.")],
        benchmark: Annotated[str | None, typer.Option(help=f"Benchmark name, exactly one of: {_BENCHMARKS}.")] = None,
        data: Annotated[Path | None, typer.Option(help="Annotation file or folder (names in src/deco/eval/README.md), "
                                                       "or simplified JSONL.")] = None,
        images: Annotated[Path | None, typer.Option(help="Folder the annotations' image paths are relative to "
                                                         "(not needed for MMBench's TSV).")] = None,
        batch_size: Annotated[int | None, typer.Option(help="Questions per generation batch (default: eval.batch_size, 8).")] = None,
        max_new_tokens: Annotated[int | None, typer.Option(help="Longest answer in tokens (default: eval.max_new_tokens, 128).")] = None,
        limit: Annotated[int | None, typer.Option(help="Only the first N questions (scored without the rest).")] = None,
        template: Annotated[str | None, typer.Option(help="Conversation template: plain, vicuna_v1, chatml "
                                                          "(default: the run's eval.template, else vicuna_v1).")] = None,
        config: Annotated[Path | None, typer.Option(help="YAML config whose eval section gives the defaults "
                                                         "(default: RUN/config.yaml when --model is a run).")] = None,
        device: Annotated[str, typer.Option(help="auto (CUDA if available), cpu, cuda, cuda:1, ...")] = "auto",
        ocr: Annotated[bool | None, typer.Option(help="TextVQA: add the 'Reference OCR token:' line from the "
                                                      "annotations' OCR tokens, as LLaVA-1.5 reports its numbers "
                                                      "(default: eval.ocr, on).")] = None,
        submission: Annotated[Path | None, typer.Option(help=_SUBMISSION_HELP)] = None,
        allow_pickle: Annotated[bool, typer.Option("--allow-pickle", help="Allow pickle (.bin/.pt) weights in the "
                                                   "model folder. Only for files you trust.")] = False,
        reduce: Annotated[str | None, typer.Option(help=_REDUCE_HELP)] = None,
    ) -> None:
        """Answer a benchmark's questions with greedy decoding, write one JSON line each, then score.

        Prompts are LLaVA-1.5's for each benchmark. Lines are flushed per batch; rerunning with the same --out resumes without redoing answered questions (a line cut off by a crash is dropped). A prediction file of another benchmark, model, template or --max-new-tokens is an error, as are missing annotation or image files. A test split without answers (VQAv2 test-dev, TextVQA/VizWiz/MMBench test) is answered the same way, then written as the evaluation server's submission file instead of scored; a file mixing questions with and without answers is an error.
        """
        from deco.config import EvalSection, load_config
        from deco.errors import ConfigError

        from_config = load_config(config).eval if config else None  # checked before torch loads (seconds)
        from deco.eval.runner import EvalSettings, resolve_model_dir, run_eval, run_eval_defaults
        from deco.eval.score import summarize

        defaults = from_config or run_eval_defaults(model) or EvalSection()
        bench = benchmark or defaults.benchmark
        annotations = data or (Path(defaults.data) if defaults.data else None)
        if bench is None or annotations is None:
            raise ConfigError("deco eval needs --benchmark and --data (or a config whose eval section sets them)")
        image_dir = images or (Path(defaults.images) if defaults.images else None)
        settings = EvalSettings(
            benchmark=bench, data=annotations, out=out, images=image_dir,
            batch_size=batch_size or defaults.batch_size, max_new_tokens=max_new_tokens or defaults.max_new_tokens,
            template=template or defaults.template, limit=limit, ocr=defaults.ocr if ocr is None else ocr,
            submission=submission or (Path(defaults.submission) if defaults.submission else None),
            reduce=reduce or defaults.reduce,
        )
        summary = run_eval(resolve_model_dir(model), settings, device=device, log=typer.echo,
                           allow_pickle=allow_pickle)
        rate = summary["questions_per_second"]
        typer.echo(f"{summary['answered_now']} answered in {summary['seconds']:.1f} s"
                   + (f" ({rate:.2f} questions/s, {summary['tokens_per_second']:.1f} tokens/s)" if rate else "")
                   + f" on {summary['device']}; predictions in {summary['predictions']}")
        for note in summary["notes"]:
            typer.echo(f"note: {note}")
        if summary["score"] is not None:
            typer.echo(summarize(summary["score"]))
        else:
            typer.echo(f"not scored: {summary['score_error']}")
