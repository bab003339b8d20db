"""The video comparison: spatial-only, temporal-only, 3D (DeCo order), 3D (PLLaVA order) and a Q-Former
over all frames, at one token budget, each trained in two stages through `deco.train.run_training` and
scored on held-out videos, for several seeds.

Run configs come from the image demo's `stage_config` (same LM, steps, batch, learning-rate rule, data
order per seed); only the projector options and the dataset differ: a VideoConversationDataset that
loads each `image` entry as a video of F frames.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from deco.config import Config
from deco.demo.cache import Assets, default_cache_dir
from deco.demo.evaluate import answer_all, load_test, normalize
from deco.demo.runner import read_losses, stage_config
from deco.demo.video_questions import FAMILIES
from deco.demo.video_settings import VideoDemoSettings
from deco.errors import ConfigError, DecoError

Status = Callable[[str], None]
TEMPLATE = "vicuna_v1"


def video_config(settings: VideoDemoSettings, assets: Assets, name: str, stage: int, run_dir: Path,
                 seed: int, quiet: bool) -> Config:
    """The image demo's run config for this stage, with the video projector's options."""
    config = stage_config(settings.as_demo_settings(), assets, name, stage, run_dir, seed, quiet)
    config.projector.options = settings.options(name)
    return config


def token_budget(settings: VideoDemoSettings) -> dict[str, dict[str, int]]:
    """Tokens per video and projector parameters for each projector; all token counts must agree."""
    from deco.projectors import build_projector

    grid = (settings.videos.frames, settings.grid, settings.grid)
    out = {}
    for name in settings.projectors:
        with torch.device("meta"):
            proj = build_projector(name, settings.encoder.hidden_size, settings.lm.hidden_size, settings.options(name))
        out[name] = {"tokens": proj.num_tokens(grid), "params": proj.num_parameters()}
    counts = {v["tokens"] for v in out.values()}
    if len(counts) > 1:
        raise ConfigError(f"video demo: projectors must emit equal token budgets, got "
                          f"{ {k: v['tokens'] for k, v in out.items()} }")
    return out


def train_video_projector(settings: VideoDemoSettings, assets: Assets, name: str, run_root: Path, seed: int,
                          quiet: bool, status: Status) -> dict[str, Any]:
    """Stage 1 (projector only) then stage 2 (projector + LM) on the video dataset."""
    from deco.data.video_dataset import VideoConversationDataset
    from deco.model import build_model
    from deco.train import run_training

    out: dict[str, Any] = {}
    for stage in (1, 2):
        run_dir = run_root / f"stage{stage}"
        shutil.rmtree(run_dir, ignore_errors=True)
        config = video_config(settings, assets, name, stage, run_dir, seed, quiet)
        processor = build_model(config).processor()  # the processor of the model run_training builds
        data = VideoConversationDataset(config.data.train_file, config.data.image_folder, processor,
                                        config.data.template, config.data.max_length, check_videos=False)
        steps = config.train.max_steps
        status(f"[bold]{name}[/] seed {seed} · stage {stage} ({'projector only' if stage == 1 else 'projector + LM'}), "
               f"{steps} steps")
        start = time.perf_counter()
        summary = run_training(config, dataset=data)
        out[f"stage{stage}"] = {"seconds": time.perf_counter() - start, "train_seconds": summary["train_seconds"],
                                "run_dir": str(run_dir)}
    return out


def score_families(questions: list[dict[str, Any]], answers: list[str]) -> dict[str, Any]:
    """Exact-match accuracy per family and overall (mean over questions)."""
    hits: dict[str, list[float]] = defaultdict(list)
    for q, a in zip(questions, answers, strict=True):
        hits[q["family"]].append(float(normalize(a) == normalize(q["answer"])))
    every = [h for v in hits.values() for h in v]
    return {"overall": sum(every) / len(every), "families": {f: sum(v) / len(v) for f in FAMILIES if (v := hits.get(f))},
            "questions": len(every)}


def evaluate_video_run(settings: VideoDemoSettings, assets: Assets, stage2_dir: Path) -> dict[str, Any]:
    """Accuracy of the final model on the whole held-out split; checkpoints are removed."""
    from deco.model import load_model
    from deco.train.checkpoint import list_checkpoints

    test = load_test(assets.data_dir / "test.json")
    model = load_model(stage2_dir / "final")
    answers = answer_all(model, test, assets.images, settings.eval.batch_size, max_new_tokens=3, videos=True)
    for folder in (stage2_dir, stage2_dir.parent / "stage1"):
        for _, ckpt in list_checkpoints(folder):
            shutil.rmtree(ckpt, ignore_errors=True)
    return {"final": score_families(test, answers),
            "predictions": [{"id": q["id"], "answer": a} for q, a in zip(test, answers, strict=True)]}


def summarise(runs: list[dict[str, Any]], projectors: list[str]) -> dict[str, dict[str, Any]]:
    """Per projector: mean and SD over seeds of every family's accuracy and of the overall score."""
    out: dict[str, dict[str, Any]] = {}
    for name in projectors:
        mine = [r for r in runs if r["projector"] == name]
        if not mine:
            continue
        table: dict[str, list[float]] = defaultdict(list)
        for r in mine:
            table["overall"].append(r["final"]["overall"])
            for f, acc in r["final"]["families"].items():
                table[f].append(acc)
        out[name] = {k: {"mean": statistics.fmean(v), "sd": statistics.stdev(v) if len(v) > 1 else 0.0}
                     for k, v in table.items()}
        out[name]["seconds"] = statistics.fmean(r["train"]["stage1"]["seconds"] + r["train"]["stage2"]["seconds"]
                                                for r in mine)
    return out


def report_markdown(results: dict[str, Any]) -> str:
    """The results table (mean ± SD over seeds) with the majority baseline row."""
    families = [f for f in FAMILIES if f in results["majority_baseline"]]
    head = "| projector | tokens | params | " + " | ".join(families) + " | overall | train s |"
    lines = [head, "|" + "---|" * (len(families) + 5)]
    for name, row in results["summary"].items():
        cells = [f"{row[f]['mean']:.2f} ± {row[f]['sd']:.2f}" if f in row else "-" for f in families]
        budget = results["budget"][name]
        lines.append(f"| {name} | {budget['tokens']} | {budget['params']:,} | " + " | ".join(cells)
                     + f" | {row['overall']['mean']:.2f} ± {row['overall']['sd']:.2f} | {row['seconds']:.0f} |")
    base = results["majority_baseline"]
    lines.append("| majority answer | | | " + " | ".join(f"{base[f]:.2f}" for f in families) + " | | |")
    return "\n".join(lines) + "\n"


def run_video_job(job: dict[str, Any]) -> dict[str, Any]:
    """One (projector, seed) in a worker process, single-threaded (as the image demo's jobs): train both
    stages, score the final model, write `predictions.json`; its output goes to `log.txt`."""
    import contextlib

    from deco.config import _from_dict

    torch.set_num_threads(job["threads"])
    settings = _from_dict(VideoDemoSettings, job["settings"], "<video demo job>")
    assets = Assets(**{k: Path(v) if k.endswith("dir") and v is not None else v for k, v in job["assets"].items()})
    root = Path(job["run_root"])
    root.mkdir(parents=True, exist_ok=True)
    name, seed = job["projector"], job["seed"]
    started = time.perf_counter()
    with open(root / "log.txt", "w", encoding="utf-8") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        train = train_video_projector(settings, assets, name, root, seed, True, lambda m: print(m, flush=True))
        result = evaluate_video_run(settings, assets, root / "stage2")
    (root / "predictions.json").write_text(json.dumps(result["predictions"]), encoding="utf-8")
    return {"projector": name, "seed": seed, "train": train, "final": result["final"],
            "job_seconds": time.perf_counter() - started, "losses": read_losses(root / "stage2")}


def run_video_demo(
    settings: VideoDemoSettings,
    out_dir: str | Path,
    cache_dir: str | Path | None = None,
    rebuild: bool = False,
    workers: int | None = None,
    status: Status = print,
) -> dict[str, Any]:
    """Build (or reuse) the assets, then train and score every (projector, seed) in `workers` processes
    (default: one per CPU core, one thread each); writes results.json and report.md as runs finish."""
    import dataclasses
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from deco.demo.report import machine
    from deco.demo.schedule import default_workers
    from deco.demo.video_data import prepare_video_assets

    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    budget = token_budget(settings)
    assets = prepare_video_assets(settings, cache_dir or default_cache_dir(), rebuild, status)
    keys = [(p, s) for s in settings.seeds for p in settings.projectors]
    jobs = [{"projector": p, "seed": s, "run_root": str(out_dir / "runs" / f"{p}-seed{s}"), "threads": 1,
             "settings": settings.to_dict(),
             "assets": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(assets).items()}}
            for p, s in keys]
    workers = workers or default_workers(len(jobs))
    status(f"{len(jobs)} jobs ({len(settings.projectors)} projectors x {len(settings.seeds)} seeds) on {workers} "
           f"worker(s); each job logs to {out_dir / 'runs'}/<projector>-seed<seed>/log.txt")
    done: dict[tuple[str, int], dict[str, Any]] = {}
    results: dict[str, Any] = {}
    context = multiprocessing.get_context("spawn")  # a clean interpreter: no forked torch thread pools
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        pending = {pool.submit(run_video_job, job): key for job, key in zip(jobs, keys, strict=True)}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                key = pending.pop(future)
                try:
                    done[key] = future.result()
                except Exception as exc:
                    log = out_dir / "runs" / f"{key[0]}-seed{key[1]}" / "log.txt"
                    raise DecoError(f"video demo job {key[0]} (seed {key[1]}) failed: {exc}; see {log}") from exc
                status(f"  {key[0]} seed {key[1]}: overall {done[key]['final']['overall']:.2f} "
                       f"({done[key]['job_seconds']:.0f} s)")
                runs = [done[k] for k in keys if k in done]
                # Written after every job, so an interrupted comparison still reports what it finished.
                results = {"settings": settings.to_dict(), "budget": budget, "data": assets.data_summary,
                           "majority_baseline": assets.data_summary["majority_baseline"],
                           "encoder": assets.encoder_report, "runs": runs,
                           "summary": summarise(runs, settings.projectors), "workers": workers,
                           "seconds": time.perf_counter() - started, "machine": machine(),
                           "complete": len(runs) == len(keys)}
                (out_dir / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
                (out_dir / "report.md").write_text(report_markdown(results), encoding="utf-8")
    return results


if __name__ == "__main__":  # python -m deco.demo.video_runner OUT_DIR [--quick | --long]
    import sys

    from deco.demo.video_settings import video_settings

    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    res = run_video_demo(video_settings(quick="--quick" in sys.argv, long="--long" in sys.argv),
                         args[0] if args else "runs/video-demo")
    print(report_markdown(res))
    print(f"total {res['seconds']:.0f} s")
