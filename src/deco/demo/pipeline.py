"""`deco demo` end to end, for both scene kinds (images; videos with `--video`): settings -> cached
assets -> jobs -> results.json, results.md, plots. Above the shared core (deco.demo.core): it looks the
settings' kind up (deco.demo.kinds) and hands it down."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from deco.demo.core.cache import Assets, default_cache_dir
from deco.demo.core.settings import DemoSettings
from deco.demo.kinds import load_settings, prepare_assets, scene_kind, settings_from_dict
from deco.errors import ConfigError

MARKER = ".deco-demo"


@dataclass
class DemoOptions:
    """What the command line chose."""

    quick: bool = False
    paper_geometry: bool = False
    video: bool = False  # the video kind (configs/demo-video.yaml); a --config file may also say `kind: video`
    long: bool = False  # the video kind's `long` profile
    seed: int = 0
    seeds: int | None = None  # None: the settings' `seeds`
    projectors: list[str] | None = None
    steps: int | None = None
    out: Path = Path("deco-demo")
    cache_dir: Path | None = None
    no_cache: bool = False
    workers: int | None = None
    config: Path | None = None
    keep_checkpoints: bool = False
    sweep: bool = False
    ladder: bool = False
    rungs: list[str] | None = None  # --ladder: run only these rungs (in this order)
    extra: dict[str, Any] = field(default_factory=dict)


def resolve_settings(opts: DemoOptions) -> DemoSettings:
    """Built-in or file settings, profiles, then the command-line choices."""
    profiles = tuple(p for p, on in (("quick", opts.quick), ("paper_geometry", opts.paper_geometry),
                                     ("long", opts.long)) if on)
    settings = load_settings(opts.config, profiles, "video" if opts.video else None)
    data = settings.to_dict()
    if opts.seeds is not None:
        data["seeds"] = opts.seeds
    if opts.projectors:
        data["projectors"] = list(opts.projectors)
    if opts.rungs:
        have = data["ladder"]["rungs"]
        unknown = [r for r in opts.rungs if r not in have]
        if unknown:
            raise ConfigError(f"--rungs: unknown rung(s) {', '.join(unknown)}; the ladder has {', '.join(have)}")
        data["ladder"]["rungs"] = {r: have[r] for r in opts.rungs}
    if opts.steps is not None:
        if opts.steps < 1:
            raise ConfigError(f"--steps must be >= 1, got {opts.steps}")
        data["train"]["stage2_steps"] = opts.steps
    for key, value in opts.extra.items():  # tests: overrides such as "seeds" or "scenes.train_images"
        *sections, name = key.split(".")
        target = data
        for section in sections:
            target = target[section]
        target[name] = value
    return settings_from_dict(data, "demo settings + command line")


def run_reduced(opts: DemoOptions, names: list[str], console: Console | None = None,
                trained_in: list[Path] | None = None) -> dict[str, Any]:
    """`deco demo --reduce`: reduce the finished demo's mlp models in --out (trains nothing); writes
    reduced.json and reduced.md there. `trained_in`: other finished demo folders (same seeds and questions)
    whose trained projectors join the table."""
    from deco.demo.core.reduced import evaluate_reduced, markdown

    console = console or Console()
    settings = resolve_settings(opts)
    if settings.kind != "image":
        raise ConfigError("--reduce compares token reducers on the image demo (a video's tokens are not a patch grid)")
    assets = _assets(settings, opts, console)
    payload = evaluate_reduced(opts.out, names, settings, scene_kind(settings), assets,
                               log=lambda m: console.print(m, highlight=False), trained_in=trained_in)
    report_json = opts.out / "reduced.json"
    report_json.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    text = markdown(payload)
    (opts.out / "reduced.md").write_text(text, encoding="utf-8")
    console.print(text, markup=False)
    return payload


def _prepare_out(out: Path) -> Path:
    """Create the output folder; an earlier demo's runs there are replaced, anything else is refused."""
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise ConfigError(f"--out {out} exists and is not a deco demo folder; choose an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by `deco demo`; its runs are replaced by the next demo run here\n")
    runs = out / "runs"
    if runs.exists():
        shutil.rmtree(runs)
    return runs


# A watcher of the run besides the console (the app's progress view): (stage, steps done, steps in all, phase),
# called with the same counts the console's bars show.
Observer = Callable[[str, int, int, str], None]


def _ignore(stage: str, done: int, total: int, phase: str) -> None:
    return None


def _assets(settings: DemoSettings, opts: DemoOptions, console: Console, observe: Observer = _ignore) -> Assets:
    cache = opts.cache_dir or default_cache_dir()
    columns = (TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TextColumn("ETA"),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bars:
        def bar(name: str, total: int, stage: str) -> Callable[[int, int], None]:
            task = bars.add_task(name, total=total, start=False)

            def progress(done: int, total: int) -> None:
                if done == 1:
                    bars.start_task(task)
                bars.update(task, completed=done, total=total)
                observe(stage, done, total, "")

            return progress

        text_lm = settings.kind == "image" and settings.lm.pretrain_steps > 0
        return prepare_assets(settings, cache, rebuild=opts.no_cache, status=lambda m: console.print(f"  {m}"),
                              progress=bar("encoder pretraining", settings.encoder.pretrain_steps, "encoder"),
                              lm_progress=bar("LM pretraining (text)", settings.lm.pretrain_steps, "lm") if text_lm
                              else None)


def geometry(settings: DemoSettings, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Image (or frame) size, frames, patch grid, token counts per projector."""
    tokens = {r["projector"]: r["visual_tokens"] for r in runs}
    geo = {"image_size": settings.frame_size, "patch_size": settings.encoder.patch_size,
           "patch_grid": f"{settings.grid}x{settings.grid}", "visual_tokens": tokens}
    if settings.kind == "video":  # every projector emits the same budget (checked when the settings load)
        return {**geo, "frames": settings.videos.frames, "compressed_grid": str(next(iter(tokens.values()), 0))}
    h, w = settings.token_grid
    return {**geo, "compressed_grid": f"{h}x{w} = {h * w}"}


def run_demo(opts: DemoOptions, console: Console | None = None, observe: Observer = _ignore) -> dict[str, Any]:
    """Run the whole demo; returns the payload written to results.json. `observe` hears each step count (assets,
    then every job's), and ("report", 0, 1, "") when only the report is left."""
    from deco.demo.core import notes, plots, report
    from deco.demo.core.evaluate import load_test
    from deco.demo.core.schedule import default_workers, demo_jobs, run_jobs

    console = console or Console()
    start = time.perf_counter()
    settings = resolve_settings(opts)
    kind = scene_kind(settings)
    runs_dir = _prepare_out(opts.out)
    if opts.sweep and settings.kind == "video":
        raise ConfigError("--sweep chooses learning rates on the image scenes' validation split; videos have none")
    if opts.ladder and (settings.kind == "video" or opts.sweep):
        raise ConfigError("--ladder runs on the image scenes and not together with --sweep")
    if opts.ladder:  # the ladder's own seed count unless --seeds says otherwise
        seeds = [opts.seed + i for i in range(opts.seeds or settings.ladder.seeds)]
        jobs = len(seeds) * len(settings.ladder.rungs)
    else:
        seeds = [opts.seed + i for i in range(settings.seeds)]
        jobs = (len(settings.sweep.lrs) * len(settings.sweep.warmups) if opts.sweep else len(seeds)) * len(
            settings.projectors)
    workers = opts.workers or default_workers(jobs)
    console.rule("[bold]deco demo" + (" --video" if settings.kind == "video" else ""))
    if settings.kind == "video":
        from deco.demo.video.settings import token_budget

        seen = (f"Videos of {settings.videos.frames} frames of {settings.frame_size} px -> {settings.videos.frames} x "
                f"{settings.grid}x{settings.grid} patch tokens; every projector emits "
                f"{next(iter(token_budget(settings).values()))['tokens']}.")
    else:
        h, w = settings.token_grid
        seen = (f"Images {settings.frame_size} px -> {settings.grid}x{settings.grid} = {settings.grid ** 2} patch "
                f"tokens; compressors emit {h}x{w} = {h * w}.")
    what = f"Ladder rungs {', '.join(settings.ladder.rungs)}" if opts.ladder else f"Projectors {', '.join(settings.projectors)}"
    console.print(
        f"{what}; seeds {seeds}. {seen} "
        f"Stage 1 {settings.train.stage1_steps} + stage 2 {settings.train.stage2_steps} steps of batch "
        f"{settings.train.batch_size}, equal for all; {workers} worker process(es)."
    )
    assets = _assets(settings, opts, console, observe)
    asset_seconds = time.perf_counter() - start
    console.print(f"  assets ready in {asset_seconds:.0f} s ({'built: ' + ', '.join(assets.built) if assets.built else 'cached'})"
                  f" at {assets.data_dir.parent}")
    if opts.sweep:
        return _run_sweep(settings, assets, opts, runs_dir, workers, start, console)
    if opts.ladder:
        return _run_ladder(settings, assets, opts, runs_dir, seeds, workers, start, console)
    runs = run_jobs(settings, kind, assets, demo_jobs(settings, seeds, runs_dir), workers, opts.keep_checkpoints,
                    console, observe)
    observe("report", 0, 1, "")
    summary = report.summarize(runs, settings.eval.loss_steps)
    baseline = assets.data_summary["majority_baseline"]
    payload: dict[str, Any] = {
        "command": " ".join(["deco", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("deco") else "deco demo",
        "kind": settings.kind,
        "machine": report.machine(),
        "workers": workers,
        "seeds": seeds,
        "geometry": geometry(settings, runs),
        "projector_options": {p: kind.projector_options(settings, p, None) for p in settings.projectors},
        "projectors": summary,
        "majority_baseline": baseline,
        "test_questions_per_family": assets.data_summary["test_per_family"],
        "assets": {"built": assets.built, "encoder": assets.encoder_report, "data": assets.data_summary},
        "settings": settings.to_dict(),
        # per-step diagnostics stay in each run's diagnostics.jsonl (runs/); --ladder summarises them
        "runs": [{k: v for k, v in r.items() if k not in ("answers", "diagnostics")} for r in runs],
    }
    payload["notes"] = notes.observations(payload)
    test = load_test(assets.data_dir / "test.json", settings.eval.test_images)
    first = {r["projector"]: r["answers"] for r in runs if r["seed"] == seeds[0]}
    plots.loss_plot(runs, opts.out / "loss_curves.png")
    (opts.out / "answers.json").write_text(json.dumps({"seed": seeds[0], "answers": first}), encoding="utf-8")
    payload["relevance"] = []
    if settings.kind == "image":  # figures of single images, and relevance maps over an image's patch grid
        plots.family_bars(summary, baseline, opts.out / "accuracy_by_family.png", kind.families)
        plots.learning_curves(summary, opts.out / "learning_curves.png")
        plots.example_figures(test, first, assets.images, settings.eval.examples, opts.out / "examples")
        payload["analysis"] = _relevance_metrics(settings, runs_dir, seeds, test, assets.images, opts.out, console,
                                                 payload["relevance"])
    payload["wall_seconds"] = {"assets": round(asset_seconds, 1), "total": round(time.perf_counter() - start, 1)}
    # CPU time (this process and its finished workers): steadier than wall time on a shared machine.
    payload["cpu_seconds"] = round(report.cpu_seconds(), 1)
    report.write_json(opts.out / "results.json", payload)
    (opts.out / "results.md").write_text(report.markdown(payload), encoding="utf-8")
    if not console.is_terminal:  # a log file: do not squeeze the 14-column table into 80 characters
        console.width = max(console.width, 150)
    console.print(report.rich_table(summary, baseline, "Held-out exact-match accuracy"))
    for line in payload["notes"]:
        console.print(f"• {line}")
    console.print(f"Done in {payload['wall_seconds']['total']:.0f} s. Results, plots and examples in {opts.out}/")
    return payload


def _run_sweep(settings: DemoSettings, assets: Assets, opts: DemoOptions, runs_dir: Path, workers: int,
               start: float, console: Console) -> dict[str, Any]:
    """`--sweep`: every projector at every learning rate on the validation split; writes sweep.json/.md."""
    from deco.demo.core import report, sweep
    from deco.demo.core.schedule import run_jobs, sweep_jobs

    console.print(f"  sweep: learning rates {', '.join(f'{lr:g}' for lr in settings.sweep.lrs)} x warmup ratios "
                  f"{', '.join(f'{w:g}' for w in settings.sweep.warmups)} for each projector, scored on the validation split")
    results = run_jobs(settings, scene_kind(settings), assets, sweep_jobs(settings, opts.seed, runs_dir), workers,
                       opts.keep_checkpoints, console)
    chosen = sweep.choose(results, settings.train.warmup_ratio)
    payload = {"command": "deco demo --sweep", "machine": report.machine(), "seed": opts.seed,
               "validation_questions": results[0]["final"]["questions"], "settings": settings.to_dict(),
               "wall_seconds": round(time.perf_counter() - start, 1), "cpu_seconds": round(report.cpu_seconds(), 1)}
    sweep.write(opts.out, chosen, payload)
    console.print((opts.out / "sweep.md").read_text(encoding="utf-8"), markup=False)
    return {**payload, "chosen": chosen}


def _run_ladder(settings: DemoSettings, assets: Assets, opts: DemoOptions, runs_dir: Path, seeds: list[int],
                workers: int, start: float, console: Console) -> dict[str, Any]:
    """`--ladder`: every rung at every seed on the test split; writes ladder.json/.md."""
    from deco.demo.core import ladder
    from deco.demo.core.schedule import run_jobs

    runs = run_jobs(settings, scene_kind(settings), assets, ladder.ladder_jobs(settings, seeds, runs_dir), workers,
                    opts.keep_checkpoints, console)
    return report_ladder(settings, assets, opts.out, seeds, runs, workers, start, console)


def report_ladder(settings: DemoSettings, assets: Assets, out: Path, seeds: list[int], runs: list[dict[str, Any]],
                  workers: int, start: float, console: Console) -> dict[str, Any]:
    """Summary, relevance metrics of every rung's final models, ladder.json and ladder.md in `out` (the jobs'
    run folders under out/runs)."""
    from deco.demo.core import ladder, report
    from deco.demo.core.evaluate import load_test

    summary = ladder.summarize_ladder(settings, runs, runs[0]["final"]["counts"])
    relevance: list[dict[str, Any]] = []
    test = load_test(assets.data_dir / "test.json", settings.eval.test_images)
    _relevance_metrics(settings, out / "runs", seeds, test, assets.images, out, console, relevance,
                       names=list(settings.ladder.rungs))
    ladder.add_relevance(summary, relevance)
    payload = {"command": " ".join(["deco", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("deco")
               else "deco demo --ladder", "machine": report.machine(), "workers": workers, "seeds": seeds,
               "majority_baseline": assets.data_summary["majority_baseline"], "settings": settings.to_dict(),
               "wall_seconds": round(time.perf_counter() - start, 1), "cpu_seconds": round(report.cpu_seconds(), 1),
               "runs": [{k: v for k, v in r.items() if k not in ("answers", "diagnostics", "losses")} for r in runs]}
    ladder.write(out, summary, payload)
    if not console.is_terminal:
        console.width = max(console.width, 150)
    console.print((out / "ladder.md").read_text(encoding="utf-8"), markup=False)
    return {**payload, "rungs": summary}


def _relevance_metrics(settings: Any, runs_dir: Path, seeds: list[int], test: list[dict[str, Any]],
                       image_folder: Path, out: Path, console: Console,
                       relevance_rows: list[dict[str, Any]], names: list[str] | None = None) -> str | None:
    """Redundancy / coverage / spatial-fidelity metrics of each trained projector (deco.analysis) for every
    seed, averaged over seeds (the spread in `<metric>_sd`), written to out/analysis/. Optional: the demo
    runs without the analysis package; returns the table's path."""
    try:
        from deco.analysis.compare import compare_projectors, write_table
        from deco.analysis.figures import metrics_bar_chart
    except ImportError:
        return None
    import statistics

    images = sorted({image_folder / q["image"] for q in test})[:16]
    per_seed: dict[str, list[dict[str, Any]]] = {}
    for seed in seeds:
        models = {p: runs_dir / f"seed{seed}" / p / "stage2" / "final" for p in names or settings.projectors}
        for row in compare_projectors({p: d for p, d in models.items() if d.is_dir()}, images):
            per_seed.setdefault(row["model"], []).append(row)
    rows = []
    for seen in per_seed.values():
        row = dict(seen[0])
        for key, value in seen[0].items():
            values = [r[key] for r in seen]
            if isinstance(value, float) and all(isinstance(v, (int, float)) for v in values):
                row[key] = statistics.fmean(values)
                row[f"{key}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
        row["seeds"] = len(seen)
        # DeCo's Query-to-Patch maps are its pooling matrix (the MLP's: one patch each): spatial fidelity holds by
        # construction, not because training kept it. Said in the table so nobody reads it as a finding.
        row["by_construction"] = row.get("projector") in ("deco", "mlp", "linear")
        rows.append(row)
    json_path, _ = write_table(rows, out / "analysis")
    relevance_rows[:] = rows
    metrics_bar_chart(rows, out / "analysis" / "metrics.png")
    console.print(f"  relevance metrics of the trained projectors ({len(seeds)} seed(s), {len(images)} test images "
                  f"each): {out / 'analysis'}/")
    return str(json_path)
