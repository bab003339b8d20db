"""The collapse probe: logged at every checkpoint of any `deco train` run, and a projector whose outputs
ignore the image is flagged (by the probe, by the trainer's log, and by the demo's report)."""

from __future__ import annotations

import json

import torch

from deco.config import load_config
from deco.demo.core.notes import collapsed, observations
from deco.model import build_model
from deco.train.report.probe import COLLAPSE_COS, collapse_warning, measure


def _tiny_model():
    torch.manual_seed(0)
    return build_model(load_config("configs/tiny.yaml", []))


def _size(model) -> int:
    return model.vision_tower.image_size


def test_healthy_projector_is_not_flagged(torch_one_thread):
    model = _tiny_model()
    s = _size(model)
    result = measure(model, torch.randn(6, 3, s, s))
    assert result["images"] == 6 and result["same_index_cos"] < COLLAPSE_COS
    assert not result["collapsed"] and collapse_warning(10, result) is None


def test_deliberately_collapsed_projector_is_flagged(torch_one_thread):
    model = _tiny_model()
    # Zero the projector's last layer weights: every output token is its bias, whatever the image.
    last = [m for m in model.projector.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.normal_()
    s = _size(model)
    result = measure(model, torch.randn(6, 3, s, s))
    assert result["same_index_cos"] > 0.999 and result["collapsed"]
    line = collapse_warning(20, result)
    assert line is not None and "step 20" in line and "collapsed" in line


def test_training_logs_the_probe_at_every_checkpoint(tmp_path, llava_data, torch_one_thread):
    from deco.train import run_training

    data_file, images = llava_data
    config = load_config("configs/tiny.yaml", [
        f"data.train_file={data_file}", f"data.image_folder={images}", f"train.output_dir={tmp_path / 'run'}",
        "train.max_steps=4", "train.save_every=2", "train.global_batch_size=2", "train.per_device_batch_size=2",
        "train.quiet=true",
    ])
    run_training(config)
    probes = [json.loads(line) for line in (tmp_path / "run" / "probe.jsonl").read_text().splitlines()]
    assert [p["step"] for p in probes] == [2, 4]
    assert all(p["images"] > 0 and p["same_index_cos"] is not None and not p["collapsed"] for p in probes)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("probe" not in r for r in records)


def _summary(overall: float, cos: float, collapsed_seeds: list[int]) -> dict:
    stat = {"mean": overall, "std": 0.0, "values": [overall]}
    return {"final": {"overall": stat, "spatial": stat, "localisation": stat,
                      "families": {"cell": stat}},
            "curve": [], "times": {"stage2_train_seconds": {"mean": 1.0}}, "visual_tokens": 36,
            "questions": {"cell": 100}, "seeds": [0],
            "collapse_probe": {"same_index_cos": {"mean": cos, "std": 0.0, "values": [cos]},
                               "collapsed_seeds": collapsed_seeds}}


def test_demo_report_leaves_a_collapsed_projector_out_of_the_ranking():
    summary = {"deco": _summary(0.6, 0.4, []), "qformer": _summary(0.9, 0.9995, [0])}
    payload = {"projectors": summary, "test_questions_per_family": {"cell": 100}, "seeds": [0],
               "majority_baseline": {"cell": 0.2}}
    assert collapsed(summary) == {"qformer": 0.9995}
    notes = observations(payload)
    assert notes[0].startswith("COLLAPSED") and "qformer" in notes[0]
    ranking = next(n for n in notes if n.startswith("Overall ranking"))
    assert "deco" in ranking and "qformer" not in ranking
