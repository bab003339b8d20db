"""`deco demo --sweep`: every projector at every learning rate of `sweep.lrs`, equal steps, scored on the
validation split (never the test split), so each baseline is compared at its best learning rate.

The chosen value per projector is the one with the best validation accuracy, skipping runs whose
projector collapsed (deco.train.probe); ties go to the smaller learning rate. The result is written to
sweep.json / sweep.md and printed as the `train.projector_lrs` block to put in configs/demo.yaml.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deco.demo.core.report import md_table

# Prefer a non-collapsed run even if a collapsed one happens to score higher (it reads the text only).
_COLLAPSED_PENALTY = 1.0


def final_probe(result: dict[str, Any]) -> dict[str, Any] | None:
    """The last collapse-probe record of a job, or None if the trainer logged none."""
    return result["probe"][-1] if result.get("probe") else None


def is_collapsed(result: dict[str, Any]) -> bool:
    """Did the job's projector end collapsed (outputs nearly the same for every image)?"""
    probe = final_probe(result)
    return bool(probe and probe.get("collapsed"))


def choose(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per projector: the chosen learning rate and every setting's validation accuracy."""
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["projector"] for r in results):
        mine = sorted((r for r in results if r["projector"] == name), key=lambda r: r["lr"])
        best = max(mine, key=lambda r: (r["final"]["overall"] - _COLLAPSED_PENALTY * is_collapsed(r), -r["lr"]))
        out[name] = {
            "chosen_lr": best["lr"],
            "settings": [{"lr": r["lr"], "val_overall": round(r["final"]["overall"], 4),
                          "val_families": {f: round(v, 4) for f, v in r["final"]["families"].items()},
                          "same_index_cos": (final_probe(r) or {}).get("same_index_cos"),
                          "collapsed": is_collapsed(r), "questions": r["final"]["questions"]} for r in mine],
        }
    return out


def yaml_block(chosen: dict[str, dict[str, Any]]) -> str:
    """The `train.projector_lrs` lines for configs/demo.yaml."""
    body = ", ".join(f"{name}: {info['chosen_lr']:g}" for name, info in chosen.items())
    return f"train:\n  projector_lrs: {{{body}}}"


def markdown(chosen: dict[str, dict[str, Any]], payload: dict[str, Any]) -> str:
    """sweep.md: validation accuracy of every (projector, learning rate), the chosen ones marked."""
    lrs = sorted({s["lr"] for info in chosen.values() for s in info["settings"]})
    rows = []
    for name, info in chosen.items():
        cells = {s["lr"]: f"{s['val_overall']:.2f}" + (" (collapsed)" if s["collapsed"] else "")
                 + (" *" if s["lr"] == info["chosen_lr"] else "") for s in info["settings"]}
        rows.append([name, *[cells.get(lr, "-") for lr in lrs]])
    lines = ["# deco demo learning-rate sweep", "",
             f"Validation split ({payload['validation_questions']} questions), seed {payload['seed']}, stage 1 "
             f"{payload['settings']['train']['stage1_steps']} + stage 2 {payload['settings']['train']['stage2_steps']}"
             " steps for every setting. `*` = chosen (best validation accuracy; collapsed runs are not chosen).", ""]
    lines += md_table(["projector", *[f"lr {lr:g}" for lr in lrs]], rows)
    lines += ["", "Put in configs/demo.yaml (or a --config copy):", "", "```yaml", yaml_block(chosen), "```"]
    return "\n".join(lines) + "\n"


def write(out: Path, chosen: dict[str, dict[str, Any]], payload: dict[str, Any]) -> None:
    """sweep.json and sweep.md in the demo's output folder."""
    (out / "sweep.json").write_text(json.dumps({**payload, "chosen": chosen}, indent=1) + "\n", encoding="utf-8")
    (out / "sweep.md").write_text(markdown(chosen, payload), encoding="utf-8")
