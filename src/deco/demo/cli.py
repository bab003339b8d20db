"""`deco demo`: registered on the main CLI app (deco.cli imports this module and calls `register`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo_command(
    quick: Annotated[bool, typer.Option("--quick", help="DeCo vs Q-Former only, 400 stage-2 steps (a convergence snapshot).")] = False,
    paper_geometry: Annotated[
        bool, typer.Option("--paper-geometry", help="24x24 patches -> 12x12 tokens as in the paper (much slower).")
    ] = False,
    seed: Annotated[int, typer.Option(help="First training seed (model init and data order).")] = 0,
    seeds: Annotated[int | None, typer.Option(help="Number of seeds (seed, seed+1, ...); >1 reports mean and SD "
                                                   "(default 1; --video: 3, --video --long: 1).")] = None,
    projectors: Annotated[
        str | None, typer.Option(help="Comma-separated projectors, e.g. mlp,deco,qformer (default: all five).")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Stage-2 optimizer steps per projector (stage 1 unchanged).")] = None,
    out: Annotated[Path, typer.Option(help="Output folder for results, plots and runs.")] = Path("deco-demo"),
    cache_dir: Annotated[
        Path | None, typer.Option(help="Cache for the dataset and encoder (default ~/.cache/deco/demo).")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Rebuild the dataset and encoder.")] = False,
    workers: Annotated[int | None, typer.Option(help="Parallel jobs (default: one per CPU core).")] = None,
    config: Annotated[Path | None, typer.Option(help="Demo settings YAML (default: built in; see configs/demo.yaml, "
                                                               "configs/demo-video.yaml).")] = None,
    keep_checkpoints: Annotated[
        bool, typer.Option("--keep-checkpoints", help="Keep intermediate checkpoints (the final models are kept).")
    ] = False,
    sweep: Annotated[
        bool, typer.Option("--sweep", help="Learning-rate sweep: each projector at each sweep.lrs value, scored on "
                                           "the validation split; prints the train.projector_lrs to use.")
    ] = False,
    ladder: Annotated[
        bool, typer.Option("--ladder", help="From DeCo to the C-/D-Abstractor one change at a time (ladder.rungs), each "
                                            "at ladder.seeds seeds (or --seeds); writes ladder.md with gradient and "
                                            "activation diagnostics.")
    ] = False,
    rungs: Annotated[
        str | None, typer.Option(help="With --ladder: comma-separated rungs to run, e.g. deco,cabs-d0 (default: all).")
    ] = None,
    video: Annotated[
        bool, typer.Option("--video", help="The temporal-pooling experiment on synthetic videos instead (the same runner, "
                                           "settings schema, cache and report; configs/demo-video.yaml).")
    ] = False,
    long: Annotated[bool, typer.Option("--long", help="With --video: one seed, 3x the default steps (about 8 "
                                                      "minutes on 2 cores; with --seeds 3 about 17).")] = False,
    reduce: Annotated[
        str | None, typer.Option("--reduce", help="Trains nothing: reduce the finished demo in --out, its mlp model cut "
                                                  "to the compressors' token count by each training-free reducer "
                                                  "(comma-separated: random,pool,divprune,visionzip,vispruner,fastv "
                                                  "or 'all'), beside the trained projectors; writes reduced.md.")
    ] = None,
    trained_in: Annotated[
        list[Path] | None, typer.Option("--trained-in", help="With --reduce: also list the trained projectors of this "
                                                             "finished demo folder (same seeds and questions; repeatable).")
    ] = None,
) -> None:
    """Train and compare the projectors on synthetic spatial questions, on this machine, with no downloads.

    Builds (and caches) a Sort-of-CLEVR-style dataset and a tiny pretrained ViT, then runs the two-stage LLaVA
    recipe through `deco train`'s code for each projector at equal steps, data and learning-rate rules, the
    compressors at the same token count, and scores greedy answers on a held-out split. Writes results.json,
    results.md, plots and example images to --out.
    """
    from deco.demo.pipeline import DemoOptions, run_demo, run_reduced

    names = [p.strip() for p in projectors.split(",") if p.strip()] if projectors else None
    if reduce:
        from deco.reducers.registry import reducer_names

        chosen = reducer_names() if reduce.strip() == "all" else [r.strip() for r in reduce.split(",") if r.strip()]
        run_reduced(DemoOptions(out=out, cache_dir=cache_dir, config=config, seed=seed, seeds=seeds), chosen,
                    trained_in=list(trained_in or []))
        return
    run_demo(DemoOptions(quick=quick, paper_geometry=paper_geometry, video=video, long=long, seed=seed, seeds=seeds,
                         projectors=names, steps=steps, out=out, cache_dir=cache_dir, no_cache=no_cache, workers=workers,
                         config=config, keep_checkpoints=keep_checkpoints, sweep=sweep,
                         ladder=ladder, rungs=[r.strip() for r in rungs.split(",") if r.strip()] if rungs else None))


def register(app: typer.Typer) -> None:
    """Add `demo` to the deco CLI."""
    app.command("demo")(demo_command)
