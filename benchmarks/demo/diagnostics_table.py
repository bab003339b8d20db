"""Per-block gradient norms and output scales along stage 2, with the loss, from a `deco demo` output folder.

    python benchmarks/demo/diagnostics_table.py /tmp/conv/out --every 250 > diagnostics.md

Reads each run's stage-2 `metrics.jsonl` and `diagnostics.jsonl` (written every `train.diagnostics_every`
steps, as configs/demo.yaml asks) under OUT/runs/seed*/PROJECTOR/, and prints one Markdown table per run:
the training loss (mean of the logged steps in each window) and each projector block's gradient norm and
output RMS (mean of the diagnostics records in the window). A plateau shows as a flat loss with small block
gradients; leaving it, as the gradients growing before the loss falls.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import fmean
from typing import Any


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _window_mean(values: list[tuple[int, float]], start: int, end: int) -> float | None:
    inside = [v for step, v in values if start < step <= end and v is not None]
    return fmean(inside) if inside else None


def run_table(run: Path, every: int) -> str:
    """The Markdown table of one run's stage 2."""
    stage2 = run / "stage2"
    losses = [(r["step"], r["loss"]) for r in _records(stage2 / "metrics.jsonl") if "loss" in r]
    diagnostics = _records(stage2 / "diagnostics.jsonl")
    if not losses or not diagnostics:
        return f"{run}: no stage-2 metrics or diagnostics\n"
    blocks = list(diagnostics[0]["blocks"])
    last = max(step for step, _ in losses)
    header = ["steps", "loss"] + [f"{b} grad" for b in blocks] + [f"{b} out RMS" for b in blocks]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for start in range(0, last, every):
        end = min(start + every, last)
        cells = [f"{start + 1}-{end}", _fmt(_window_mean(losses, start, end))]
        for key in ("grad_norm", "out_rms"):
            for block in blocks:
                series = [(d["step"], d["blocks"].get(block, {}).get(key)) for d in diagnostics]
                cells.append(_fmt(_window_mean(series, start, end)))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"


def main() -> None:
    """Print the tables of every run under the folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a deco demo --out folder")
    parser.add_argument("--every", type=int, default=250, help="steps per table row")
    args = parser.parse_args()
    runs = sorted(p.parent.parent for p in args.out.glob("runs/seed*/*/stage2/metrics.jsonl"))
    if not runs:
        raise SystemExit(f"error: no runs/seed*/PROJECTOR/stage2/metrics.jsonl under {args.out}")
    for run in runs:
        print(f"## {run.parent.name} / {run.name}\n")
        print(run_table(run, args.every))


if __name__ == "__main__":
    main()
