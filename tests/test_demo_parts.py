"""The demo's parts: settings, scenes, question answers, vocabulary, the tiny ViT tower, the cache."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from deco.demo.images.questions import FAMILIES, answer_word, ask, caption, conversation_questions
from deco.demo.images.scenes import COLUMNS, ROWS, SHAPES, SIZES, patch_owners, render, sample_scene
from deco.demo.kinds import default_settings, load_settings, settings_from_dict
from deco.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def scenes(n: int, seed: int = 0, lo: int = 1, hi: int = 4):
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, 48, lo, hi) for _ in range(n)]


def test_config_file_spells_out_the_built_in_settings():
    assert load_settings(ROOT / "configs" / "demo.yaml") == load_settings(None)


def test_profiles_and_bad_settings():
    quick = load_settings(None, ("quick",))
    assert quick.projectors == ["deco", "qformer"] and quick.train.stage2_steps < default_settings().train.stage2_steps
    assert load_settings(None, ("paper_geometry",)).grid == 24
    data = default_settings().to_dict()
    data["tokens"] = "13x13"
    with pytest.raises(ConfigError, match="exceed"):
        settings_from_dict(data)
    data = default_settings().to_dict()
    data["scenes"]["bogus"] = 1
    with pytest.raises(ConfigError, match="scenes.bogus"):
        settings_from_dict(data)
    with pytest.raises(ConfigError, match="no profile"):
        load_settings(None, ("fast",))
    data = default_settings().to_dict()
    data["scenes"]["families"] = ["cell", "colour-of"]
    with pytest.raises(ConfigError, match="scenes.families"):
        settings_from_dict(data)


def test_families_setting_chooses_what_is_trained_and_tested(tmp_path):
    from deco.demo.core.settings import SceneSettings
    from deco.demo.images.dataset import write_dataset

    families = ["cell", "relation"]
    write_dataset(tmp_path, SceneSettings(train_images=30, test_images=10, validation_images=4, families=families))
    test = json.loads((tmp_path / "test.json").read_text())
    assert {r["family"] for r in test} == set(families)
    stage2 = json.loads((tmp_path / "stage2.json").read_text())
    asked = [t["value"].removeprefix("<image>\n") for r in stage2 for t in r["conversations"][::2]]
    assert {q.split()[0] for q in asked} <= {"cell", "is", "describe"}  # "is red left of blue"


def test_scene_objects_have_distinct_cells_and_colours_and_stay_in_their_cell():
    for scene in scenes(200):
        cells = [(o.row, o.col) for o in scene.objects]
        assert len(set(cells)) == len(cells) and 1 <= len(cells) <= 4
        assert len({o.colour for o in scene.objects}) == len(cells)
        for o in scene.objects:
            assert o.col * 16 <= o.cx - o.radius and o.cx + o.radius <= (o.col + 1) * 16
            assert o.row * 16 <= o.cy - o.radius and o.cy + o.radius <= (o.row + 1) * 16


def test_render_puts_each_colour_where_the_scene_says():
    from deco.demo.images.scenes import COLOURS

    for scene in scenes(20):
        pixels = np.asarray(render(scene), dtype=np.int32)  # [48, 48, 3]
        assert pixels.shape == (48, 48, 3)
        for o in scene.objects:
            centre = pixels[int(o.cy), int(o.cx)]
            assert np.abs(centre - np.asarray(COLOURS[o.colour])).max() < 40, (o, centre)
        owners = patch_owners(scene, 4)
        assert owners.shape == (12, 12)
        for i, o in enumerate(scene.objects):
            assert owners[int(o.cy) // 4, int(o.cx) // 4] == i


def test_answers_match_the_scene():
    rng = np.random.default_rng(1)
    counts: dict[str, Counter] = {f: Counter() for f in FAMILIES}
    for scene in scenes(400, seed=2, lo=2, hi=4):
        by_colour = {o.colour: o for o in scene.objects}
        for family in FAMILIES:
            qa = ask(family, scene, rng)
            if qa is None:
                continue
            q, full = qa
            words = q.split()
            # The answer restates the question's referent, then the answer word.
            if family == "relation":  # "red left blue center yes": both positions on the asked axis, then yes/no
                first, second = by_colour[words[1]], by_colour[words[-1]]
                names, axis = (COLUMNS, "col") if words[2] == "left" else (ROWS, "row")
                assert full.rsplit(" ", 1)[0] == (f"{first.colour} {names[getattr(first, axis)]} "
                                                  f"{second.colour} {names[getattr(second, axis)]}")
            else:
                referent = {"count": words[-1], "smallest": "smallest",
                            "exists": f"{words[-2]} {by_colour[words[-2]].shape if words[-2] in by_colour else 'none'}",
                            }.get(family, words[-1])
                assert full.startswith(referent + " ") and answer_word(full) == full[len(referent) + 1:]
            a = answer_word(full)
            counts[family][a] += 1
            if family == "column":
                assert a == COLUMNS[by_colour[words[-1]].col]
            elif family == "row":
                assert a == ROWS[by_colour[words[-1]].row]
            elif family == "cell":
                assert a == by_colour[words[-1]].cell
            elif family == "attribute":
                assert a == getattr(by_colour[words[-1]], words[0])
            elif family == "count":
                assert a == str(sum(o.shape + "s" == words[-1] for o in scene.objects))
            elif family == "exists":
                assert (a == "yes") == any((o.colour, o.shape) == (words[-2], words[-1]) for o in scene.objects)
            elif family == "relation":
                first, second = by_colour[words[1]], by_colour[words[-1]]
                truth = {"left": first.col < second.col, "above": first.row < second.row}[words[2]]
                assert (a == "yes") == truth
            elif family == "smallest":
                sizes = list(SIZES)
                smallest = min(scene.objects, key=lambda o: sizes.index(o.size))
                assert a == smallest.colour
    for family in ("relation", "exists"):  # yes/no families are balanced
        assert 0.4 < counts[family]["yes"] / sum(counts[family].values()) < 0.6
    assert set(counts["attribute"]) == set(SHAPES) | set(SIZES)


def test_conversations_use_distinct_families_and_captions_name_cells():
    rng = np.random.default_rng(3)
    scene = scenes(1, seed=4, lo=3, hi=3)[0]
    picked = conversation_questions(scene, rng, 6)
    assert len(picked) == 6 and len({f for f, _ in picked}) == 6
    text = caption(scene)
    assert all(f"{o.colour} {o.shape} at {o.cell}" in text for o in scene.objects)


def test_dataset_files_are_llava_records_and_every_word_is_in_the_vocabulary(tmp_path):
    from deco.data import load_records
    from deco.demo.core.settings import SceneSettings
    from deco.demo.images.dataset import write_dataset
    from deco.demo.images.vocab import build_demo_tokenizer, check_covered

    summary = write_dataset(tmp_path, SceneSettings(train_images=40, test_images=10))
    assert summary["stage1.json"] == 40 and summary["stage2.json"] == 40
    tokenizer = build_demo_tokenizer(tmp_path / "tok")
    for name in ("stage1.json", "stage2.json", "test.json"):
        records = load_records(tmp_path / name)
        check_covered(tokenizer, [t for r in records for _, t in r.turns], name)
        assert all((tmp_path / "images" / r.images[0]).is_file() for r in records)
    test = json.loads((tmp_path / "test.json").read_text())
    assert {r["family"] for r in test} <= set(FAMILIES)
    assert all(r["image"].startswith("test/") for r in test)
    # Stage-2 turns: the image marker once, first; captions only ever as the last turn.
    for rec in json.loads((tmp_path / "stage2.json").read_text()):
        assert rec["conversations"][0]["value"].startswith("<image>\n")
        assert sum("<image>" in t["value"] for t in rec["conversations"]) == 1
        asks = [t["value"] for t in rec["conversations"][::2]]
        assert "describe the image" not in asks[:-1]


def test_tiny_vit_tower_saves_and_loads_through_the_generic_loader(tmp_path):
    from deco.model.tiny_vit import TinyViTConfig, TinyViTTower
    from deco.model.vision import load_vision_tower

    torch.manual_seed(0)
    tower = TinyViTTower(TinyViTConfig(image_size=24, patch_size=4, hidden_size=32, num_layers=2), feature_layer=-2)
    assert tower.grid == (6, 6) and tower.num_prefix_tokens == 0
    pixels = torch.randn(2, 3, 24, 24)
    tower.save(tmp_path)
    assert json.loads((tmp_path / "deco_vision.json").read_text())["arch"] == "tiny-vit"
    loaded = load_vision_tower(str(tmp_path), feature_layer=-2)
    assert type(loaded) is TinyViTTower and loaded.geometry() == tower.geometry()
    torch.testing.assert_close(loaded(pixels), tower(pixels))
    assert loaded(pixels).shape == (2, 36, 32)
    torch.testing.assert_close(tower(pixels), tower.model(pixels)[-2])
    with pytest.raises(ConfigError, match="feature_layer=3"):
        TinyViTTower.load(tmp_path, feature_layer=3)
    from deco.errors import ShapeError

    with pytest.raises(ShapeError, match="24, 24"):
        tower(torch.randn(1, 3, 32, 32))


def test_assets_are_cached_by_settings(tmp_path):
    from deco.demo.kinds import prepare_assets

    data = default_settings().to_dict()
    data["scenes"].update(train_images=24, test_images=6)
    data["scenes"].update(validation_images=4)
    data["encoder"].update(pretrain_steps=2, pretrain_images=16, batch_size=4)
    data["lm"].update(pretrain_steps=2, pretrain_batch_size=4, conversations_per_scene=1)
    settings = settings_from_dict(data)
    first = prepare_assets(settings, tmp_path)
    everything = ["dataset", "encoder", "language model"]
    assert first.built == everything
    assert (first.encoder_dir / "deco_vision.json").is_file() and (first.tokenizer_dir / "tokenizer.json").is_file()
    assert (first.lm_dir / "config.json").is_file() and "held_out_text_accuracy" in first.lm_report
    assert (first.data_dir / "val.json").is_file()
    again = prepare_assets(settings, tmp_path)
    assert again.built == [] and again.encoder_dir == first.encoder_dir and again.lm_dir == first.lm_dir
    assert prepare_assets(settings, tmp_path, rebuild=True).built == everything
    data["encoder"]["pretrain_steps"] = 3  # a new encoder, the same dataset and LM
    other = prepare_assets(settings_from_dict(data), tmp_path)
    assert other.built == ["encoder"] and other.data_dir == first.data_dir and other.lm_dir == first.lm_dir
    data["scenes"]["families"] = ["cell", "row"]  # new questions: new data and LM, the same encoder
    fewer = prepare_assets(settings_from_dict(data), tmp_path)
    assert fewer.built == ["dataset", "language model"] and fewer.encoder_dir == other.encoder_dir


def _fake_payload(acc: dict[str, dict[str, float]], seeds: int = 1) -> dict:
    from deco.demo.core.report import summarize

    runs = []
    for name, fams in acc.items():
        for seed in range(seeds):
            final = {"overall": sum(fams.values()) / len(fams), "spatial": fams["cell"], "localisation": fams["cell"],
                     "families": fams, "questions": 100}
            runs.append({"projector": name, "seed": seed, "final": final, "curve": [{"step": 5, **final}, {"step": 10, **final}],
                         "losses": {"stage1": [[1, 3.0]], "stage2": [[s, 2.0 - s / 10] for s in range(1, 11)]},
                         "times": {"stage1": {"train_seconds": 1.0}, "stage2": {"train_seconds": 2.0}},
                         "eval_seconds": 1.0, "job_cpu_seconds": 4.0, "visual_tokens": 36, "projector_params": 10})
    return {"projectors": summarize(runs, [5, 10]), "seeds": list(range(seeds)),
            "test_questions_per_family": {"cell": 150, "count": 150},
            "majority_baseline": {"cell": 0.2, "count": 0.6}}


def test_notes_judge_orderings_against_noise_and_name_unlearned_families():
    from deco.demo.core.notes import observations

    notes = observations(_fake_payload({"mlp": {"cell": 0.70, "count": 0.6}, "deco": {"cell": 0.72, "count": 0.6},
                                        "qformer": {"cell": 0.20, "count": 0.6}}))
    text = " ".join(notes)
    assert "MLP ≥ DeCo holds" in text and "DeCo > Q-Former holds" in text and "larger than noise" in text
    assert "majority answer (by more than noise) on: count." in text
    notes = observations(_fake_payload({"mlp": {"cell": 0.30, "count": 0.6}, "deco": {"cell": 0.60, "count": 0.6},
                                        "qformer": {"cell": 0.62, "count": 0.6}}))
    text = " ".join(notes)
    assert "MLP ≥ DeCo does NOT hold" in text and "DeCo > Q-Former does NOT hold" in text
    assert "One seed" in text


def test_summary_reports_mean_and_spread_over_seeds():
    from deco.demo.core.report import loss_at

    payload = _fake_payload({"mlp": {"cell": 0.5, "count": 0.5}}, seeds=3)
    stats = payload["projectors"]["mlp"]["final"]["overall"]
    assert stats["mean"] == pytest.approx(0.5) and stats["std"] == 0.0 and len(stats["values"]) == 3
    assert loss_at([[s, float(s)] for s in range(1, 21)], 10) == pytest.approx(5.5)
    assert loss_at([[1, 1.0]], 10) is None


def test_cold_assets_build_the_encoder_alongside_the_dataset_and_lm_with_the_same_result(tmp_path):
    """On a cold cache the encoder trains in a second process while the dataset and LM are built here; the
    assets equal those built one after another, and each step's count reaches the caller."""
    from safetensors.torch import load_file

    from deco.demo.kinds import prepare_assets

    data = default_settings().to_dict()
    data["scenes"].update(train_images=24, test_images=6, validation_images=4)
    data["encoder"].update(pretrain_steps=3, pretrain_images=16, batch_size=4)
    data["lm"].update(pretrain_steps=2, pretrain_batch_size=4, conversations_per_scene=1)
    settings = settings_from_dict(data)
    said, steps = [], []
    together = prepare_assets(settings, tmp_path / "parallel", status=said.append,
                              progress=lambda d, t: steps.append(("encoder", d, t)),
                              lm_progress=lambda d, t: steps.append(("lm", d, t)))
    assert any("second process" in m for m in said)
    assert ("encoder", 3, 3) in steps and ("lm", 2, 2) in steps
    apart = prepare_assets(settings, tmp_path / "sequential", parallel=False)
    assert together.built == apart.built == ["dataset", "encoder", "language model"]
    for a, b in ((together.encoder_dir, apart.encoder_dir), (together.lm_dir, apart.lm_dir)):
        assert a.name == b.name
        for weights in a.glob("*.safetensors"):
            left, right = load_file(weights), load_file(b / weights.name)
            assert all(left[k].equal(right[k]) for k in left)
    timeless = [{k: v for k, v in r.items() if "second" not in k} for r in (together.encoder_report, apart.encoder_report)]
    assert timeless[0] == timeless[1]
