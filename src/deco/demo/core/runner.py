"""The comparison: for each seed and projector, two-stage training through `deco.train.run_training`,
then greedy evaluation of the intermediate checkpoints and the final model on the held-out split.
One job function for both scene kinds: run_training lays the data out for the model it builds (a
projector with a time axis reads each `image` entry as a video); the job's `SceneKind` (deco.demo.core.kind)
fills in its projectors' geometry, says whether evaluation asks with the video, and names the families
scored.

Every projector gets the same steps, batch size, data order (same seed), learning-rate rule and LM;
the compressors emit the same number of visual tokens. Training time is measured, not equalised.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deco.config import Config, config_from_dict
from deco.demo.core.cache import Assets
from deco.demo.core.evaluate import answer_all, load_test, score
from deco.demo.core.kind import SceneKind
from deco.demo.core.settings import DemoSettings
from deco.errors import NonFiniteError
from deco.train.report.diagnostics import DIAGNOSTICS_FILE, read_diagnostics

Progress = Callable[[str, int], None]  # (phase, units done in that phase)


def stage_config(
    settings: DemoSettings, kind: SceneKind, assets: Assets, projector: str, stage: int, run_dir: Path, seed: int, quiet: bool,
    lr: float | None = None, options: dict[str, Any] | None = None, warmup: float | None = None,
) -> Config:
    """A full deco run config for one stage of one projector (`lr`: the projector's learning rate in both
    stages instead of its configured one, for the sweep; `options`: a ladder rung's projector options over
    the demo's; `warmup`: the warmup ratio instead of train.warmup_ratio, for the sweep)."""
    t = settings.train
    steps = t.stage1_steps if stage == 1 else t.stage2_steps
    projector_lr = lr if lr is not None else t.projector_lrs.get(projector, t.stage1_lr if stage == 1 else t.stage2_lr)
    lm = settings.lm
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(str(assets.tokenizer_dir)))
    # The LM pretrained on the scenes' text (LLaVA starts from a pretrained Vicuna); without one, random.
    llm: dict[str, Any] = {"arch": "llama", "tokenizer": str(assets.tokenizer_dir)}
    if assets.lm_dir is not None:
        llm["pretrained"] = str(assets.lm_dir)
    else:
        llm["hf_config"] = {"hidden_size": lm.hidden_size, "intermediate_size": lm.intermediate_size,
                            "num_hidden_layers": lm.num_layers, "num_attention_heads": lm.num_heads,
                            "num_key_value_heads": lm.num_heads, "vocab_size": vocab,
                            "max_position_embeddings": 2048}
    data = {
        "model": {"dtype": "float32"},
        "vision": {"pretrained": str(assets.encoder_dir), "feature_layer": settings.encoder.feature_layer},
        "projector": {"name": projector, "options": kind.projector_options(settings, projector, options)},
        "llm": llm,
        "data": {
            "train_file": str(assets.data_dir / ("stage1.json" if stage == 1 else "stage2.json")),
            "image_folder": str(assets.images),
            "template": "plain" if stage == 1 else "vicuna_v1",
            "max_length": 2048,
            # The jobs fill the cores, one torch thread each: a loader worker or thread would only
            # take another job's core.
            "num_workers": 0,
            "prefetch_thread": False,
        },
        "train": {
            "stage": stage,
            "stage1_checkpoint": str(run_dir.parent / "stage1" / "final") if stage == 2 else None,
            "output_dir": str(run_dir),
            "seed": seed,
            "max_steps": steps,
            "global_batch_size": t.batch_size,
            "per_device_batch_size": t.batch_size,
            "lr": projector_lr if stage == 1 else t.stage2_lr,
            "projector_lr": projector_lr,
            "warmup_ratio": t.projector_warmups.get(projector, t.warmup_ratio) if warmup is None else warmup,
            "lr_schedule": t.schedule,
            "precision": "fp32",
            # Stage 2 keeps a checkpoint at each learning-curve point; stage 1 only its final model.
            "save_every": max(1, steps // t.checkpoints) if stage == 2 else steps,
            "keep_last": 0,
            "log_every": 1,
            "diagnostics_every": t.diagnostics_every,
            "quiet": quiet,
        },
    }
    return config_from_dict(data, f"demo config ({projector}, stage {stage})")


def checkpoint_steps(settings: DemoSettings) -> list[int]:
    """Stage-2 steps at which accuracy is measured (the last one is the final model)."""
    n, every = settings.train.stage2_steps, max(1, settings.train.stage2_steps // settings.train.checkpoints)
    steps = list(range(every, n, every))
    return [s for s in steps if s < n] + [n]


def train_projector(
    settings: DemoSettings, kind: SceneKind, assets: Assets, projector: str, run_root: Path, seed: int, progress: Progress,
    lr: float | None = None, options: dict[str, Any] | None = None, warmup: float | None = None,
) -> dict[str, Any]:
    """Stage 1 then stage 2 for one projector; returns wall and training times per stage."""
    from deco.train import run_training

    out: dict[str, Any] = {}
    for stage in (1, 2):
        run_dir = run_root / f"stage{stage}"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        progress(f"stage{stage}", 0)
        start = time.perf_counter()
        summary = run_training(stage_config(settings, kind, assets, projector, stage, run_dir, seed, quiet=True, lr=lr,
                                            options=options, warmup=warmup))
        out[f"stage{stage}"] = {"seconds": round(time.perf_counter() - start, 2),
                                "train_seconds": round(summary["train_seconds"], 2),
                                "skipped_samples": summary["skipped_samples"]}
    return out


def read_losses(run_dir: Path) -> list[list[float]]:
    """[step, loss] pairs of a run's metrics.jsonl."""
    from deco.train.report.metrics import read_metrics

    return [[r["step"], round(float(r["loss"]), 5)] for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r]


def read_probes(run_dir: Path) -> list[dict[str, Any]]:
    """The collapse probe the trainer logged at each checkpoint (deco.train.report.probe), with its step."""
    from deco.train.report.metrics import read_metrics
    from deco.train.report.probe import PROBE_FILE

    return read_metrics(run_dir / PROBE_FILE)


def eval_plan(settings: DemoSettings, assets: Assets, split: str = "test") -> tuple[list[dict], list[dict], int]:
    """(whole held-out split, learning-curve subset, number of eval batches a job runs). The sweep scores
    the validation split, final models only."""
    if split == "val":
        val = load_test(assets.data_dir / "val.json")
        return val, [], -(-len(val) // settings.eval.batch_size)
    test = load_test(assets.data_dir / "test.json", settings.eval.test_images)
    curve = load_test(assets.data_dir / "test.json", settings.eval.curve_images)
    b = settings.eval.batch_size
    intermediate = len(checkpoint_steps(settings)) - 1
    return test, curve, -(-len(test) // b) + intermediate * -(-len(curve) // b)


def evaluate_run(
    settings: DemoSettings, kind: SceneKind, assets: Assets, stage2_dir: Path, progress: Progress, keep_checkpoints: bool,
    split: str = "test",
) -> dict[str, Any]:
    """Accuracy of each stage-2 checkpoint (curve subset) and of the final model (whole held-out split)."""
    from deco.model import load_model
    from deco.train.rundir.checkpoint import TRAINABLE_FILE, list_checkpoints, load_tensors

    test, curve, _ = eval_plan(settings, assets, split)
    done = [0]

    def tick(n: int) -> None:
        done[0] += 1
        progress("eval", done[0])

    asking = {"max_new_tokens": settings.eval.max_new_tokens, "progress": tick, "videos": kind.videos}
    model = load_model(stage2_dir / "final")
    final_state = {k: v.clone() for k, v in model.state_dict().items()}
    curves = []
    for step, folder in list_checkpoints(stage2_dir):
        if step >= settings.train.stage2_steps or not curve:
            continue
        result = model.load_state_dict(load_tensors(folder / TRAINABLE_FILE), strict=False)
        if result.unexpected_keys:
            raise RuntimeError(f"{folder}: checkpoint tensors not in the model: {result.unexpected_keys[:3]}")
        answers = answer_all(model, curve, assets.images, settings.eval.batch_size, **asking)
        curves.append({"step": step, **score(curve, answers, kind)})
    model.load_state_dict(final_state)
    answers = answer_all(model, test, assets.images, settings.eval.batch_size, **asking)
    curve_ids = {q["id"] for q in curve}
    if curve:
        curves.append({"step": settings.train.stage2_steps,
                       **score(curve, [a for q, a in zip(test, answers, strict=True) if q["id"] in curve_ids],
                               kind)})
    if not keep_checkpoints:
        for stage_dir in (stage2_dir, stage2_dir.parent / "stage1"):
            for _, folder in list_checkpoints(stage_dir):
                shutil.rmtree(folder, ignore_errors=True)
    return {
        "final": score(test, answers, kind),
        "curve": curves,
        "answers": {q["id"]: a for q, a in zip(test, answers, strict=True)},
        "projector_params": sum(p.numel() for p in model.projector.parameters()),
        "visual_tokens": model.num_image_tokens,
    }


def _cpu_seconds() -> float:
    """CPU time of this process so far (a worker process runs several jobs one after another)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _diverged(job: dict[str, Any], settings: DemoSettings, kind: SceneKind, assets: Assets, root: Path,
              message: str) -> dict[str, Any]:
    """A sweep setting whose training met a non-finite loss: every question counts as wrong."""
    questions, _, _ = eval_plan(settings, assets, job.get("split", "test"))
    result = {"projector": job["projector"], "seed": job["seed"], "lr": job.get("lr"), "warmup": job.get("warmup"),
              "split": job.get("split", "test"), "rung": job.get("rung"), "options": job.get("options"),
              "diverged": message, "final": score(questions, [""] * len(questions), kind), "curve": [],
              "probe": [], "answers": {}}
    (root / "result.json").write_text(json.dumps(result), encoding="utf-8")
    return result


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One (projector, seed) of the job's scene kind (`job["kind"]`, a SceneKind): train both stages, evaluate,
    write `result.json`. Runs in a worker process: its output goes to `log.txt`, its progress to
    `progress.json` (the parent draws bars)."""
    import os
    import sys

    import torch

    from deco.demo.core.settings import settings_from_dict

    if job.get("stop_file") and Path(job["stop_file"]).exists():  # the demo is stopping: start nothing more
        raise RuntimeError("not started: the demo stopped")
    root = Path(job["run_root"])
    root.mkdir(parents=True, exist_ok=True)
    log = open(root / "log.txt", "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    torch.set_num_threads(job["threads"])
    kind: SceneKind = job["kind"]
    settings = settings_from_dict(job["settings"], "<dict>", {kind.name: kind})
    assets = Assets(**{k: Path(v) if k.endswith("_dir") and v is not None else v for k, v in job["assets"].items()})

    def progress(phase: str, done: int) -> None:
        tmp = root / "progress.json.tmp"
        tmp.write_text(json.dumps({"phase": phase, "done": done}), encoding="utf-8")
        os.replace(tmp, root / "progress.json")

    started, cpu_start = time.perf_counter(), _cpu_seconds()
    try:
        times = train_projector(settings, kind, assets, job["projector"], root, job["seed"], progress, job.get("lr"),
                                job.get("options"), job.get("warmup"))
    except NonFiniteError as exc:
        if job.get("split") != "val":  # the comparison stops on it; a sweep records the setting as diverged
            raise
        return _diverged(job, settings, kind, assets, root, str(exc))
    eval_start = time.perf_counter()
    result = evaluate_run(settings, kind, assets, root / "stage2", progress, job["keep_checkpoints"],
                          job.get("split", "test"))
    result.update(
        projector=job["projector"], seed=job["seed"], lr=job.get("lr"), split=job.get("split", "test"), times=times,
        rung=job.get("rung"), options=job.get("options"), warmup=job.get("warmup"),
        probe=read_probes(root / "stage2"),
        diagnostics={stage: read_diagnostics(root / stage / DIAGNOSTICS_FILE) for stage in ("stage1", "stage2")},
        eval_seconds=round(time.perf_counter() - eval_start, 2),
        job_seconds=round(time.perf_counter() - started, 2),
        job_cpu_seconds=round(_cpu_seconds() - cpu_start, 2),
        losses={"stage1": read_losses(root / "stage1"), "stage2": read_losses(root / "stage2")},
    )
    (root / "result.json").write_text(json.dumps(result), encoding="utf-8")
    progress("done", 0)
    return result
