"""Re-write a `deco demo --ladder` folder's report (ladder.json, ladder.md, analysis/) from its runs.

    python benchmarks/demo/ladder_report.py deco-demo-ladder

For a ladder whose jobs finished but whose report was written by an older deco (or interrupted after the
jobs): reads every runs/seed*/<rung>/result.json, and the settings, seeds and timing from ladder.json, and
runs the same report step `deco demo --ladder` ends with (deco.demo.pipeline.report_ladder).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console

from deco.demo.core.cache import default_cache_dir
from deco.demo.kinds import prepare_assets, settings_from_dict
from deco.demo.pipeline import report_ladder


def main() -> None:
    """Load the finished runs and write the report again."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the ladder's --out folder")
    args = parser.parse_args()
    old = json.loads((args.out / "ladder.json").read_text(encoding="utf-8"))
    settings = settings_from_dict(old["settings"], str(args.out / "ladder.json"))
    assets = prepare_assets(settings, default_cache_dir(), rebuild=False, status=print)
    runs = []
    for run in old["runs"]:  # the jobs' order; each job's full result (with diagnostics) is in its folder
        folder = args.out / "runs" / f"seed{run['seed']}" / run["rung"]
        runs.append(json.loads((folder / "result.json").read_text(encoding="utf-8")))
    payload = report_ladder(settings, assets, args.out, old["seeds"], runs, old["workers"],
                            time.perf_counter() - old["wall_seconds"], Console())
    payload["command"] = old["command"]  # the command that ran the jobs
    (args.out / "ladder.json").write_text(json.dumps(payload | {"rungs": payload["rungs"]}, indent=1) + "\n",
                                          encoding="utf-8")


if __name__ == "__main__":
    main()
