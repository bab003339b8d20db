"""Write the sample to a folder: images/, train.json (LLaVA format), gqa/ and pope/ question files.

Layout (names as the benchmarks publish them, so `deco eval` reads them with its normal readers):
  DIR/images/s01.jpg ...                          64x64 JPEG scenes
  DIR/train.json                                  captions and short questions, LLaVA conversation format
  DIR/gqa/testdev_balanced_questions.json         GQA layout: question id -> {imageId, question, answer, types}
  DIR/pope/coco_pope_random.json                  POPE layout: one {question_id, image, text, label} per line
Questions are about the same eight images the training file covers: it shows the pipeline, not generalisation.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

from deco.sample.scenes import COLOURS, SCENES, SHAPES, Scene

SIZE = 64
BACKGROUND = (235, 235, 225)


def draw_scene(scene: Scene) -> Image.Image:
    """Render one scene: the shape fills most of its half of the image."""
    image = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    draw = ImageDraw.Draw(image)
    x0 = 4 if scene.side == "left" else SIZE // 2 + 2
    box = (x0, 18, x0 + 26, 44)
    fill = COLOURS[scene.colour]
    if scene.shape == "circle":
        draw.ellipse(box, fill=fill)
    elif scene.shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) // 2, box[1])], fill=fill)
    return image


def training_records(scenes: tuple[Scene, ...] = SCENES) -> list[dict]:
    """LLaVA-format records: per scene a caption, a colour and a shape question, and one text-only turn."""
    records = []
    for s in scenes:
        image = f"{s.name}.jpg"
        for kind, question, answer in (
            ("caption", "Describe the image briefly.", s.caption()),
            ("colour", "What colour is the shape?", s.colour),
            ("shape", "What shape is it?", s.shape),
        ):
            records.append({"id": f"{s.name}-{kind}", "image": image, "conversations": [
                {"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]})
    records.append({"id": "text-0", "conversations": [
        {"from": "human", "value": "Name three colours."}, {"from": "gpt", "value": "red, green and blue"}]})
    return records


def gqa_questions(scenes: tuple[Scene, ...] = SCENES) -> dict[str, dict]:
    """GQA-style questions (one word answers), keyed by question id as in testdev_balanced_questions.json."""
    questions = {}
    for s in scenes:
        questions[f"{s.name}c"] = {"imageId": s.name, "question": "What colour is the shape?", "answer": s.colour,
                                   "types": {"structural": "query", "semantic": "attr"}}
        questions[f"{s.name}s"] = {"imageId": s.name, "question": "What shape is it?", "answer": s.shape,
                                   "types": {"structural": "query", "semantic": "obj"}}
    return questions


def pope_rows(scenes: tuple[Scene, ...] = SCENES) -> list[dict]:
    """POPE-style yes/no object questions: the scene's shape (yes) and the next shape in the list (no)."""
    rows = []
    for s in scenes:
        absent = SHAPES[(SHAPES.index(s.shape) + 1) % len(SHAPES)]
        for shape, label in ((s.shape, "yes"), (absent, "no")):
            rows.append({"question_id": len(rows) + 1, "image": f"{s.name}.jpg",
                         "text": f"Is there a {shape} in the image?", "label": label})
    return rows


def write_sample(root: str | Path) -> dict[str, Path]:
    """Write the sample under root (created if needed; existing sample files are overwritten); returns the paths."""
    root = Path(root)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    for scene in SCENES:
        draw_scene(scene).save(images / f"{scene.name}.jpg", quality=90)
    train = root / "train.json"
    train.write_text(json.dumps(training_records(), indent=1) + "\n", encoding="utf-8")
    gqa = root / "gqa" / "testdev_balanced_questions.json"
    gqa.parent.mkdir(exist_ok=True)
    gqa.write_text(json.dumps(gqa_questions(), indent=1) + "\n", encoding="utf-8")
    pope = root / "pope" / "coco_pope_random.json"
    pope.parent.mkdir(exist_ok=True)
    pope.write_text("".join(json.dumps(r) + "\n" for r in pope_rows()), encoding="utf-8")
    return {"images": images, "train": train, "gqa": gqa, "pope": pope}
