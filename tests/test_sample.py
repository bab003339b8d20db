"""`deco sample`: the bundled sample is written, and deco's own readers accept every file of it."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from deco.cli import app
from deco.eval.gqa import load_gqa
from deco.eval.pope import load_pope
from deco.sample import SCENES, write_sample
from deco.sample.writer import draw_scene

runner = CliRunner()


def test_sample_command_writes_every_file(tmp_path):
    result = runner.invoke(app, ["sample", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert f"wrote {len(SCENES)} images" in result.output
    root = tmp_path / "s"
    assert sorted(p.name for p in (root / "images").iterdir()) == [f"{s.name}.jpg" for s in SCENES]
    assert (root / "train.json").is_file() and (root / "gqa" / "testdev_balanced_questions.json").is_file()
    assert (root / "pope" / "coco_pope_random.json").is_file()
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < 40_000  # tiny: fits in git and a wheel


def test_benchmark_readers_accept_the_question_files(tmp_path):
    paths = write_sample(tmp_path)
    gqa = load_gqa(paths["gqa"])
    pope = load_pope(tmp_path / "pope")
    assert len(gqa) == 2 * len(SCENES) and len(pope) == 2 * len(SCENES)
    by_id = {s.qid: s for s in gqa}
    assert by_id["s01c"].answers == ("red",) and by_id["s01c"].image == "s01.jpg"
    assert sorted(s.answers[0] for s in pope).count("yes") == len(SCENES)
    for sample in [*gqa, *pope]:
        assert (paths["images"] / sample.image).is_file()


def test_training_file_is_llava_format_with_existing_images(tmp_path):
    paths = write_sample(tmp_path)
    records = json.loads(paths["train"].read_text())
    assert len({r["id"] for r in records}) == len(records)
    for r in records:
        turns = r["conversations"]
        assert [t["from"] for t in turns] == ["human", "gpt"]
        if "image" in r:
            assert turns[0]["value"].startswith("<image>\n") and (paths["images"] / r["image"]).is_file()
    assert any("image" not in r for r in records)  # a text-only sample, as in LLaVA's stage-2 mix


def test_drawn_shape_sits_on_the_named_side():
    for scene in SCENES:
        image = draw_scene(scene).convert("L")
        width, height = image.size
        left = sum(image.getpixel((x, height // 2)) < 200 for x in range(width // 2))
        right = sum(image.getpixel((x, height // 2)) < 200 for x in range(width // 2, width))
        assert (left > right) == (scene.side == "left"), scene
