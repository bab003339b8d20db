"""The demo's cold path: building the quick demo's assets (dataset, encoder, text-pretrained LM) into an
empty cache, the encoder in a second process beside the dataset and LM (`parallel`) and one after another.

    PYTHONPATH=src nice -n 10 python benchmarks/app/cold_assets.py --json benchmarks/app/cold-assets-2core.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--modes", nargs="+", default=["parallel", "sequential"])
    args = parser.parse_args()

    from deco.demo.kinds import prepare_assets
    from deco.demo.pipeline import DemoOptions, resolve_settings
    from deco.train.report.runinfo import cpu_model

    settings = resolve_settings(DemoOptions(quick=True))
    record = {"machine": cpu_model(), "cores": len(os.sched_getaffinity(0)), "runs": []}
    for mode in args.modes:
        cache = Path(tempfile.mkdtemp(prefix="deco-cold-"))
        load = os.getloadavg()
        start = time.perf_counter()
        assets = prepare_assets(settings, cache, parallel=mode == "parallel", status=print)
        seconds = time.perf_counter() - start
        record["runs"].append({"mode": mode, "seconds": round(seconds, 1), "built": assets.built,
                               "load_before": load, "load_after": os.getloadavg()})
        print(f"{mode}: {seconds:.0f} s")
        shutil.rmtree(cache, ignore_errors=True)
        args.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
