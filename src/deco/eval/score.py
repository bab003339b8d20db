"""`score()`: read predictions and a benchmark's annotations, pair them, score by the official rules.

Benchmarks are looked up by exact name (no substring matching). Each entry names its reader, its
scorer, the headline metric, and optional hooks: alternative keys for other id schemes (LLaVA's
files), a `prepare` step that may reshape the questions after seeing the predictions (MMBench rounds),
and a `scope` step that drops question subsets nobody asked (ScienceQA text-only, SEED video).

A test split without answers (VQAv2 test-dev, TextVQA test, VizWiz test, MMBench test) is not scored: the
predictions are paired with its questions as usual and written as the server's submission file
(`deco.eval.submission`); the result says `scored: false` and where the file is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deco.eval import gqa, mmbench, mme, pope, scienceqa, seed, vqa
from deco.eval.annotations import Sample, has_answers
from deco.eval.match import Matching, answers_of, apply_missing_policy, match_predictions
from deco.eval.predictions import Prediction, read_predictions
from deco.eval.submission import default_submission_path, submission_pairs, write_submission
from deco.names import look_up


@dataclass(frozen=True)
class Benchmark:
    """How to read, pair and score one benchmark."""

    load: Callable[[str | Path], list[Sample]]
    score: Callable[[list[tuple[Sample, str | None]]], dict]
    main: str  # key in the metrics of the number the papers report
    alt_keys: Callable[[Prediction], Iterable[str]] | None = None
    prepare: Callable[[list[Sample], list[Prediction]], list[Sample]] | None = None
    scope: Callable[[list[Sample], set[str]], tuple[list[Sample], list[str]]] | None = None


BENCHMARKS: dict[str, Benchmark] = {
    "vqav2": Benchmark(vqa.load_vqav2, vqa.score_vqa, "accuracy"),
    "textvqa": Benchmark(vqa.load_textvqa, lambda pairs: vqa.score_vqa(pairs, textvqa=True), "accuracy",
                         alt_keys=vqa.textvqa_alt_keys),
    "vizwiz": Benchmark(vqa.load_vizwiz, vqa.score_vqa, "accuracy"),
    "gqa": Benchmark(gqa.load_gqa, gqa.score_gqa, "accuracy"),
    "pope": Benchmark(pope.load_pope, pope.score_pope, "f1_mean"),
    "mme": Benchmark(mme.load_mme, mme.score_mme, "perception", alt_keys=mme.mme_alt_keys),
    "mmbench": Benchmark(mmbench.load_mmbench, mmbench.score_mmbench, "circular_accuracy",
                         alt_keys=mmbench.mmbench_alt_keys, prepare=mmbench.expand_rounds),
    "scienceqa": Benchmark(scienceqa.load_scienceqa, scienceqa.score_scienceqa, "img_accuracy",
                           scope=scienceqa.scope_scienceqa),
    "seed": Benchmark(seed.load_seed, seed.score_seed, "image_accuracy", scope=seed.scope_seed),
}


def benchmark_names() -> list[str]:
    """Names accepted by `score` and `load_benchmark`."""
    return list(BENCHMARKS)


def get_benchmark(name: str) -> Benchmark:
    """Look up a benchmark by its exact name; an unknown name is a ConfigError with a suggestion."""
    return look_up(BENCHMARKS, name, "benchmark")


def load_benchmark(name: str, data_path: str | Path) -> list[Sample]:
    """Read a benchmark's local annotation files into Samples (ids, questions, images, choices, answers)."""
    return get_benchmark(name).load(data_path)


def score(
    benchmark: str,
    preds_path: str | Path,
    data_path: str | Path,
    out_path: str | Path | None = None,
    missing: str = "wrong",
    submission: str | Path | None = None,
) -> dict[str, Any]:
    """Score a prediction file against a benchmark's local annotations by the official rules.

    BENCHMARK is one of: vqav2, textvqa, vizwiz, gqa, pope, mme, mmbench, scienceqa, seed.
    PREDS is a JSONL file, one answer per line: deco's format ({"question_id" or "id", "answer", ...}) or a
    LLaVA answer file ({"question_id", "prompt", "text", ...}). DATA is the benchmark's annotation file
    or folder as published (see src/deco/eval/README.md for the exact file names), or the simplified
    JSONL form. Nothing is downloaded; a missing file is an error naming the file expected.

    Predictions for unknown question ids are counted as `extra` and ignored; two predictions for one
    question, or malformed lines, are errors. Questions without a prediction count as wrong
    (missing="wrong", the default), are left out (missing="skip"), or stop the run (missing="error");
    their number is always reported under `counts`. Empty answers are scored as wrong.

    Returns (and, with OUT, writes as JSON) {benchmark, scored, main: {metric, value}, metrics, counts, notes,
    warnings, ...}; percentages are x100, MME totals are in points.

    A test split without answers (vqav2, textvqa, vizwiz, mmbench) is not scored: the submission file for its
    evaluation server is written to SUBMISSION (default: beside PREDS, `<stem>.submission.json`, `.tsv` for
    MMBench) and the result has `scored: false`, `main: null` and `submission: {path, format, server, rows}`.
    A question without a prediction is then written with an empty answer (missing="wrong"), left out ("skip")
    or an error ("error").
    """
    bm = get_benchmark(benchmark)
    samples = bm.load(data_path)
    preds = read_predictions(preds_path)
    if not has_answers(samples):
        result = _submit(benchmark, samples, preds, preds_path, data_path, missing, submission)
        _write_json(result, out_path)
        return result
    if bm.prepare is not None:
        samples = bm.prepare(samples, preds)
    matching = match_predictions(samples, preds, preds_path, bm.alt_keys)
    notes: list[str] = []
    if bm.scope is not None:
        answered = {s.qid for s, p in matching.pairs if p is not None}
        kept, notes = bm.scope([s for s, _ in matching.pairs], answered)
        keep = {s.qid for s in kept}
        matching = Matching(pairs=[(s, p) for s, p in matching.pairs if s.qid in keep], extra=matching.extra)
    pairs, warnings = apply_missing_policy(matching, missing, preds_path)
    metrics = bm.score(answers_of(pairs))
    warnings += metrics.pop("warnings", [])
    if submission is not None:
        notes.append(f"the split has answers, so it is scored here; no submission file written to {submission}")
    result = _rounded({
        "benchmark": benchmark,
        "scored": True,
        "main": {"metric": bm.main, "value": metrics[bm.main]},
        "metrics": metrics,
        "counts": {
            "questions": len(matching.pairs), "scored": len(pairs), "predictions": len(preds),
            "matched": len(matching.pairs) - len(matching.missing), "missing": len(matching.missing),
            "extra": len(matching.extra), "empty": len(matching.empty),
        },
        "missing_policy": missing,
        "files": {"predictions": str(preds_path), "annotations": str(data_path)},
        "notes": notes,
        "warnings": warnings,
    })
    _write_json(result, out_path)
    return result


def _submit(benchmark: str, samples: list[Sample], preds: list[Prediction], preds_path: str | Path,
            data_path: str | Path, missing: str, submission: str | Path | None) -> dict[str, Any]:
    """A split without answers: pair predictions with its questions and write the server's submission file."""
    bm = get_benchmark(benchmark)
    notes = [f"not scored: the {benchmark} questions in {data_path} have no answers (a test split); "
             "the server scores the submission file"]
    first_round = [p for p in preds if not p.record.get("round_id")]
    if len(first_round) < len(preds):  # LLaVA's MMBench --all-rounds: later rounds' letters refer to rotated options
        notes.append(f"{len(preds) - len(first_round)} predictions of rotated rounds (round_id > 0) left out; "
                     "the table takes round 0")
        preds = first_round
    matching = match_predictions(samples, preds, preds_path, bm.alt_keys)
    pairs, warnings = submission_pairs(matching, missing, preds_path)
    path = submission if submission is not None else default_submission_path(benchmark, preds_path)
    written = write_submission(benchmark, pairs, path)
    return {
        "benchmark": benchmark, "scored": False, "main": None, "metrics": {},
        "counts": {
            "questions": len(matching.pairs), "scored": 0, "predictions": len(preds),
            "matched": len(matching.pairs) - len(matching.missing), "missing": len(matching.missing),
            "extra": len(matching.extra), "empty": len(matching.empty),
        },
        "missing_policy": missing,
        "files": {"predictions": str(preds_path), "annotations": str(data_path), "submission": written["path"]},
        "submission": written,
        "notes": notes,
        "warnings": warnings,
    }


def _write_json(result: dict[str, Any], out_path: str | Path | None) -> None:
    if out_path is not None:
        out = Path(out_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def summarize(result: dict[str, Any]) -> str:
    """A few human-readable lines for a `score` result: the headline, top-level metrics, counts, warnings."""
    main = result["main"]
    c = result["counts"]
    if main is None:  # a test split: the submission file instead of a score
        sub = result["submission"]
        lines = [f"{result['benchmark']}: not scored (the split has no answers)",
                 f"  submission for {sub['server']}: {sub['path']} ({sub['rows']} rows, {sub['format']})",
                 f"  {c['matched']} of {c['questions']} questions answered; {c['extra']} extra, "
                 f"{c['empty']} empty predictions"]
        lines += [f"  note: {n}" for n in result["notes"][1:]] + [f"  warning: {w}" for w in result["warnings"]]
        return "\n".join(lines)
    lines = [f"{result['benchmark']}: {main['metric']} = {main['value']:.2f}"]
    flat = {k: v for k, v in result["metrics"].items() if isinstance(v, (int, float)) and k != main["metric"]}
    if flat:
        lines.append("  " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in flat.items()))
    lines.append(f"  {c['scored']} scored of {c['questions']} questions; {c['missing']} missing, "
                 f"{c['extra']} extra, {c['empty']} empty predictions")
    lines += [f"  note: {n}" for n in result["notes"]] + [f"  warning: {w}" for w in result["warnings"]]
    return "\n".join(lines)


def _rounded(value: Any, digits: int = 4) -> Any:
    """Round every float (display precision; per-question scores are exact before this)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return value
