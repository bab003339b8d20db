"""`deco demo` end to end: a tiny version in seconds (real data files, real trainer, real generation);
the full default demo is a slow test."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from rich.console import Console

from deco.demo.pipeline import DemoOptions, run_demo

# One object per image and a high learning rate: within 80 tiny steps the model learns which kind of
# answer each question wants, which no untrained model does.
TINY = {
    "scenes.train_images": 96, "scenes.test_images": 16, "scenes.validation_images": 8, "scenes.min_objects": 1, "scenes.max_objects": 1,
    "scenes.families": ["column", "count"],  # answers of two distinct forms ("red left", "circles 1")
    "lm.pretrain_steps": 20, "lm.pretrain_batch_size": 8, "lm.conversations_per_scene": 1,
    "encoder.pretrain_steps": 30, "encoder.pretrain_images": 96, "encoder.batch_size": 16,
    "lm.hidden_size": 64, "lm.intermediate_size": 128,
    "train.stage1_steps": 2, "train.stage2_steps": 80, "train.checkpoints": 2, "train.stage2_lr": 5.0e-3,
    "train.projector_lrs": {},  # the swept per-projector values are for the default budget
    "train.batch_size": 8,
    "eval.curve_images": 4, "eval.examples": 2, "eval.loss_steps": [5, 10],
}


def test_tiny_demo_end_to_end_writes_everything_and_learns_something(tmp_path):
    out = tmp_path / "out"
    opts = DemoOptions(projectors=["mlp", "deco"], out=out, cache_dir=tmp_path / "cache", workers=2, extra=TINY)
    payload = run_demo(opts, Console(file=open(tmp_path / "console.txt", "w"), width=160))  # noqa: SIM115
    log = (tmp_path / "console.txt").read_text()
    for job in ("mlp (seed", "deco (seed"):  # a file gets one line per finished job (no bars drawn at the end)
        finished = [line for line in log.splitlines() if line.strip().startswith(job) and ": done (" in line]
        assert len(finished) == 1, log  # once: the job's own "done" and its future's end are the same event
    assert "ETA" not in log  # no progress bar dumped into the file
    for name in ("results.json", "results.md", "loss_curves.png", "accuracy_by_family.png", "learning_curves.png",
                 "examples/example_0.png", "examples/example_1.png", "answers.json",
                 "analysis/metrics.json", "analysis/metrics.md", "analysis/metrics.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())
    assert set(results["projectors"]) == {"mlp", "deco"}
    assert results["geometry"]["visual_tokens"] == {"mlp": 144, "deco": 36}
    for s in results["projectors"].values():
        accs = [s["final"]["overall"]["mean"], *[v["mean"] for v in s["final"]["families"].values()]]
        assert all(0.0 <= a <= 1.0 for a in accs)
        assert [p["step"] for p in s["curve"]] == [40, 80]
        assert set(s["stage2_loss_at"]) == {"5", "10"}
    runs = {r["projector"]: r for r in payload["runs"]}
    assert len(runs["mlp"]["losses"]["stage2"]) == 80 and runs["mlp"]["losses"]["stage2"][0][0] == 1
    # Training happened: the loss fell, and counting beats a uniform guess among its answers.
    losses = [loss for _, loss in runs["mlp"]["losses"]["stage2"]]
    assert sum(losses[-10:]) < sum(losses[:10]) / 2
    # It learned which kind of answer each question wants: the answer's length and an answer word of the
    # asked family (no untrained model does this; getting the words right takes the real budget).
    test = {r["id"]: r for r in json.loads(next((tmp_path / "cache").glob("data-*/test.json")).read_text())}
    kinds: dict[str, set[str]] = {}
    for r in test.values():
        kinds.setdefault(r["family"], set()).add(r["conversations"][1]["value"].split()[-1])
    answers = json.loads((out / "answers.json").read_text())["answers"]["mlp"]
    formed = [len(a.split()) == len(test[i]["conversations"][1]["value"].split())
              and a.split()[-1] in kinds[test[i]["family"]] for i, a in answers.items()]
    assert sum(formed) >= 0.8 * len(formed)
    md = (out / "results.md").read_text()
    assert "| mlp | 144 |" in md and "majority answer" in md
    # The saved final model is an ordinary deco model folder.
    from deco.model import load_model

    model = load_model(out / "runs" / "seed0" / "deco" / "stage2" / "final")
    assert model.num_image_tokens == 36 and type(model.vision_tower).__name__ == "TinyViTTower"


def test_demo_refuses_an_output_folder_it_did_not_write(tmp_path):
    from deco.errors import ConfigError

    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a deco demo folder"):
        run_demo(DemoOptions(out=tmp_path, cache_dir=tmp_path / "c", extra=TINY), Console(file=open(tmp_path / "x", "w")))  # noqa: SIM115
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_cli_lists_demo_with_its_options():
    from typer.testing import CliRunner

    from deco.cli import app

    result = CliRunner().invoke(app, ["demo", "--help"])
    assert result.exit_code == 0
    for option in ("--quick", "--paper-geometry", "--seeds", "--projectors", "--steps", "--out", "--no-cache"):
        assert option in result.output


@pytest.mark.slow
def test_default_demo_runs_in_budget(tmp_path):
    """The full default demo (five projectors). Budget: 10 minutes on 2 free cores."""
    start = time.perf_counter()
    payload = run_demo(DemoOptions(out=tmp_path / "out", cache_dir=tmp_path / "cache"))
    seconds = time.perf_counter() - start
    assert set(payload["projectors"]) == {"mlp", "deco", "qformer", "cabstractor", "dabstractor"}
    assert all(0 <= s["final"]["overall"]["mean"] <= 1 for s in payload["projectors"].values())
    print(f"default demo wall time: {seconds:.0f} s")
    assert Path(tmp_path / "out" / "results.md").is_file()


def test_a_job_is_deterministic_under_a_fixed_seed(tmp_path):
    """Two runs of the same projector and seed give bit-identical losses (single-threaded CPU jobs)."""
    import torch

    from deco.demo.core.runner import read_losses, train_projector
    from deco.demo.kinds import prepare_assets, scene_kind
    from deco.demo.pipeline import resolve_settings

    settings = resolve_settings(DemoOptions(extra={**TINY, "train.stage1_steps": 2, "train.stage2_steps": 3}))
    assets = prepare_assets(settings, tmp_path / "cache")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs = []
        for name in ("a", "b"):
            train_projector(settings, scene_kind(settings), assets, "qformer", tmp_path / name, 7, lambda *_: None)
            runs.append([read_losses(tmp_path / name / f"stage{s}") for s in (1, 2)])
    finally:
        torch.set_num_threads(threads)
    assert runs[0] == runs[1] and len(runs[0][1]) == 3


def test_tiny_ladder_end_to_end_reports_rungs_diagnostics_and_relevance(tmp_path):
    out = tmp_path / "out"
    extra = {**TINY, "train.stage2_steps": 6, "train.checkpoints": 1, "train.diagnostics_every": 3}
    opts = DemoOptions(ladder=True, rungs=["deco", "cabs-d0-nopos"], seeds=2, out=out, cache_dir=tmp_path / "cache",
                       workers=2, extra=extra)
    payload = run_demo(opts, Console(file=open(tmp_path / "console.txt", "w"), width=160))  # noqa: SIM115
    ladder = json.loads((out / "ladder.json").read_text())
    assert list(ladder["rungs"]) == ["deco", "cabs-d0-nopos"] == list(payload["rungs"])
    assert ladder["seeds"] == [0, 1] and len(ladder["runs"]) == 4
    rung = ladder["rungs"]["cabs-d0-nopos"]
    assert rung["projector"] == "cabstractor" and rung["options"] == {"depth": 0, "pos_emb": False}
    assert [p["seed"] for p in [r for r in ladder["runs"] if r["rung"] == "cabs-d0-nopos"]] == [0, 1]
    assert rung["vs_reference"]["reference"] == "deco"
    assert rung["diagnostics"]["last"]["step"] == 6 and rung["diagnostics"]["last"]["blocks"]["readout.0"]["grad_norm"] > 0
    assert rung["relevance"]["own_window_share"] is not None
    assert ladder["rungs"]["deco"]["relevance"]["own_window_share"] == pytest.approx(1.0)
    text = (out / "ladder.md").read_text()
    assert "| cabs-d0-nopos | cabstractor | depth=0, pos_emb=False |" in text and "readout.0" in text
