"""`deco demo --ladder`: from DeCo to Honeybee's abstractors one change at a time, each rung on the
demo's default budget at several seeds, scored on the test split like the comparison.

Why: the C-Abstractor is DeCo's adaptive average pooling with RegNet stages around it and a SiLU MLP
after it; at `depth: 0` Honeybee builds exactly pooling + MLP (kakaobrain/honeybee, `CAbstractor.build_net`).
So a C-Abstractor that trails DeCo far must lose it in something the ladder can point at: the pos-emb,
the first RegNet block, more blocks. The D-Abstractor rungs take out decoder layers and the learned
deformable offsets. Each rung is a projector plus options over the demo's (`ladder.rungs` in
configs/demo.yaml); every job logs per-block gradient norms and activation scales (deco.train.report.diagnostics),
summarised here next to the accuracies and the collapse probe.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from deco.demo.core.notes import gap_and_noise
from deco.demo.core.report import md_table, summarize
from deco.demo.core.settings import DemoSettings


def ladder_jobs(settings: DemoSettings, seeds: list[int], runs_dir: Path) -> list[dict[str, Any]]:
    """Every rung at every seed (the projector's configured learning rate unless the rung names one)."""
    jobs = []
    for name, rung in settings.ladder.rungs.items():
        for seed in seeds:
            job = {"projector": rung["projector"], "rung": name, "options": dict(rung.get("options") or {}),
                   "seed": seed, "label": f"{name} (seed {seed})", "run_root": str(runs_dir / f"seed{seed}" / name)}
            if rung.get("lr") is not None:
                job["lr"] = float(rung["lr"])
            jobs.append(job)
    return jobs


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.fmean(vals) if vals else None


def diagnostics_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Stage-2 diagnostics of one rung, averaged over seeds at the first, middle and last logged step:
    per block gradient norm and output RMS; the projector's output RMS and the LM embeddings' RMS."""
    records = [r.get("diagnostics", {}).get("stage2") or [] for r in runs]
    records = [recs for recs in records if recs]
    if not records:
        return {}
    n = min(len(recs) for recs in records)
    out: dict[str, Any] = {}
    for label, index in (("first", 0), ("middle", n // 2), ("last", n - 1)):
        picked = [recs[index] for recs in records]
        blocks = {}
        for block in picked[0]["blocks"]:
            blocks[block] = {key: _mean([p["blocks"].get(block, {}).get(key) for p in picked])
                             for key in ("grad_norm", "param_rms", "out_rms")}
        out[label] = {"step": picked[0]["step"], "blocks": blocks,
                      "projector_out_rms": _mean([p.get("projector_out_rms") for p in picked]),
                      "llm_embed_rms": _mean([p.get("llm_embed_rms") for p in picked])}
    return out


def summarize_ladder(settings: DemoSettings, runs: list[dict[str, Any]], per_family: dict[str, int]) -> dict[str, Any]:
    """Per rung: the comparison's summary (accuracies with seed spread, probe, times), its options and
    diagnostics, and its gap to the first rung (the reference, DeCo by default) with the noise rule."""
    summary = summarize(runs, settings.eval.loss_steps, key="rung")
    n_all = sum(per_family.values())
    first = next(iter(summary))
    for name, entry in summary.items():
        rung = settings.ladder.rungs[name]
        entry["projector"] = rung["projector"]
        entry["options"] = rung.get("options") or {}
        entry["diagnostics"] = diagnostics_summary([r for r in runs if r["rung"] == name])
        gap, noise = gap_and_noise(summary, name, first, "overall", n_all)
        entry["vs_reference"] = {"reference": first, "gap": gap, "noise": noise, "beyond_noise": abs(gap) > noise}
    return summary


RELEVANCE_KEYS = ("coverage", "own_window_share", "cell_occupancy", "grid_order_spearman")


def add_relevance(summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Put each rung's Query-to-Patch metrics (deco.analysis, mean over seeds) into its summary."""
    for row in rows:
        if row["model"] in summary:
            summary[row["model"]]["relevance"] = {k: row.get(k) for k in RELEVANCE_KEYS} | {
                f"{k}_sd": row.get(f"{k}_sd") for k in RELEVANCE_KEYS} | {"route": row.get("route")}


def _options_text(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items()) or "demo default"


def markdown(summary: dict[str, Any], payload: dict[str, Any]) -> str:
    """ladder.md: accuracy per rung (mean ± SD over seeds), gap to the reference rung, probe, scales."""
    families = list(next(iter(summary.values()))["final"]["families"])
    baseline = payload["majority_baseline"]
    rows = []
    for name, s in summary.items():
        fams = [f"{s['final']['families'][f]['mean']:.2f} ± {s['final']['families'][f]['std']:.2f}" for f in families]
        vs = s["vs_reference"]
        gap = "reference" if name == vs["reference"] else f"{vs['gap']:+.2f} (±{vs['noise']:.2f})"
        probe = (s.get("collapse_probe") or {}).get("same_index_cos")
        last = (s.get("diagnostics") or {}).get("last") or {}
        scale = (f"{last['projector_out_rms']:.3f} / {last['llm_embed_rms']:.3f}"
                 if last.get("projector_out_rms") is not None and last.get("llm_embed_rms") is not None else "-")
        rel = s.get("relevance") or {}
        own = rel.get("own_window_share")
        rows.append([name, s["projector"], _options_text(s["options"]), f"{s['projector_params']:,}",
                     f"{s['final']['overall']['mean']:.2f} ± {s['final']['overall']['std']:.2f}", gap, *fams,
                     f"{probe['mean']:.2f}" if probe else "-", scale, "-" if own is None else f"{own:.2f}"])
    rows.append(["majority answer", "", "", "", "", "", *[f"{baseline.get(f, 0):.2f}" for f in families], "", "",
                 ""])
    lines = ["# deco demo --ladder", "",
             f"Seeds {payload['seeds']}; every rung at the demo's budget (stage 1 "
             f"{payload['settings']['train']['stage1_steps']} + stage 2 {payload['settings']['train']['stage2_steps']} "
             "steps), scored on the test split. Mean ± SD over seeds. `vs ref`: the rung's overall accuracy minus the "
             "reference rung's, with the noise (twice the seeds' spread of the difference, at least two binomial "
             "standard errors). `out/embed RMS`: RMS of the projector's output tokens vs the LM's input "
             "embeddings at the last logged step. `own window`: the share of each token's Query-to-Patch relevance "
             "on the patches of its own pooling window (1 for DeCo by construction; the rest comes from neighbouring "
             "cells), mean over seeds and test images.", ""]
    lines += md_table(["rung", "projector", "options", "params", "overall", "vs ref",
                       *families, "same-token cos", "out/embed RMS", "own window"], rows)
    lines += ["", "## Gradient norms per block (stage 2, mean over seeds: first / middle / last logged step)", ""]
    for name, s in summary.items():
        diag = s.get("diagnostics") or {}
        if not diag:
            continue
        steps = "/".join(str(diag[k]["step"]) for k in ("first", "middle", "last"))
        cells = []
        for block in diag["last"]["blocks"]:
            norms = [diag[k]["blocks"].get(block, {}).get("grad_norm") for k in ("first", "middle", "last")]
            if any(v is not None for v in norms):
                cells.append(f"{block} " + "/".join("-" if v is None else f"{v:.2g}" for v in norms))
        lines.append(f"- **{name}** (steps {steps}): " + "; ".join(cells))
    return "\n".join(lines) + "\n"


def write(out: Path, summary: dict[str, Any], payload: dict[str, Any]) -> None:
    """ladder.json and ladder.md in the demo's output folder."""
    (out / "ladder.json").write_text(json.dumps({**payload, "rungs": summary}, indent=1) + "\n", encoding="utf-8")
    (out / "ladder.md").write_text(markdown(summary, payload), encoding="utf-8")
