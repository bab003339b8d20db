"""The video kind of the demo: synthetic videos, their questions, the written data, its settings (one schema with
the image kind), equal budgets, an end-to-end run through the shared runner and report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deco.data import load_records
from deco.demo.core.settings import VideoSceneSettings
from deco.demo.images.scenes import BACKGROUND
from deco.demo.kinds import default_settings, load_settings, settings_from_dict
from deco.demo.video.questions import ask, caption, conversation_questions, vocabulary
from deco.demo.video.scenes import Track, Video, clock_colour, render_video, sample_video
from deco.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def constructed(clock: bool = True) -> Video:
    """A red circle slides right along the top row all video; a green square visits frames 2-3, still."""
    circle = Track("red", "circle", (0, 0), (0, 2), 0, 4)
    square = Track("green", "square", (2, 0), (2, 0), 2, 4)
    return Video((square, circle), 4, 36, clock)


def test_tracks_move_and_take_turns_under_a_clock():
    video = constructed()
    square, circle = video.tracks
    assert circle.direction == "right" and square.direction == "still"
    assert [o.cell for o in video.frame(0).objects] == ["top-left"]
    assert [o.cell for o in video.frame(3).objects] == ["bottom-left", "top-right"]
    assert video.cells(circle) == ["top-left", "top-center", "top-center", "top-right"]
    frames = render_video(video)
    assert frames.shape == (4, 36, 36, 3) and frames.dtype == np.uint8
    red = np.array([220, 50, 50])
    top_row = [np.abs(frames[t, :12].astype(int) - red).sum(-1).min(0).argmin() for t in (0, 3)]
    assert top_row[0] < 12 <= 24 <= top_row[1]  # red pixels move from the left cell to the right cell
    corner = [tuple(frames[t, 35, 18]) for t in range(4)]  # a background pixel: the clock
    assert corner[0] == BACKGROUND and corner[3] == clock_colour(3, 4) and corner[0] < corner[1] < corner[3]
    still = render_video(constructed(clock=False))
    assert all(tuple(still[t, 35, 18]) == BACKGROUND for t in range(4))


def test_questions_have_the_right_answers():
    video = constructed()
    rng = np.random.default_rng(0)
    assert ask("count", video, rng) == ("how many shapes", "2")
    asked = {f: {ask(f, video, np.random.default_rng(s)) for s in range(20)} for f in ("order", "start", "end")}
    assert asked["order"] == {("order red", "first"), ("order green", "second")}
    assert asked["start"] == {("start red", "top-left"), ("start green", "bottom-left")}
    assert asked["end"] == {("end red", "top-right"), ("end green", "bottom-left")}
    assert ask("direction", Video(video.tracks[1:], 4, 36), rng) == ("direction red", "right")
    assert ask("order", Video(video.tracks[1:], 4, 36), rng) is None  # a lone object: no order question
    # Objects in the order they come, each traced frame by frame.
    assert caption(video) == "red top-left top-center top-center top-right . green bottom-left bottom-left ."
    assert set(caption(video).split()) <= set(vocabulary())
    every = conversation_questions(video, rng, 20)  # 4 per object + the count
    assert len(every) == 9 and {f for f, _ in every} == {"direction", "start", "end", "order", "count"}
    assert all(q.split()[-1] in ("red", "green") for f, (q, _) in every if f != "count")  # referent last
    firsts = {conversation_questions(video, np.random.default_rng(s), 5)[0][0] for s in range(40)}
    assert firsts == {"direction", "start", "end", "order", "count"}  # no family owns the first turn


def test_sampled_videos_take_turns_with_equal_visits():
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(300):
        video = sample_video(rng, 8, 36, max_objects=3)
        tracks = video.tracks
        seen.add(len(tracks))
        assert len({t.shape for t in tracks}) == len(tracks) == len({t.colour for t in tracks})
        assert len({t.leave - t.appear for t in tracks}) == 1  # time on screen says nothing about order
        assert min(t.appear for t in tracks) == 0 and max(t.leave for t in tracks) == 8
        assert len({t.appear for t in tracks}) == len(tracks)  # order is always defined
        for t in tracks:
            assert t.start == t.end or t.start[0] == t.end[0] or t.start[1] == t.end[1]
    assert seen == {1, 2, 3}


def test_written_data_is_llava_format_with_npy_videos(tmp_path):
    from deco.demo.video.data import write_video_dataset

    summary = write_video_dataset(tmp_path, VideoSceneSettings(train_videos=6, test_videos=3))
    assert np.load(tmp_path / "images" / "train" / "000005.npy").shape == (4, 36, 36, 3)
    for name in ("stage1.json", "stage2.json", "test.json"):
        assert len(load_records(tmp_path / name)) == summary[name]
    test = json.loads((tmp_path / "test.json").read_text())
    assert {r["family"] for r in test} <= set(summary["majority_baseline"])


def test_frame_encoder_reads_time_from_the_clock_only():
    from deco.demo.core.settings import EncoderSettings
    from deco.demo.video.encoder import pretrain_frame_encoder

    settings = EncoderSettings(patch_size=6, hidden_size=32, num_layers=1, num_heads=2, pretrain_steps=150,
                               batch_size=32, lr=3e-3)
    accuracy = {}
    for clock in (True, False):
        rng = np.random.default_rng(0)
        picks = [(v, t) for v in [sample_video(rng, 4, 36, clock=clock) for _ in range(40)] for t in range(4)]
        _, report = pretrain_frame_encoder(picks[:120], picks[120:], 36, 4, settings)
        accuracy[clock] = report["held_out_patch_accuracy"]["time"]
    assert accuracy[True] > 0.85 and accuracy[False] < 0.4  # 4 frames: chance is 0.25


def test_video_yaml_spells_out_the_built_in_settings_and_the_recorded_values():
    recipe = load_settings(ROOT / "configs" / "demo-video.yaml")
    assert recipe == load_settings(kind="video") and recipe.kind == "video"
    # The values benchmarks/video_demo/ recorded are still the defaults, so its tables rerun.
    recorded = json.loads((ROOT / "benchmarks" / "video_demo" / "default" / "results.json").read_text())["settings"]
    now = recipe.to_dict()
    assert now["seeds"] == len(recorded["seeds"]) and now["projectors"] == recorded["projectors"]
    assert now["projector_options"] == recorded["projector_options"]
    for section in ("videos", "encoder", "lm", "train", "eval"):
        assert {k: now[section][k] for k in recorded[section]} == recorded[section], section
    assert now["eval"]["max_new_tokens"] == 3 and now["lm"]["pretrain_steps"] == 0  # as the recorded runs did
    assert load_settings(kind="video", profiles=("quick",)).seeds == 1
    assert load_settings(kind="video", profiles=("long",)).train.stage2_steps == 2400
    with pytest.raises(ConfigError, match="kind is 'image'"):
        load_settings(ROOT / "configs" / "demo.yaml", kind="video")


def _video(**changes) -> dict:
    data = default_settings("video").to_dict()
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            data[section][name] = value
        else:
            data[section] = value
    return data


def test_default_budget_is_equal_and_unequal_budgets_are_refused():
    from deco.demo.video.settings import token_budget

    budget = token_budget(load_settings(kind="video"))
    assert set(budget) == {"deco_spatial", "deco_temporal", "deco3d", "pllava", "qformer_video"}
    assert {b["tokens"] for b in budget.values()} == {36}  # 4 frames x 36 patches, 4x fewer
    options = _video()["projector_options"]
    options["deco_spatial"] = {"grid": [2, 2]}
    with pytest.raises(ConfigError, match="equal token budgets"):
        settings_from_dict(_video(projector_options=options))
    with pytest.raises(ConfigError, match="no time axis"):
        settings_from_dict(_video(projectors=["deco"]))
    with pytest.raises(ConfigError, match="max_objects"):
        settings_from_dict(_video(videos__frames=2, videos__max_objects=3))
    with pytest.raises(ConfigError, match="lm.pretrain_steps"):
        settings_from_dict(_video(lm__pretrain_steps=10))


TINY_VIDEO = {
    "projectors": ["deco_spatial", "pllava"], "seeds": 1, "videos.train_videos": 8, "videos.test_videos": 2,
    "encoder.pretrain_steps": 2, "encoder.pretrain_images": 16, "encoder.batch_size": 8,
    "lm.hidden_size": 32, "lm.intermediate_size": 64,
    "train.stage1_steps": 1, "train.stage2_steps": 2, "train.batch_size": 4, "eval.batch_size": 16,
}


def test_end_to_end_through_the_shared_runner_and_report(tmp_path):
    from rich.console import Console

    from deco.demo.pipeline import DemoOptions, run_demo

    out = tmp_path / "out"
    console = Console(file=open(tmp_path / "console.txt", "w"), width=160)  # noqa: SIM115
    payload = run_demo(DemoOptions(video=True, out=out, cache_dir=tmp_path / "cache", workers=1, extra=TINY_VIDEO),
                       console)
    assert payload["kind"] == "video" and [r["projector"] for r in payload["runs"]] == ["deco_spatial", "pllava"]
    for run in payload["runs"]:
        assert run["losses"]["stage2"] and 0.0 <= run["final"]["overall"] <= 1.0
        assert set(run["final"]["families"]) <= {"direction", "order", "start", "end", "count"}
        assert (out / "runs" / "seed0" / run["projector"] / "stage2" / "final").is_dir()
        assert not (out / "runs" / "seed0" / run["projector"] / "stage2" / "checkpoint-2").exists()
    assert payload["geometry"]["visual_tokens"] == {"deco_spatial": 36, "pllava": 36}
    assert "time" in payload["assets"]["encoder"]["held_out_patch_accuracy"]
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["kind"] == "video" and set(results["projectors"]) == {"deco_spatial", "pllava"}
    table = (out / "results.md").read_text()
    assert "| pllava | 36 |" in table and "majority answer" in table and "Videos of 4 frames" in table
    header = next(line for line in table.splitlines() if line.startswith("| projector | tokens"))
    assert "| direction |" in header and "| count |" in header and "spatial" not in header
    assert (out / "loss_curves.png").is_file() and not (out / "examples").exists()


def test_cli_passes_seeds_projectors_steps_and_config_to_the_video_demo(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import deco.demo.pipeline as pipeline
    from deco.cli import app

    seen = {}

    def fake_run(opts, console=None):
        seen["settings"] = pipeline.resolve_settings(opts)
        seen["seeds"] = [opts.seed + i for i in range(seen["settings"].seeds)]

    monkeypatch.setattr(pipeline, "run_demo", fake_run)
    CliRunner().invoke(app, ["demo", "--video", "--long", "--seed", "1", "--seeds", "2", "--projectors",
                             "deco3d,pllava", "--steps", "7", "--out", str(tmp_path)])
    s = seen["settings"]
    assert seen["seeds"] == [1, 2] and s.projectors == ["deco3d", "pllava"] and s.train.stage2_steps == 7
    CliRunner().invoke(app, ["demo", "--video", "--out", str(tmp_path)])
    assert seen["seeds"] == [0, 1, 2] and seen["settings"].kind == "video"  # the default keeps its 3 seeds
    CliRunner().invoke(app, ["demo", "--video", "--long", "--out", str(tmp_path)])
    assert seen["seeds"] == [0] and seen["settings"].train.stage2_steps == 2400
    mine = tmp_path / "mine.yaml"
    mine.write_text("kind: video\ntrain: {stage2_steps: 5}\n")
    CliRunner().invoke(app, ["demo", "--config", str(mine), "--out", str(tmp_path)])  # the file's kind decides
    assert seen["settings"].kind == "video" and seen["settings"].train.stage2_steps == 5


def test_sweep_is_refused_for_videos_before_any_work(tmp_path):
    from rich.console import Console

    from deco.demo.pipeline import DemoOptions, run_demo

    with pytest.raises(ConfigError, match="videos have none"):
        run_demo(DemoOptions(video=True, sweep=True, out=tmp_path / "out", cache_dir=tmp_path / "cache"),
                 Console(file=open(tmp_path / "console.txt", "w")))  # noqa: SIM115
    assert not (tmp_path / "cache").exists()


def test_video_cache_keys_and_frames_do_not_follow_the_image_kind():
    """The keys the default video assets were cached under, and the frames' object radius, before the two kinds
    shared one schema: the image kind's version bumps and shape sizes leave cached videos valid and the recorded
    results rerunnable (the video kind bumps VIDEO_ASSET_VERSION when its own data changes)."""
    from deco.demo.video.data import video_keys
    from deco.demo.video.scenes import RADIUS

    assert video_keys(load_settings(kind="video")) == ("video-data-dd9e017c5b98", "video-encoder-837b767f7ed9")
    assert RADIUS == 0.38
    assert constructed().frame(0).objects[0].radius == pytest.approx(0.38 * 12)
