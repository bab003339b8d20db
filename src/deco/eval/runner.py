"""`deco eval`: ask a model every question of a benchmark in batches, append answers to a JSONL file, score.

Flow: annotations (`load_benchmark`) -> LLaVA's question text (`prompts.question_text`) -> images checked
before the model loads -> resume from the existing prediction file (`predfile`) -> batched greedy
generation (`generation.Generator`) -> one line per question, flushed per batch -> `score()`.

A test split without answers (VQAv2 test-dev, TextVQA test, VizWiz test, MMBench test) runs the same way;
`score()` then writes the server's submission file instead of a score (`deco.eval.submission`).
"""

from __future__ import annotations

import base64
import binascii
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from deco.config import EvalSection, load_config
from deco.data.images import load_image, to_rgb
from deco.errors import ConfigError, DataError, DecoError
from deco.eval.annotations import Sample, has_answers
from deco.eval.generation import Generator
from deco.eval.predfile import PredictionWriter, model_fingerprint, read_answered
from deco.eval.prompts import question_text
from deco.eval.score import get_benchmark, score
from deco.model.builder import CONFIG_FILE, load_model
from deco.model.multimodal import DecoModel
from deco.runlock import locked

RUN_CONFIG = "config.yaml"  # the resolved config every training run directory holds


@dataclass
class EvalSettings:
    """What to evaluate and how (the CLI's options; defaults as config.EvalSection)."""

    benchmark: str
    data: Path
    out: Path
    images: Path | None = None
    batch_size: int = 8
    max_new_tokens: int = 128
    template: str = "vicuna_v1"
    limit: int | None = None
    ocr: bool = True  # TextVQA: the "Reference OCR token:" line, as LLaVA-1.5 reports its numbers
    submission: Path | None = None  # test splits: where the submission file goes (default beside `out`)
    reduce: str | None = None  # a training-free token reducer, NAME:TOKENS (deco.reducers)

    def __post_init__(self) -> None:
        get_benchmark(self.benchmark)  # an unknown name fails here, with a suggestion
        from deco.reducers.registry import parse_reduce

        spec = parse_reduce(self.reduce)  # a bad --reduce fails before the model loads
        self.reduce = None if spec is None else str(spec)
        for name in ("batch_size", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be >= 1, got {self.limit}")


def resolve_model_dir(path: str | Path) -> Path:
    """A saved model folder as given, or the `final/` model inside a training run directory."""
    p = Path(path)
    if (p / CONFIG_FILE).is_file():
        return p
    if (p / "final" / CONFIG_FILE).is_file():
        return p / "final"
    if (p / RUN_CONFIG).is_file():
        raise ConfigError(f"--model {p} is a run directory without a finished model: {p / 'final'} is missing "
                          "or incomplete (training did not finish?)")
    raise ConfigError(f"--model {p}: not a saved deco model ({CONFIG_FILE} missing) nor a run directory "
                      "holding final/")


def run_eval_defaults(path: str | Path) -> EvalSection | None:
    """The `eval` section of the run config beside a model (RUN/config.yaml for RUN or RUN/final), if any."""
    p = Path(path)
    for candidate in (p / RUN_CONFIG, p.parent / RUN_CONFIG if p.name == "final" else None):
        if candidate is not None and candidate.is_file():
            return load_config(candidate).eval
    return None


def run_eval(
    model: DecoModel | str | Path,
    settings: EvalSettings,
    device: str | None = None,
    log: Callable[[str], None] = print,
    generate_kwargs: dict[str, Any] | None = None,
    allow_pickle: bool = False,
) -> dict[str, Any]:
    """Answer the benchmark's questions not yet in `settings.out`, append them, and score the file.

    `model` is a loaded DecoModel, a saved model folder, or a run directory with `final/`. Returns a
    summary: counts, timing, and the `score()` result (`scored: false` with the submission file for a test
    split without answers; `score_error` when the file cannot be scored). One writer per `--out`: a
    second run on the same file fails at once, naming the first (`OUT.lock`).
    """
    out = Path(settings.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with locked(out.with_name(out.name + ".lock"), f"--out {out}", "deco eval", say=log):
        return _run_eval(model, settings, device, log, generate_kwargs, allow_pickle)


def _run_eval(model: DecoModel | str | Path, s: EvalSettings, device: str | None, log: Callable[[str], None],
              generate_kwargs: dict[str, Any] | None, allow_pickle: bool) -> dict[str, Any]:
    all_samples = get_benchmark(s.benchmark).load(s.data)  # a file mixing answered and unanswered questions fails
    samples, notes = askable(s.benchmark, all_samples)
    if s.limit is not None:
        samples = samples[: s.limit]
    notes += prompt_notes(s.benchmark, samples, s.ocr)
    # bad questions fail before the model loads
    texts = {q.qid: question_text(s.benchmark, q, ocr=s.ocr) for q in samples}
    check_images(s.benchmark, samples, s.images)
    model_path = "<in-memory model>"
    if not isinstance(model, DecoModel):
        model_path = str(resolve_model_dir(model).resolve())
        model = load_model(model_path, allow_pickle=allow_pickle)
    run = {"benchmark": s.benchmark, "model_id": model_fingerprint(model.projector, model.config),
           "template": s.template, "max_new_tokens": s.max_new_tokens}
    if s.reduce is not None:
        from deco.reducers.apply import apply_reducer

        apply_reducer(model, s.reduce)
        run["reduce"] = s.reduce  # a file of another reducer (or none) must not be resumed
    if s.benchmark == "textvqa":
        run["ocr"] = s.ocr  # other prompts: a file of the other setting must not be resumed
    answered = read_answered(s.out, run, {q.qid for q in all_samples}, log)
    pending = [q for q in samples if q.qid not in answered]
    log(f"{s.benchmark}: {len(samples)} questions, {len(samples) - len(pending)} already in {s.out}, "
        f"{len(pending)} to answer")
    gen = Generator(model, s.template, device)
    timing = _answer(gen, pending, texts, s, {**run, "model": model_path}, log, generate_kwargs or {})
    summary: dict[str, Any] = {
        "benchmark": s.benchmark, "model": model_path, "model_id": run["model_id"], "template": s.template,
        "predictions": str(s.out), "questions": len(samples), "answered_before": len(samples) - len(pending),
        "answered_now": len(pending), "notes": notes, "device": str(gen.device), **timing,
        "reduce": s.reduce,
    }
    summary["has_answers"] = has_answers(all_samples)
    try:
        summary["score"] = score(s.benchmark, s.out, s.data, missing="skip" if s.limit else "wrong",
                                 submission=s.submission)
    except DecoError as exc:  # the predictions are still written
        summary["score"], summary["score_error"] = None, str(exc)
    if summary["score"] is not None and not summary["score"]["scored"]:
        summary["submission"] = summary["score"]["submission"]["path"]
    return summary


def prompt_notes(benchmark: str, samples: Sequence[Sample], ocr: bool) -> list[str]:
    """Say when TextVQA prompts differ from the ones LLaVA-1.5 reports (no OCR line)."""
    if benchmark != "textvqa":
        return []
    if not ocr:
        return ["TextVQA prompts without the 'Reference OCR token:' line (ocr off); LLaVA-1.5's 58.2 used it"]
    if samples and not any("ocr_tokens" in q.meta for q in samples):
        return ["TextVQA prompts without OCR tokens: the annotations carry none; put TextVQA_Rosetta_OCR_v0.2_val.json "
                "beside them for LLaVA-1.5's prompts"]
    return []


def _answer(gen: Generator, pending: Sequence[Sample], texts: dict[str, str], s: EvalSettings,
            run: dict[str, Any], log: Callable[[str], None], generate_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Generate in batches and append each batch to the prediction file; returns timing totals."""
    seconds, tokens, last_log = 0.0, 0, time.perf_counter()
    with PredictionWriter(s.out, run) as writer:
        for start in range(0, len(pending), s.batch_size):
            batch = pending[start : start + s.batch_size]
            t0 = time.perf_counter()
            images = [sample_images(s.benchmark, q, s.images) for q in batch]
            prompts = [gen.prompt(texts[q.qid], len(im)) for q, im in zip(batch, images, strict=True)]
            replies = gen.generate(prompts, images, s.max_new_tokens, **generate_kwargs)
            dt = time.perf_counter() - t0
            writer.write({"question_id": q.qid, "prompt": p, "answer": r.text, "tokens": r.tokens,
                          "seconds": dt / len(batch), "batch_seconds": dt, "batch_size": len(batch)}
                         for q, p, r in zip(batch, prompts, replies, strict=True))
            seconds += dt
            tokens += sum(r.tokens for r in replies)
            done = start + len(batch)
            if time.perf_counter() - last_log > 10 or done == len(pending):
                log(f"  {done}/{len(pending)} answered, {done / seconds:.2f} questions/s")
                last_log = time.perf_counter()
    return {"seconds": seconds, "generated_tokens": tokens,
            "questions_per_second": len(pending) / seconds if seconds else None,
            "tokens_per_second": tokens / seconds if seconds else None}


def askable(benchmark: str, samples: list[Sample]) -> tuple[list[Sample], list[str]]:
    """The questions a single-image model is asked; SEED video questions are left out (LLaVA-1.5's SEED-Image)."""
    if benchmark != "seed":
        return samples, []
    kept = [q for q in samples if q.meta.get("data_type", "image") == "image"]
    if len(kept) == len(samples):
        return kept, []
    return kept, [f"left out {len(samples) - len(kept)} SEED video questions (SEED-Image is what LLaVA-1.5 reports)"]


def check_images(benchmark: str, samples: Sequence[Sample], images: Path | None) -> None:
    """Every image file named by the questions exists, before any model time is spent."""
    named = [q for q in samples if q.image is not None]
    if not named:
        return
    if images is None:
        raise ConfigError(f"{benchmark}: the questions name image files (e.g. {named[0].image!r} for question "
                          f"{named[0].qid}); pass --images, the folder those paths are relative to")
    if not Path(images).is_dir():
        raise DataError(f"{benchmark}: image folder {images} does not exist")
    missing = [q for q in named if not (Path(images) / q.image).is_file()]
    if missing:
        q = missing[0]
        raise DataError(f"{benchmark}: image file for question {q.qid} not found: {Path(images) / q.image} "
                        f"({len(missing)} of {len(named)} questions' images are missing; is --images the folder "
                        "the annotation paths are relative to?)")


def sample_images(benchmark: str, sample: Sample, images: Path | None) -> list[Image.Image]:
    """The question's image as RGB (a file under `images`, or MMBench's base64 cell), or none."""
    if sample.image is not None:
        if images is None:
            raise ConfigError(f"{benchmark}: question {sample.qid} names image {sample.image!r}; pass --images")
        try:
            return [load_image(Path(images) / sample.image)]
        except DataError as exc:
            raise DataError(f"{benchmark}: question {sample.qid}: {exc}") from None
    encoded = sample.meta.get("image_base64")
    if encoded:
        return [image_from_base64(str(encoded), f"{benchmark}: question {sample.qid}")]
    return []


def image_from_base64(encoded: str, where: str) -> Image.Image:
    """Decode a base64 image cell (MMBench TSV) to RGB, with the same conversion as `load_image`."""
    try:
        raw = base64.b64decode(encoded, validate=False)
        with Image.open(io.BytesIO(raw)) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except (binascii.Error, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{where}: the embedded base64 image cannot be decoded ({type(exc).__name__}: {exc})") from None
