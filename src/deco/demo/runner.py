"""The comparison: for each seed and projector, two-stage training through `deco.train.run_training`,
then greedy evaluation of the intermediate checkpoints and the final model on the held-out split.

Every projector gets the same steps, batch size, data order (same seed), learning-rate rule and LM;
the compressors emit the same number of visual tokens. Training time is measured, not equalised.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deco.config import Config, config_from_dict
from deco.demo.cache import Assets
from deco.demo.evaluate import answer_all, load_test, score
from deco.demo.settings import DemoSettings
from deco.projectors import get_projector_class

Status = Callable[[str], None]


def projector_options(settings: DemoSettings, name: str) -> dict[str, Any]:
    """The projector's demo options plus its token count and input grid for the demo geometry."""
    fields = {f.name for f in dataclasses.fields(get_projector_class(name).config_class)}
    options = dict(settings.projector_options.get(name, {}))
    h, w = settings.token_grid
    if "grid" in fields:
        options["grid"] = [h, w]
    elif "num_queries" in fields:
        options["num_queries"] = h * w
    if "num_input_tokens" in fields:  # learnable pos-emb laid out on the encoder's grid
        options["num_input_tokens"] = settings.grid * settings.grid
    return options


def stage_config(
    settings: DemoSettings, assets: Assets, projector: str, stage: int, run_dir: Path, seed: int, quiet: bool
) -> Config:
    """A full deco run config for one stage of one projector."""
    t = settings.train
    steps = t.stage1_steps if stage == 1 else t.stage2_steps
    lm = settings.lm
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(str(assets.tokenizer_dir)))
    data = {
        "model": {"dtype": "float32"},
        "vision": {"pretrained": str(assets.encoder_dir), "feature_layer": settings.encoder.feature_layer},
        "projector": {"name": projector, "options": projector_options(settings, projector)},
        "llm": {
            "arch": "llama",
            "tokenizer": str(assets.tokenizer_dir),
            "hf_config": {"hidden_size": lm.hidden_size, "intermediate_size": lm.intermediate_size,
                          "num_hidden_layers": lm.num_layers, "num_attention_heads": lm.num_heads,
                          "num_key_value_heads": lm.num_heads, "vocab_size": vocab,
                          "max_position_embeddings": 2048},
        },
        "data": {
            "train_file": str(assets.data_dir / ("stage1.json" if stage == 1 else "stage2.json")),
            "image_folder": str(assets.images),
            "template": "plain" if stage == 1 else "vicuna_v1",
            "max_length": 2048,
        },
        "train": {
            "stage": stage,
            "stage1_checkpoint": str(run_dir.parent / "stage1" / "final") if stage == 2 else None,
            "output_dir": str(run_dir),
            "seed": seed,
            "max_steps": steps,
            "global_batch_size": t.batch_size,
            "per_device_batch_size": t.batch_size,
            "lr": t.stage1_lr if stage == 1 else t.stage2_lr,
            "warmup_ratio": t.warmup_ratio,
            "lr_schedule": t.schedule,
            "precision": "fp32",
            # Stage 2 keeps a checkpoint at each learning-curve point; stage 1 only its final model.
            "save_every": max(1, steps // t.checkpoints) if stage == 2 else steps,
            "keep_last": 0,
            "log_every": 1,
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
    settings: DemoSettings, assets: Assets, projector: str, run_root: Path, seed: int, quiet: bool, status: Status
) -> dict[str, Any]:
    """Stage 1 then stage 2 for one projector; returns times and the run folders."""
    from deco.train import run_training

    out: dict[str, Any] = {}
    for stage in (1, 2):
        run_dir = run_root / f"stage{stage}"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        steps = settings.train.stage1_steps if stage == 1 else settings.train.stage2_steps
        what = "projector only" if stage == 1 else "projector + LM"
        status(f"[bold]{projector}[/] seed {seed} · stage {stage} ({what}), {steps} steps")
        start = time.perf_counter()
        summary = run_training(stage_config(settings, assets, projector, stage, run_dir, seed, quiet))
        out[f"stage{stage}"] = {"seconds": time.perf_counter() - start, "train_seconds": summary["train_seconds"],
                                "run_dir": str(run_dir), "skipped_samples": summary["skipped_samples"]}
    return out


def read_losses(run_dir: Path) -> list[dict[str, float]]:
    """(step, loss) records of a run's metrics.jsonl."""
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [{"step": r["step"], "loss": r["loss"]} for r in map(json.loads, lines) if "loss" in r]


def evaluate_run(
    settings: DemoSettings, assets: Assets, stage2_dir: Path, status: Status, keep_checkpoints: bool
) -> dict[str, Any]:
    """Accuracy of each stage-2 checkpoint (curve subset) and of the final model (whole test split)."""
    import torch

    from deco.model import load_model
    from deco.train.checkpoint import TRAINABLE_FILE, list_checkpoints, load_tensors

    test = load_test(assets.data_dir / "test.json")
    curve_ids = {q["id"] for q in load_test(assets.data_dir / "test.json", settings.eval.curve_images)}
    curve = [q for q in test if q["id"] in curve_ids]
    model = load_model(stage2_dir / "final")
    final_state = {k: v.clone() for k, v in model.state_dict().items()}
    curves = []
    for step, folder in list_checkpoints(stage2_dir):
        if step >= settings.train.stage2_steps:
            continue
        tensors = load_tensors(folder / TRAINABLE_FILE)
        unexpected = model.load_state_dict(tensors, strict=False).unexpected_keys
        if unexpected:
            raise RuntimeError(f"{folder}: checkpoint tensors not in the model: {unexpected[:3]}")
        status(f"  evaluating step {step} on {len(curve)} questions")
        curves.append({"step": step, **score(curve, answer_all(model, curve, assets.images, settings.eval.batch_size))})
    model.load_state_dict(final_state)
    status(f"  evaluating the final model on {len(test)} held-out questions")
    with torch.no_grad():
        answers = answer_all(model, test, assets.images, settings.eval.batch_size)
    final = score(test, answers)
    curve_answers = [a for q, a in zip(test, answers, strict=True) if q["id"] in curve_ids]
    curves.append({"step": settings.train.stage2_steps, **score(curve, curve_answers)})
    if not keep_checkpoints:
        for _, folder in list_checkpoints(stage2_dir):
            shutil.rmtree(folder, ignore_errors=True)
        for _, folder in list_checkpoints(stage2_dir.parent / "stage1"):
            shutil.rmtree(folder, ignore_errors=True)
    predictions = [{"id": q["id"], "family": q["family"], "answer": a} for q, a in zip(test, answers, strict=True)]
    return {"final": final, "curve": curves, "predictions": predictions,
            "projector_params": sum(p.numel() for p in model.projector.parameters()),
            "visual_tokens": model.num_image_tokens}
