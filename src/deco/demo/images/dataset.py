"""Writes the demo's data to disk like real data: PNG images and LLaVA-format JSON files.

    images/train/NNNNNN.png, images/test/NNNNNN.png
    stage1.json   one caption conversation per training image (template `plain`)
    stage2.json   one conversation per training image: several questions of distinct families, and
                  in some, a closing caption turn (template `vicuna_v1`)
    val.json      like test.json, on validation images (the learning-rate sweep chooses on these)
    test.json     one single-turn question per (test image, family), with an extra "family" key

Each split is drawn from its own random stream, so test and validation scenes are never trained on.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from deco.demo.core.settings import SceneSettings
from deco.demo.images.questions import DESCRIBE, answer_word, ask, caption, conversation_questions
from deco.demo.images.scenes import Scene, render, sample_scene
from deco.model.tokens import IMAGE_TOKEN

T = TypeVar("T")  # a scene or a video

TRAIN, VAL, TEST = "train", "val", "test"
_STREAMS = {TRAIN: 0, TEST: 1, VAL: 4}
_QUESTION_STREAMS = {TEST: 3, VAL: 5}


def split_scenes(settings: SceneSettings, split: str) -> list[Scene]:
    """The scenes of a split, regenerated deterministically from the data seed."""
    rng = np.random.default_rng([settings.seed, _STREAMS[split]])
    n = {TRAIN: settings.train_images, VAL: settings.validation_images, TEST: settings.test_images}[split]
    return [sample_scene(rng, settings.image_size, settings.min_objects, settings.max_objects) for _ in range(n)]


def turn(role: str, value: str) -> dict[str, str]:
    """One LLaVA conversation turn."""
    return {"from": role, "value": value}


def _image_path(split: str, index: int) -> str:
    return f"{split}/{index:06d}.png"


def caption_record(index: int, image: str, caption_text: str, describe: str = DESCRIBE) -> dict[str, Any]:
    """A stage-1 record: the `plain` template keeps only the image and the caption."""
    return {"id": f"cap-{index:06d}", "image": image,
            "conversations": [turn("human", f"{IMAGE_TOKEN}\n{describe}"), turn("gpt", caption_text)]}


def qa_record(index: int, image: str, pairs: list[tuple[str, tuple[str, str]]], rng: np.random.Generator,
              caption_fraction: float, caption_text: str, describe: str = DESCRIBE) -> dict[str, Any]:
    """A stage-2 record: the question turns, then (for `caption_fraction` of records) a caption turn.

    The caption comes last so no question can be answered by copying an earlier caption. Shared with
    the video demo, whose records differ only in what the questions are about.
    """
    turns = []
    for _family, (question, answer) in pairs:
        turns += [turn("human", question), turn("gpt", answer)]
    if rng.random() < caption_fraction:
        turns += [turn("human", describe), turn("gpt", caption_text)]
    turns[0]["value"] = f"{IMAGE_TOKEN}\n{turns[0]['value']}"
    return {"id": f"qa-{index:06d}", "image": image, "conversations": turns}


def stage1_records(scenes: list[Scene]) -> list[dict[str, Any]]:
    """Caption records (stage 1)."""
    return [caption_record(i, _image_path(TRAIN, i), caption(s)) for i, s in enumerate(scenes)]


def stage2_records(scenes: list[Scene], settings: SceneSettings) -> list[dict[str, Any]]:
    """Multi-turn question records (stage 2); a caption turn closes `caption_fraction` of them."""
    rng = np.random.default_rng([settings.seed, 2])
    records = []
    for i, scene in enumerate(scenes):
        pairs = conversation_questions(scene, rng, settings.questions_per_image, settings.families)
        records.append(qa_record(i, _image_path(TRAIN, i), pairs, rng, settings.caption_fraction, caption(scene)))
    return records


def test_records(scenes: list[Scene], settings: SceneSettings, split: str = TEST) -> list[dict[str, Any]]:
    """One question per (image, family) of a held-out split (test or validation) where the scene can pose it."""
    return one_question_per_family(scenes, settings.families, ask, lambda i: _image_path(split, i),
                                   np.random.default_rng([settings.seed, _QUESTION_STREAMS[split]]))


def one_question_per_family(
    items: Sequence[T],
    families: Sequence[str],
    ask_one: Callable[[str, T, np.random.Generator], tuple[str, str] | None],
    path_of: Callable[[int], str],
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """Test records: for each item (scene or video) and family, the question it can pose, if any.

    Shared by the image and video demos; ids are `test-<index>-<family>` and each record names its family.
    """
    records = []
    for i, item in enumerate(items):
        for family in families:
            qa = ask_one(family, item, rng)
            if qa is None:
                continue
            records.append({
                "id": f"test-{i:06d}-{family}", "image": path_of(i), "family": family,
                "conversations": [turn("human", f"{IMAGE_TOKEN}\n{qa[0]}"), turn("gpt", qa[1])],
            })
    return records


def majority_baselines(records: list[dict[str, Any]]) -> dict[str, float]:
    """Per family, the accuracy of always giving that family's most common answer word (after restating the
    referent correctly, which copying from the question does: deco.demo.images.questions)."""
    by_family: dict[str, Counter] = {}
    for rec in records:
        by_family.setdefault(rec["family"], Counter())[answer_word(rec["conversations"][1]["value"])] += 1
    return {f: c.most_common(1)[0][1] / sum(c.values()) for f, c in by_family.items()}


def write_dataset(directory: str | Path, settings: SceneSettings) -> dict[str, Any]:
    """Render every image and write the three JSON files; returns a summary (counts, baselines)."""
    return write_splits(
        directory, lambda split: split_scenes(settings, split),
        lambda scene, path: render(scene).save(path, optimize=False, compress_level=1), _image_path,
        lambda split, scenes: ({"stage1.json": stage1_records(scenes), "stage2.json": stage2_records(scenes, settings)}
                               if split == TRAIN else {f"{split}.json": test_records(scenes, settings, split)}),
        splits=(TRAIN, VAL, TEST),
    )


def write_splits(
    directory: str | Path,
    items_of: Callable[[str], Sequence[T]],
    save: Callable[[T, Path], object],
    path_of: Callable[[str, int], str],
    records_of: Callable[[str, Sequence[T]], dict[str, list[dict[str, Any]]]],
    splits: Sequence[str] = (TRAIN, TEST),
) -> dict[str, Any]:
    """Per split (train, test): save every item (scene or video) under images/, write its JSON files;
    returns the record counts, the test questions per family and the majority baselines.
    Shared by the image and video demos."""
    directory = Path(directory)
    summary: dict[str, Any] = {}
    for split in splits:
        (directory / "images" / split).mkdir(parents=True, exist_ok=True)
        items = items_of(split)
        for i, item in enumerate(items):
            save(item, directory / "images" / path_of(split, i))
        for name, records in records_of(split, items).items():
            (directory / name).write_text(json.dumps(records, indent=0), encoding="utf-8")
            summary[name] = len(records)
    test = json.loads((directory / "test.json").read_text(encoding="utf-8"))
    summary["test_per_family"] = dict(Counter(r["family"] for r in test))
    summary["majority_baseline"] = majority_baselines(test)
    return summary
