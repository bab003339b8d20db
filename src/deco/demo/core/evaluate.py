"""Held-out evaluation: greedy answers from `DecoModel.generate`, exact match per question family.

Each test question is asked on its own, as the first turn of a `vicuna_v1` conversation with its
image or video (the prompt `render_prompt` builds, which is the prefix the model was trained on).
Both scene kinds are scored here; each kind names its families and the groups reported beside them
(deco.demo.core.kind.SceneKind).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from deco.data import load_image, render_prompt
from deco.model import DecoModel
from deco.model.tokens import IMAGE_TOKEN

if TYPE_CHECKING:
    from deco.demo.core.kind import SceneKind

TEMPLATE = "vicuna_v1"


def load_test(path: str | Path, max_images: int | None = None) -> list[dict[str, Any]]:
    """Test questions as {id, image, family, question, answer}; optionally only the first images."""
    out, images = [], []
    for rec in json.loads(Path(path).read_text(encoding="utf-8")):
        if rec["image"] not in images:
            if max_images is not None and len(images) == max_images:
                break
            images.append(rec["image"])
        question = rec["conversations"][0]["value"].replace(IMAGE_TOKEN, "").strip()
        out.append({"id": rec["id"], "image": rec["image"], "family": rec["family"], "question": question,
                    "answer": rec["conversations"][1]["value"]})
    return out


def normalize(text: str) -> str:
    """Lowercase, trim, drop a trailing period (GQA's rule for short answers)."""
    return text.strip().lower().rstrip(".").strip()


@torch.no_grad()
def answer_all(
    model: DecoModel,
    questions: list[dict[str, Any]],
    image_folder: str | Path,
    batch_size: int = 64,
    max_new_tokens: int = 4,
    progress: Callable[[int], None] | None = None,
    videos: bool = False,
) -> list[str]:
    """Greedy answers to every question, in order, each asked alone as the first turn with its image
    (`videos`: its video, sampled to the model's frame count; the video demo)."""
    from deco.model.video import load_video

    model.eval()
    processor = model.processor()
    cache: dict[str, Any] = {}
    answers: list[str] = []
    for start in range(0, len(questions), batch_size):
        chunk = questions[start : start + batch_size]
        prompts = [render_prompt(TEMPLATE, q["question"], num_images=1) for q in chunk]
        visuals = []
        for q in chunk:
            if q["image"] not in cache:
                path = Path(image_folder) / q["image"]
                cache[q["image"]] = (load_video(path, processor.num_frames, processor.min_frames) if videos
                                     else load_image(path))
            visuals.append(cache[q["image"]])
        batch = processor(prompts, videos=visuals) if videos else processor(prompts, visuals)
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
        answers += [t.strip() for t in model.tokenizer.batch_decode(out, skip_special_tokens=True)]
        if progress is not None:
            progress(len(chunk))
    return answers


def score(questions: list[dict[str, Any]], answers: list[str], kind: SceneKind) -> dict[str, Any]:
    """Exact-match accuracy per family, overall (mean over questions) and per group of the kind's families
    (images: spatial and localisation; videos: none)."""
    families, groups = kind.families, kind.groups
    hits: dict[str, list[float]] = defaultdict(list)
    for q, a in zip(questions, answers, strict=True):
        hits[q["family"]].append(float(normalize(a) == normalize(q["answer"])))
    every = [h for v in hits.values() for h in v]
    grouped = {name: [h for f in members for h in hits.get(f, [])] for name, members in groups.items()}
    return {
        "overall": sum(every) / len(every) if every else 0.0,
        **{name: sum(v) / len(v) if v else 0.0 for name, v in grouped.items()},
        "families": {f: sum(v) / len(v) for f in families if (v := hits.get(f))},
        "questions": len(every),
        "counts": {f: len(v) for f, v in hits.items()},  # questions scored per family (the noise depends on it)
    }
