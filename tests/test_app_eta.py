"""The app's time-left estimate of a demo run: real step counts, measured speed, the previous run's times."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deco.app.eta import History, StepClock, clock_text, read_history


def test_time_left_comes_from_the_measured_speed_of_each_phase() -> None:
    clock = StepClock(stage1_steps=10, stage2_steps=20)
    # Two jobs of 10 + 20 steps + 5 eval batches; stage 1 at 1 s/step, stage 2 at 2 s/step, eval 4 s/batch.
    for t in range(11):
        clock.record("deco (seed 0)", t, 35, "stage 1", now=100.0 + t)
    assert not clock.estimate(now=110.0, started=90.0).complete  # stage 2 and eval not measured yet
    for k in range(6):
        clock.record("deco (seed 0)", 10 + k, 35, "stage 2", now=110.0 + 2 * k)
    for k in range(3):
        clock.record("deco (seed 0)", 30 + k, 35, "evaluating", now=200.0 + 4 * k)
    estimate = clock.estimate(now=208.0, started=90.0)
    # 3 eval batches left at 4 s, and no report time known: a lower bound.
    assert estimate.seconds == pytest.approx(12.0) and not estimate.complete
    clock.history = History(report_s=30.0)
    estimate = clock.estimate(now=208.0, started=90.0)
    assert estimate.seconds == pytest.approx(42.0) and estimate.complete
    assert estimate.fraction == pytest.approx(118 / 160)


def test_a_phase_not_reached_takes_the_other_jobs_speed_then_last_run_s() -> None:
    clock = StepClock(10, 20, History(phase_s={"stage 2": 60.0, "evaluating": 40.0}, report_s=10.0))
    for k in range(3):  # job B reached stage 2 at 3 s/step; job A is still in stage 1 at 1 s/step
        clock.record("B", 10 + k, 40, "stage 2", now=50.0 + 3 * k)
    for t in range(6):
        clock.record("A", t, 40, "stage 1", now=50.0 + t)
    estimate = clock.estimate(now=56.0, started=0.0)
    # A: 5 stage-1 steps x 1 s + 20 stage-2 steps x 3 s (B's speed) + eval 40 s (last run) = 105; + report 10.
    assert estimate.seconds == pytest.approx(115.0) and estimate.complete


def test_history_is_read_from_the_demo_folder_results(tmp_path: Path) -> None:
    assert read_history(tmp_path).total_s is None
    run = {"times": {"stage1": {"seconds": 30.0}, "stage2": {"seconds": 600.0}}, "eval_seconds": 200.0,
           "job_seconds": 840.0}
    (tmp_path / "results.json").write_text(json.dumps({
        "runs": [run, {**run, "job_seconds": 800.0}], "wall_seconds": {"assets": 20.0, "total": 1000.0},
        "assets": {"built": []}}))
    history = read_history(tmp_path)
    assert history.phase_s == {"stage 1": 30.0, "stage 2": 600.0, "evaluating": 200.0}
    assert history.job_s == 840.0 and history.report_s == pytest.approx(140.0) and history.total_s == 1000.0
    # What the app measured of the report beats the estimate from results.json (which holds worker start-up).
    (tmp_path / "app-timings.json").write_text(json.dumps({"total_s": 1000.0, "report_s": 25.0}))
    assert read_history(tmp_path).report_s == 25.0

    from deco.app.runpanel import train_label

    assert "took 16 min 40 s on this machine last time (assets cached)" in train_label(tmp_path)
    assert clock_text(42) == "42 s" and clock_text(3725) == "1 h 02 min"
