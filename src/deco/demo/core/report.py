"""Turns the jobs' results into results.json, results.md and the terminal table, for both scene kinds
(the columns follow the families and groups the jobs scored: the SceneKind's, deco.demo.core.kind).

Every number comes from the jobs' own outputs (accuracies from greedy answers, losses from the
trainer's metrics.jsonl, times from the clock); nothing is filled in by hand. With several seeds,
accuracies are given as mean and standard deviation over seeds.
"""

from __future__ import annotations

import json
import platform
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

# Groups of families scored beside them (images); a kind without them reports families and overall only.
GROUPS = ("spatial", "localisation")
SHORT = {"attribute": "attr", "column": "col", "row": "row", "cell": "cell*", "relation": "rel",
         "count": "count", "exists": "exists", "smallest": "small"}


def machine() -> dict[str, Any]:
    """CPU model and cores this process may use, OS, Python and torch versions."""
    import os

    import torch

    from deco.train.report.runinfo import cpu_model

    cpu = cpu_model()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "os": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__}


def cpu_seconds() -> float:
    """CPU time of this process and of its finished worker processes (user + system)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _stats(values: Sequence[float]) -> dict[str, Any]:
    vals = [float(v) for v in values]
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "values": [round(v, 4) for v in vals]}


def loss_at(losses: list[list[float]], step: int, window: int = 10) -> float | None:
    """Mean training loss over the `window` steps ending at `step` (None if the run is shorter)."""
    picked = [loss for s, loss in losses if step - window < s <= step]
    return statistics.fmean(picked) if picked and max(s for s, _ in losses) >= step else None


def summarize(runs: list[dict[str, Any]], loss_steps: list[int], key: str = "projector") -> dict[str, Any]:
    """Per projector (or per `key`: a ladder's rung): accuracies (mean/std over seeds), learning curve,
    losses, sizes and times."""
    out: dict[str, Any] = {}
    for name in dict.fromkeys(r[key] for r in runs):
        mine = [r for r in runs if r[key] == name]
        keys = ("overall", *(g for g in GROUPS if g in mine[0]["final"]))
        final = {key: _stats([r["final"][key] for r in mine]) for key in keys}
        final["families"] = {f: _stats([r["final"]["families"][f] for r in mine]) for f in mine[0]["final"]["families"]}
        curve = []
        for i, point in enumerate(mine[0]["curve"]):
            curve.append({"step": point["step"],
                          **{k: _stats([r["curve"][i][k] for r in mine]) for k in keys if k != "localisation"},
                          "families": {f: statistics.fmean(r["curve"][i]["families"][f] for r in mine)
                                       for f in point["families"]}})
        losses = {}
        for step in loss_steps:
            values = [v for r in mine if (v := loss_at(r["losses"]["stage2"], step)) is not None]
            if values:
                losses[str(step)] = _stats(values)
        times = {
            "stage1_train_seconds": _stats([r["times"]["stage1"]["train_seconds"] for r in mine]),
            "stage2_train_seconds": _stats([r["times"]["stage2"]["train_seconds"] for r in mine]),
            "eval_seconds": _stats([r["eval_seconds"] for r in mine]),
            "job_cpu_seconds": _stats([r["job_cpu_seconds"] for r in mine]),
        }
        probes = [r["probe"][-1] for r in mine if r.get("probe")]
        out[name] = {"visual_tokens": mine[0]["visual_tokens"], "projector_params": mine[0]["projector_params"],
                     "final": final, "curve": curve, "stage2_loss_at": losses, "times": times,
                     "seeds": [r["seed"] for r in mine],
                     # questions scored per family in each seed's final evaluation (the noise depends on it)
                     "questions": mine[0]["final"].get("counts", {}),
                     "collapse_probe": {
                         "same_index_cos": _stats([p["same_index_cos"] for p in probes]) if probes else None,
                         "collapsed_seeds": [r["seed"] for r in mine if r.get("probe") and r["probe"][-1]["collapsed"]],
                     }}
    return out


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """results.json (answers of every run kept in runs/, not here)."""
    path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")


def _fmt(stat: dict[str, Any], seeds: int) -> str:
    text = f"{stat['mean']:.2f}"
    return text + f" ± {stat['std']:.2f}" if seeds > 1 else text


def main_rows(summary: dict[str, Any], baseline: dict[str, float]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the main comparison table (also the rich table)."""
    first = next(iter(summary.values()))["final"]
    families = list(first["families"])
    spatial = ["spatial"] if "spatial" in first else []
    # The trainer's collapse probe reads single images; a column only where some run logged it (not videos).
    probed = any((s.get("collapse_probe") or {}).get("same_index_cos") for s in summary.values())
    header = ["projector", "tokens", "params", "overall", *spatial, *[SHORT.get(f, f) for f in families],
              "train s", *["same-token cos"] * probed]
    rows = []
    for name, s in summary.items():
        n = len(s["seeds"])
        probe = s.get("collapse_probe") or {}
        cos = f"{probe['same_index_cos']['mean']:.3f}" if probe.get("same_index_cos") else "-"
        if probe.get("collapsed_seeds"):
            cos += " COLLAPSED"
        fam = [_fmt(s["final"]["families"][f], n) if f in s["final"]["families"] else "-" for f in families]
        secs = s["times"]["stage1_train_seconds"]["mean"] + s["times"]["stage2_train_seconds"]["mean"]
        rows.append([name, str(s["visual_tokens"]), f"{s['projector_params']:,}", _fmt(s["final"]["overall"], n),
                     *[_fmt(s["final"][k], n) for k in spatial], *fam, f"{secs:.0f}", *[cos] * probed])
    rows.append(["majority answer", "", "", "", *["" for _ in spatial], *[f"{baseline.get(f, 0):.2f}" for f in families],
                 "", *[""] * probed])
    return header, rows


def rich_table(summary: dict[str, Any], baseline: dict[str, float], title: str) -> Table:
    """The terminal table."""
    header, rows = main_rows(summary, baseline)
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(header):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row, style="dim" if row[0] == "majority answer" else None)
    return table


def markdown(payload: dict[str, Any]) -> str:
    """results.md: the tables, the learning curves, the early losses, sizes, times and the caveats."""
    summary, baseline = payload["projectors"], payload["majority_baseline"]
    seeds = payload["seeds"]
    geo = payload["geometry"]
    lines = [
        "# deco demo results",
        "",
        f"Machine: {payload['machine']['cpu']}, {payload['machine']['cores']} cores; workers {payload['workers']}. "
        f"Wall time {payload['wall_seconds']['total']:.0f} s (assets {payload['wall_seconds']['assets']:.0f} s"
        f", built now: {', '.join(payload['assets']['built']) or 'none, cached'}).",
        f"{geometry_text(geo)} Seeds: {', '.join(map(str, seeds))}. "
        f"Steps: stage 1 {payload['settings']['train']['stage1_steps']}, stage 2 "
        f"{payload['settings']['train']['stage2_steps']}, batch {payload['settings']['train']['batch_size']}.",
        "",
        "## Held-out exact-match accuracy" + (" (mean ± SD over seeds)" if len(seeds) > 1 else ""),
        "",
    ]
    header, rows = main_rows(summary, baseline)
    lines += md_table(header, rows)
    spatial = "spatial" in next(iter(summary.values()))["final"]
    lines += [""]
    if spatial:
        lines += ["`cell*` is the localisation family (which of 9 cells). Spatial = column, row, cell, relation."]
    lines += ["Majority answer = accuracy of always giving the family's most common test answer."]
    steps = [p["step"] for p in next(iter(summary.values()))["curve"]]
    if len(steps) > 1:  # a run that keeps only its final model (train.checkpoints 1) has no curve
        lines += ["", "## Learning curves (overall accuracy on the curve subset of the test split)", ""]
        lines += md_table(["projector", *[f"step {s}" for s in steps]],
                           [[n, *[f"{p['overall']['mean']:.2f}" for p in s["curve"]]] for n, s in summary.items()])
    if spatial and len(steps) > 1:
        lines += ["", "## Spatial accuracy along training", ""]
        lines += md_table(["projector", *[f"step {s}" for s in steps]],
                           [[n, *[f"{p['spatial']['mean']:.2f}" for p in s["curve"]]] for n, s in summary.items()])
    loss_steps = payload["settings"]["eval"]["loss_steps"]
    lines += ["", "## Stage-2 training loss at fixed early steps (mean of the 10 steps ending there)", ""]
    lines += md_table(["projector", *[f"step {s}" for s in loss_steps]],
                       [[n, *[f"{s['stage2_loss_at'][str(k)]['mean']:.3f}" if str(k) in s["stage2_loss_at"] else "-"
                              for k in loss_steps]] for n, s in summary.items()])
    lines += ["", "## Sizes and times", ""]
    lines += md_table(
        ["projector", "options", "params", "stage 1 s", "stage 2 s", "eval s", "job CPU s"],
        [[n, json.dumps(payload["projector_options"][n]), f"{s['projector_params']:,}",
          f"{s['times']['stage1_train_seconds']['mean']:.0f}", f"{s['times']['stage2_train_seconds']['mean']:.0f}",
          f"{s['times']['eval_seconds']['mean']:.0f}", f"{s['times']['job_cpu_seconds']['mean']:.0f}"]
         for n, s in summary.items()])
    enc = payload["assets"]["encoder"]
    lines += ["", f"Encoder: {json.dumps(enc['config'])}; held-out per-patch accuracy of its pretraining heads "
              f"{json.dumps(enc['held_out_patch_accuracy'])}.", "", "## Reading these numbers", ""]
    lines += [f"- {note}" for note in payload["notes"]]
    lines += relevance_section(payload.get("relevance") or [])
    return "\n".join(lines) + "\n"


def geometry_text(geo: dict[str, Any]) -> str:
    """One sentence on what the projectors see and emit (images, or videos of several frames)."""
    if "frames" in geo:
        return (f"Videos of {geo['frames']} frames of {geo['image_size']} px, patch {geo['patch_size']} -> "
                f"{geo['frames']} x {geo['patch_grid']} patches; every projector emits {geo['compressed_grid']} tokens.")
    return (f"Images {geo['image_size']} px, patch {geo['patch_size']} -> {geo['patch_grid']} patches; "
            f"compressors emit {geo['compressed_grid']} tokens.")


def relevance_section(rows: list[dict[str, Any]]) -> list[str]:
    """What each trained projector's tokens keep (deco.analysis), mean over seeds, with the caveat."""
    if not rows:
        return []
    keys = ("same_index_cos", "within_mean_cos", "coverage", "grid_order_spearman", "cell_occupancy",
            "own_window_share")

    def cell(row: dict[str, Any], key: str) -> str:
        value = row.get(key)
        if not isinstance(value, (int, float)):
            return "n/a"
        sd = row.get(f"{key}_sd")
        return f"{value:.3f}" + (f" ± {sd:.3f}" if sd else "")

    out = ["", f"## Relevance metrics of the trained projectors (mean ± SD over {rows[0].get('seeds', 1)} seed(s))", ""]
    out += md_table(["projector", "route", *keys], [[r["model"] + (" †" if r.get("by_construction") else ""),
                                                     str(r.get("route")), *[cell(r, k) for k in keys]] for r in rows])
    out += ["", "† Spatial fidelity holds by construction here: DeCo's Query-to-Patch map is its pooling matrix and "
            "the MLP's token i is patch i, so grid order and occupancy say nothing about training. For the learned "
            "compressors they are measured. Full table: analysis/metrics.md."]
    return out


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(row) + " |" for row in rows]
