"""`deco demo --reduce`: a finished tiny demo's mlp model reduced by every reducer, beside the trained ones."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from deco.demo.pipeline import DemoOptions, run_demo, run_reduced
from deco.errors import ConfigError
from deco.reducers import reducer_names
from test_demo import TINY

QUICK = {**TINY, "train.stage2_steps": 8, "train.checkpoints": 1}


def test_reduce_a_finished_demo_compares_trained_and_reduced_at_equal_tokens(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    console = Console(file=open(tmp_path / "console.txt", "w"), width=160)  # noqa: SIM115
    with pytest.raises(ConfigError, match="results.json is missing"):
        run_reduced(DemoOptions(out=out, cache_dir=cache, extra=QUICK), ["random"], console)
    run_demo(DemoOptions(projectors=["mlp", "deco"], out=out, cache_dir=cache, workers=1, extra=QUICK), console)
    payload = run_reduced(DemoOptions(out=out, cache_dir=cache, extra=QUICK), reducer_names(), console)
    assert payload["tokens"] == 36 and payload["mlp_tokens"] == 144
    assert list(payload["reduced"]) == [f"{n}:36" for n in reducer_names()]
    for name, row in payload["reduced"].items():
        assert 0.0 <= row["final"]["overall"]["mean"] <= 1.0
        assert row["retention"]["values"][0] == pytest.approx(
            row["final"]["overall"]["values"][0] / payload["trained"]["mlp"]["final"]["overall"]["values"][0])
        assert "vs_deco" in row
        assert (row["relevance"] is None) == name.startswith("fastv")
    assert payload["reduced"]["pool:36"]["relevance"]["coverage"] == pytest.approx(1.0)  # pooling keeps every patch
    assert payload["reduced"]["random:36"]["relevance"]["effective_patches_per_token"] == pytest.approx(1.0)
    md = (out / "reduced.md").read_text()
    assert "| mlp + visionzip:36 | no | vision | 36 |" in md and "| deco | yes | projector | 36 |" in md
    assert json.loads((out / "reduced.json").read_text())["seeds"] == [0]


def test_trained_rows_from_another_demo_join_only_on_the_same_seeds_and_questions(tmp_path):
    from deco.demo.core.reduced import _merge_trained

    def results(seeds, projector, per_family=150):
        return {"seeds": seeds, "test_questions_per_family": {"column": per_family},
                "geometry": {"patch_grid": "12x12"}, "projectors": {projector: {"visual_tokens": 36}},
                "runs": [{"projector": projector, "seed": s} for s in seeds], "relevance": [{"model": projector}]}

    other = tmp_path / "q"
    other.mkdir()
    (other / "results.json").write_text(json.dumps(results([0, 1], "qformer")))
    merged = _merge_trained(results([0, 1], "mlp"), [other])
    assert set(merged["projectors"]) == {"mlp", "qformer"} and len(merged["runs"]) == 4
    assert [r["model"] for r in merged["relevance"]] == ["mlp", "qformer"]
    with pytest.raises(ConfigError, match="seeds"):
        _merge_trained(results([0, 1, 2], "mlp"), [other])
    (other / "results.json").write_text(json.dumps(results([0, 1], "qformer", per_family=100)))
    with pytest.raises(ConfigError, match="test_questions_per_family"):
        _merge_trained(results([0, 1], "mlp"), [other])
