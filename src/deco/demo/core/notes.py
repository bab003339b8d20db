"""Plain-language observations computed from a demo's results (never written in advance).

Each note states a measured comparison with its noise level, so a reader can tell an effect from
seed-to-seed or question-sampling noise; fixed caveats say what the demo cannot show.
"""

from __future__ import annotations

import math
from typing import Any


def _se(p: float, n: int) -> float:
    """Binomial standard error of an accuracy p measured on n questions."""
    return math.sqrt(max(p * (1 - p), 1e-9) / max(n, 1))


def gap_and_noise(summary: dict[str, Any], a: str, b: str, key: str, n: int) -> tuple[float, float]:
    """(mean of a − mean of b, two standard errors of that difference) on the final accuracy `key`
    ('overall', 'spatial' or a family); with several seeds the seed-to-seed spread counts too."""
    def stat(name: str) -> dict[str, Any]:
        final = summary[name]["final"]
        return final[key] if key in final else final["families"][key]

    pa, pb = stat(a), stat(b)
    seeds = len(pa["values"])
    noise = 2 * math.hypot(_se(pa["mean"], n * seeds), _se(pb["mean"], n * seeds))
    if seeds > 1:  # seed-to-seed spread usually dominates question sampling: twice the spread of a difference
        noise = max(noise, 2 * math.hypot(pa["std"], pb["std"]))
    return pa["mean"] - pb["mean"], noise


def _diff(summary: dict[str, Any], a: str, b: str, key: str, n: int) -> str:
    """'a − b = +0.12 (±0.04 is noise)'."""
    gap, noise = gap_and_noise(summary, a, b, key, n)
    return f"{a} − {b} = {gap:+.2f} (±{noise:.2f} is noise)"


def collapsed(summary: dict[str, Any]) -> dict[str, float]:
    """Projectors whose collapse probe fired in any seed -> their mean same-token cosine."""
    out = {}
    for name, s in summary.items():
        probe = s.get("collapse_probe") or {}
        if probe.get("collapsed_seeds"):
            out[name] = probe["same_index_cos"]["mean"]
    return out


def observations(payload: dict[str, Any]) -> list[str]:
    """Notes for results.md and the terminal."""
    summary = payload["projectors"]
    # The questions actually scored (a --quick run scores a subset of the test split).
    per_family = next(iter(summary.values())).get("questions") or payload["test_questions_per_family"]
    n_all = sum(per_family.values())
    n_spatial = sum(per_family.get(f, 0) for f in ("column", "row", "cell", "relation"))
    out = []
    broken = collapsed(summary)
    if broken:
        out.append("COLLAPSED (outputs nearly identical for every image; left out of the ranking): "
                   + ", ".join(f"{n} (same-token cosine {c:.3f})" for n, c in broken.items()) + ".")
    ranked = sorted((n for n in summary if n not in broken), key=lambda name: -summary[name]["final"]["overall"]["mean"])
    out.append("Overall ranking: " + " > ".join(f"{n} {summary[n]['final']['overall']['mean']:.2f}" for n in ranked)
               + " (differences within the noise below are not an ordering).")
    if "mlp" in summary and "deco" in summary:
        out.append(f"Uncompressed vs pooled: {_diff(summary, 'mlp', 'deco', 'overall', n_all)} overall, "
                   f"{_diff(summary, 'mlp', 'deco', 'spatial', n_spatial)} on spatial questions.")
    localised = "cell" in per_family  # the localisation family may be left out of scenes.families
    for other in ("qformer", "cabstractor", "dabstractor"):
        if "deco" in summary and other in summary:
            where = f", {_diff(summary, 'deco', other, 'cell', per_family['cell'])} on localisation" if localised else ""
            out.append(f"DeCo vs {other} at the same token count: {_diff(summary, 'deco', other, 'overall', n_all)} "
                       f"overall, {_diff(summary, 'deco', other, 'spatial', n_spatial)} spatial{where}.")
    if {"mlp", "deco", "qformer"} <= set(summary):
        gap_md, noise_md = gap_and_noise(summary, "mlp", "deco", "overall", n_all)
        gap_dq, noise_dq = gap_and_noise(summary, "deco", "qformer", "overall", n_all)
        first = "holds" if gap_md >= -noise_md else "does NOT hold"
        second = "holds" if gap_dq > noise_dq else "does NOT hold (within noise)" if gap_dq > -noise_dq else "does NOT hold"
        line = f"The paper's ordering, checked against the noise levels: MLP ≥ DeCo {first} here, DeCo > Q-Former {second}"
        if localised:
            gap_loc, noise_loc = gap_and_noise(summary, "deco", "qformer", "cell", per_family["cell"])
            local = "larger than noise" if gap_loc > noise_loc else "within noise"
            line += f"; DeCo's lead over the Q-Former on localisation is {gap_loc:+.2f} ({local})"
        out.append(line + ".")
    if "mlp" in summary:
        weak = {f: v["mean"] for f, v in summary["mlp"]["final"]["families"].items() if v["mean"] < 0.9}
        out.append("The uncompressed MLP reaches >= 0.90 on every family." if not weak else
                   "The uncompressed MLP stays below 0.90 on: " + ", ".join(f"{f} {v:.2f}" for f, v in weak.items())
                   + " (a comparison on those families shows less).")
    unlearned = []
    for family, base in payload["majority_baseline"].items():
        n = per_family.get(family, 1)
        best = max(s["final"]["families"][family]["mean"] for s in summary.values() if family in s["final"]["families"])
        if best - base <= 2 * _se(base, n):
            unlearned.append(family)
    if unlearned:
        out.append("No projector beats always giving the majority answer (by more than noise) on: "
                   + ", ".join(unlearned) + ". These families show nothing at this budget (more --steps may help).")
    first = {n: s["curve"][0] for n, s in summary.items() if len(s["curve"]) > 1}
    if first:
        step = next(iter(first.values()))["step"]
        out.append(f"Convergence: spatial accuracy at stage-2 step {step}: "
                   + ", ".join(f"{n} {p['spatial']['mean']:.2f}" for n, p in first.items())
                   + " (learning curves in learning_curves.png).")
    if "mlp" in summary and "deco" in summary:
        t = {n: summary[n]["times"]["stage2_train_seconds"]["mean"] for n in ("mlp", "deco")}
        out.append(f"Stage-2 training took {t['mlp']:.0f} s for mlp ({summary['mlp']['visual_tokens']} tokens) and "
                   f"{t['deco']:.0f} s for deco ({summary['deco']['visual_tokens']} tokens) at equal steps "
                   "(wall times move with machine load; CPU seconds are in the sizes table).")
    if len(payload["seeds"]) == 1:
        command = "deco demo --video" if payload.get("kind") == "video" else "deco demo"
        out.append(f"One seed: `{command} --seeds 3` reports mean and spread; trust only gaps beyond the noise shown.")
    if payload.get("kind") == "video":
        out.append("Scale: a small LM trained from random weights and a tiny frozen frame encoder on synthetic videos; "
                   "a direction, not a measurement of real video LLMs.")
    else:
        out.append("Scale: a small LM pretrained on the scenes' text and a tiny frozen encoder, both cached; synthetic "
                   "scenes. This shows the mechanism, not the paper's benchmark numbers.")
    return out
