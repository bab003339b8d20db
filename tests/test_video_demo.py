"""The video demo: synthetic videos, their questions, the written data, equal budgets, an end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deco.data import load_records
from deco.demo.video_questions import ask, caption, vocabulary
from deco.demo.video_scenes import Track, Video, render_video, sample_video
from deco.demo.video_settings import VideoSceneSettings, video_settings
from deco.errors import ConfigError


def constructed() -> Video:
    """Circle slides right along the top row; a square enters at frame 4 bottom-left and turns blue at 6."""
    circle = Track("circle", ("red",), 8, (0, 0), (0, 2), 0, 8)
    square = Track("square", ("green", "blue"), 6, (2, 0), (2, 0), 4, 8)
    return Video((circle, square), 8, 36)


def test_tracks_move_appear_and_change_colour():
    video = constructed()
    circle, square = video.tracks
    assert circle.direction == "right" and square.direction == "still"
    assert [o.cell for o in video.frame(0).objects] == ["top-left"]
    assert [o.cell for o in video.frame(7).objects] == ["top-right", "bottom-left"]
    assert [o.colour for o in video.frame(5).objects] == ["red", "green"]
    assert [o.colour for o in video.frame(6).objects] == ["red", "blue"]
    frames = render_video(video)
    assert frames.shape == (8, 36, 36, 3) and frames.dtype == np.uint8
    red = np.array([220, 50, 50])
    top_row = [np.abs(frames[t, :12].astype(int) - red).sum(-1).min(0).argmin() for t in (0, 7)]
    assert top_row[0] < 12 <= 24 <= top_row[1]  # red pixels move from the left cell to the right cell


def test_questions_have_the_right_answers():
    video = constructed()
    rng = np.random.default_rng(0)
    assert ask("count", video, rng) == ("how many shapes", "2")
    q, a = ask("order", video, rng)
    assert a == "red" and set(q.split()[1::2]) == {"red", "green"}
    assert ask("direction", video, np.random.default_rng(1))[1] in ("right", "still")
    seen = {ask("colour", video, np.random.default_rng(s)) for s in range(20)}
    assert seen == {("end colour of red", "red"), ("end colour of green", "blue")}  # named by first colour
    starts = {ask("start", video, np.random.default_rng(s)) for s in range(40)}
    assert ("start at top-left", "red") in starts
    assert all(a == "none" for q, a in starts if q != "start at top-left")
    ends = dict(ask("end", video, np.random.default_rng(s)) for s in range(40))
    assert ends.get("end at top-right") == "red" and ends.get("end at bottom-left") == "blue"
    assert ends.get("end at top-left", "none") == "none"
    assert set(caption(video).split()) <= set(vocabulary())


def test_sampled_videos_keep_colours_and_shapes_distinct():
    rng = np.random.default_rng(1)
    for _ in range(200):
        video = sample_video(rng, 8, 36)
        assert len({t.shape for t in video.tracks}) == len(video.tracks)
        for t in range(8):
            colours = [o.colour for o in video.frame(t).objects]
            assert len(set(colours)) == len(colours)


def test_written_data_is_llava_format_with_npy_videos(tmp_path):
    from deco.demo.video_data import write_video_dataset

    summary = write_video_dataset(tmp_path, VideoSceneSettings(train_videos=6, test_videos=3))
    assert np.load(tmp_path / "images" / "train" / "000005.npy").shape == (8, 36, 36, 3)
    for name in ("stage1.json", "stage2.json", "test.json"):
        assert len(load_records(tmp_path / name)) == summary[name]
    test = json.loads((tmp_path / "test.json").read_text())
    assert {r["family"] for r in test} <= set(summary["majority_baseline"])


def test_default_budget_is_equal_and_unequal_budgets_are_refused():
    from deco.demo.video_runner import token_budget

    settings = video_settings()
    budget = token_budget(settings)
    assert set(budget) == {"deco_spatial", "deco_temporal", "deco3d", "pllava", "qformer_video"}
    assert {b["tokens"] for b in budget.values()} == {72}
    with pytest.raises(ConfigError, match="equal token budgets"):
        token_budget(video_settings(overrides={"projector_options": {"deco_spatial": {"grid": [2, 2]}}}))
    with pytest.raises(ConfigError, match="no time axis"):
        video_settings(overrides={"projectors": ["deco"]})


def test_end_to_end_through_the_real_trainer(tmp_path):
    from deco.demo.video_runner import report_markdown, run_video_demo

    settings = video_settings(overrides={
        "projectors": ["deco_spatial", "pllava"], "seeds": [0],
        "videos": {"train_videos": 8, "test_videos": 2, "frames": 4},
        "projector_options": {"deco_spatial": {"grid": [3, 3]}, "pllava": {"target": [2, 3, 6]}},
        "encoder": {"pretrain_steps": 2, "pretrain_images": 16, "batch_size": 8},
        "lm": {"hidden_size": 32, "intermediate_size": 64},
        "train": {"stage1_steps": 1, "stage2_steps": 2, "batch_size": 4},
        "eval": {"batch_size": 16},
    })
    results = run_video_demo(settings, tmp_path / "out", cache_dir=tmp_path / "cache", status=lambda _: None)
    assert [r["projector"] for r in results["runs"]] == ["deco_spatial", "pllava"]
    for run in results["runs"]:
        assert run["losses"] and 0.0 <= run["final"]["overall"] <= 1.0
        assert (tmp_path / "out" / "runs" / f"{run['projector']}-seed0" / "stage2" / "final").is_dir()
    assert results["budget"]["pllava"]["tokens"] == results["budget"]["deco_spatial"]["tokens"] == 36
    table = report_markdown(results)
    assert "| pllava | 36 |" in table and "majority answer" in table
    assert (tmp_path / "out" / "report.md").read_text() == table
