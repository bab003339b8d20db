"""`deco demo --sweep`: every projector at every learning rate of `sweep.lrs` and warmup ratio of
`sweep.warmups`, equal steps, scored on the validation split (never the test split), so each baseline is
compared at its best setting.

The chosen setting per projector is the one with the best validation accuracy, skipping runs whose
projector collapsed (deco.train.report.probe); ties go to the smaller learning rate, then the longer warmup. The
result is written to sweep.json / sweep.md and printed as the `train.projector_lrs` (and, where a
projector's best warmup differs from train.warmup_ratio, `train.projector_warmups`) block for
configs/demo.yaml.
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


def _warmup(result: dict[str, Any], default: float) -> float:
    return default if result.get("warmup") is None else float(result["warmup"])


def is_diverged(result: dict[str, Any]) -> bool:
    """Did the job's training stop on a non-finite loss (recorded, every answer counted wrong)?"""
    return bool(result.get("diverged"))


def choose(results: list[dict[str, Any]], default_warmup: float = 0.03) -> dict[str, dict[str, Any]]:
    """Per projector: the chosen learning rate and warmup ratio, and every setting's validation accuracy."""
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["projector"] for r in results):
        mine = sorted((r for r in results if r["projector"] == name), key=lambda r: (r["lr"], -_warmup(r, default_warmup)))
        best = max(mine, key=lambda r: (r["final"]["overall"] - _COLLAPSED_PENALTY * (is_collapsed(r) or is_diverged(r)),
                                        -r["lr"], _warmup(r, default_warmup)))
        out[name] = {
            "chosen_lr": best["lr"],
            "chosen_warmup": _warmup(best, default_warmup),
            "settings": [{"lr": r["lr"], "warmup": _warmup(r, default_warmup),
                          "val_overall": round(r["final"]["overall"], 4),
                          "val_families": {f: round(v, 4) for f, v in r["final"]["families"].items()},
                          "same_index_cos": (final_probe(r) or {}).get("same_index_cos"),
                          "collapsed": is_collapsed(r), "diverged": is_diverged(r),
                          "questions": r["final"]["questions"]} for r in mine],
        }
    return out


def yaml_block(chosen: dict[str, dict[str, Any]], default_warmup: float = 0.03) -> str:
    """The `train.projector_lrs` (and `train.projector_warmups`) lines for configs/demo.yaml."""
    body = ", ".join(f"{name}: {info['chosen_lr']:g}" for name, info in chosen.items())
    text = f"train:\n  projector_lrs: {{{body}}}"
    warm = {n: i["chosen_warmup"] for n, i in chosen.items() if i.get("chosen_warmup", default_warmup) != default_warmup}
    if warm:
        text += "\n  projector_warmups: {" + ", ".join(f"{n}: {w:g}" for n, w in warm.items()) + "}"
    return text


def markdown(chosen: dict[str, dict[str, Any]], payload: dict[str, Any]) -> str:
    """sweep.md: validation accuracy of every (projector, learning rate), the chosen ones marked."""
    columns = sorted({(s["lr"], s["warmup"]) for info in chosen.values() for s in info["settings"]},
                     key=lambda c: (c[0], -c[1]))
    rows = []
    for name, info in chosen.items():
        cells = {(s["lr"], s["warmup"]): ("diverged" if s.get("diverged") else f"{s['val_overall']:.2f}")
                 + (" (collapsed)" if s["collapsed"] else "")
                 + (" *" if (s["lr"], s["warmup"]) == (info["chosen_lr"], info["chosen_warmup"]) else "")
                 for s in info["settings"]}
        rows.append([name, *[cells.get(c, "-") for c in columns]])
    lines = ["# deco demo learning-rate sweep", "",
             f"Validation split ({payload['validation_questions']} questions), seed {payload['seed']}, stage 1 "
             f"{payload['settings']['train']['stage1_steps']} + stage 2 {payload['settings']['train']['stage2_steps']}"
             " steps for every setting. `*` = chosen (best validation accuracy; collapsed runs are not chosen).", ""]
    lines += md_table(["projector", *[f"lr {lr:g} wu {w:g}" for lr, w in columns]], rows)
    default_warmup = payload["settings"]["train"]["warmup_ratio"]
    lines += ["", "Put in configs/demo.yaml (or a --config copy):", "", "```yaml", yaml_block(chosen, default_warmup),
              "```"]
    return "\n".join(lines) + "\n"


def write(out: Path, chosen: dict[str, dict[str, Any]], payload: dict[str, Any]) -> None:
    """sweep.json and sweep.md in the demo's output folder."""
    (out / "sweep.json").write_text(json.dumps({**payload, "chosen": chosen}, indent=1) + "\n", encoding="utf-8")
    (out / "sweep.md").write_text(markdown(chosen, payload), encoding="utf-8")
