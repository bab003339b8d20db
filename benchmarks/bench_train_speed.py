"""Is `deco train`'s step fast? Ratios from one run, written to benchmarks/results/train_speed_<device>.json.

    python benchmarks/bench_train_speed.py              # CPU, ~10 minutes on 2 busy cores
    python benchmarks/bench_train_speed.py --compile    # also train.compile (slow on a CPU: C++ compiles)

What it measures (the machine and its load are recorded with the figures):
1. DeCo-144 vs MLP-576 stage-2 step time against their FLOP ratio: `deco bench` at the tiny size, which
   times deco train's own step (Loop.next_step) fed by deco train's DataLoader, at deco's default
   thread count (1) and at the process's (one per core). Goal: <= 1.10 x FLOPs.
2. Our loop vs Hugging Face `Trainer` (optim adamw_torch_fused, its default) on the same tiny model,
   data, batch, accumulation, clipping and precision, runs alternated; the median wall time between
   consecutive optimizer-step ends of each. Goal: ours / HF <= 1.0.
3. Data wait: `data_wait_fraction` and step time of `deco train` runs with the default loading (auto)
   at deco's default thread count (1) and at one thread per core, against loading on the training
   thread, one worker process and the read-ahead thread. Goal < 5% with the default.
4. AdamW implementations (fused, foreach, per-tensor loop) on the tiny stage-2 parameters and on a
   25M-parameter set: the figures behind train.optimizer=auto.
5. Peak tensor memory of the loss at vocab 32k (2 x 1024 tokens): plain fp32 cross-entropy vs the
   chunked one, forward + backward, for bf16 and fp32 logits.
6. (--compile) train.compile=true vs eager on configs/tiny.yaml: loss difference and wall time.
7. A worker's hand-off: next() on a ready batch with small tensors by value vs all in shared memory.
8. Where the tiny stage-2 step's time goes for MLP-576 and DeCo-144 (clocks around the step's own calls).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _overrides(data: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    return [f"data.train_file={data[0]}", f"data.image_folder={data[1]}", f"train.output_dir={out}",
            "train.save_every=0", "train.quiet=true", *extra]


def _step_times(stamps: list[float], skip: int) -> float:
    """Median seconds between consecutive step ends, after `skip` warm-up steps."""
    gaps = [b - a for a, b in zip(stamps[skip:], stamps[skip + 1:], strict=False)]
    return statistics.median(gaps)


def bench_flop_ratio(log: Any, threads: int) -> dict[str, Any]:
    """deco bench (tiny) at `threads` torch threads: DeCo-144 / MLP-576 step time vs FLOP ratio."""
    from deco.bench.runner import BenchOptions, run_bench

    data = run_bench(BenchOptions(projectors=["mlp", "deco"], tokens=[144], repeats=11, warmup=1, peer=False,
                                  threads=threads), log=log)
    mlp, deco = data["variants"]
    out = {"torch_threads": threads, "settings": data["settings"]["train_step"], "loader": data["loader"]}
    for stage in (1, 2):
        name = f"train_stage{stage}"
        t = deco["time_s"][name]["median"] / mlp["time_s"][name]["median"]
        f = deco["flops"][name]["total"] / mlp["flops"][name]["total"]
        parts = {c: deco["flops"][name][c] / mlp["flops"][name][c] for c in ("vision_tower", "projector", "llm")}
        out[name] = {"time_ratio": t, "flop_ratio": f, "time_over_flop_ratio": t / f, "flop_ratio_by_component": parts,
                     "gflops": {"mlp576": mlp["flops"][name]["total"] / 1e9, "deco144": deco["flops"][name]["total"] / 1e9},
                     "mlp576_s": mlp["time_s"][name]["median"], "deco144_s": deco["time_s"][name]["median"],
                     "mlp576_iqr_s": mlp["time_s"][name]["iqr"], "deco144_iqr_s": deco["time_s"][name]["iqr"]}
    out["goal_time_over_flop_ratio_max"] = 1.10
    return out


def _config(data: tuple[Path, Path], out: Path, stage1: Path, steps: int, batch: int, accum: int) -> Any:
    from deco.config import load_config

    return load_config(ROOT / "configs" / "tiny.yaml", _overrides(
        data, out, "train.stage=2", f"train.stage1_checkpoint={stage1}", f"train.max_steps={steps}",
        f"train.global_batch_size={batch * accum}", f"train.per_device_batch_size={batch}", "train.lr=2e-5",
        "train.log_every=1", "data.num_workers=0", "data.prefetch_thread=false"))


def ours(cfg: Any) -> float:
    """Our loop: median step-end gap from metrics.jsonl."""
    from deco.train import run_training
    from deco.train.report.metrics import read_metrics

    run_training(cfg)
    records = read_metrics(Path(cfg.train.output_dir) / "metrics.jsonl")
    return _step_times([r["time"] for r in records if "loss" in r], 3)


def hf_trainer(cfg: Any, steps: int) -> float:
    """HF Trainer on the same model (built by deco train's own set-up), data and settings."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from deco.data import DataCollator
    from deco.train.setup import build_dataset, model_for_stage

    model, _ = model_for_stage(cfg)
    data = build_dataset(cfg, model)
    collate = DataCollator.from_processor(model.processor())
    keys = ("input_ids", "attention_mask", "pixel_values", "labels")

    def collator(samples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = collate(samples)
        return {k: batch[k] for k in keys}

    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            stamps.append(time.perf_counter())

    class ForTrainer(torch.nn.Module):
        """DecoModel as Trainer expects it (no `config` dict); kwargs carry num_items_in_batch to the
        LLM's loss, so HF normalises by the step's loss tokens as we do."""

        def __init__(self) -> None:
            super().__init__()
            self.deco = model

        def forward(self, input_ids: Any, attention_mask: Any, pixel_values: Any, labels: Any, **kw: Any) -> Any:
            return self.deco(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                             labels=labels, **kw)

    t = cfg.train
    args = TrainingArguments(
        output_dir=str(Path(t.output_dir) / "hf"), max_steps=steps, per_device_train_batch_size=t.per_device_batch_size,
        gradient_accumulation_steps=t.global_batch_size // t.per_device_batch_size, learning_rate=t.lr,
        weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm, lr_scheduler_type="cosine", warmup_steps=math.ceil(0.03 * steps),
        optim="adamw_torch_fused", use_cpu=not torch.cuda.is_available(), report_to=[], save_strategy="no",
        logging_strategy="no", disable_tqdm=True, dataloader_num_workers=0, remove_unused_columns=False, seed=t.seed,
    )
    Trainer(model=ForTrainer(), args=args, train_dataset=data, data_collator=collator, callbacks=[Stamp()]).train()
    return _step_times(stamps, 3)


def bench_hf_peer(data: tuple[Path, Path], work: Path, stage1: Path, steps: int, rounds: int) -> dict[str, Any]:
    """Ours vs HF Trainer, alternated `rounds` times."""
    batch, accum = 8, 2
    got: dict[str, list[float]] = {"ours": [], "hf_trainer": []}
    for r in range(rounds):
        got["ours"].append(ours(_config(data, work / f"ours{r}", stage1, steps, batch, accum)))
        got["hf_trainer"].append(hf_trainer(_config(data, work / f"hf{r}", stage1, steps, batch, accum), steps))
    ours_s, hf_s = statistics.median(got["ours"]), statistics.median(got["hf_trainer"])
    return {"setup": f"configs/tiny.yaml stage 2 (projector + LLM), fp32, per-device batch {batch} x {accum} "
                     f"accumulation, clip 1.0, {steps} steps per run, {rounds} alternated runs each, both loading on the training thread (0 workers, no read-ahead "
                     "thread), so the loops are compared",
            "per_run_step_s": got, "ours_step_s": ours_s, "hf_trainer_step_s": hf_s,
            "ours_over_hf": ours_s / hf_s, "goal_max": 1.0}


def bench_data_wait(data: tuple[Path, Path], work: Path, stage1: Path, rounds: int) -> dict[str, Any]:
    """data_wait_fraction and step time of deco train runs (tiny, stage 2, batch 16) with the default
    loading (auto) at deco's default thread count and at one thread per core, against the other ways
    to load (on the training thread, one worker, the read-ahead thread); runs alternated."""
    import torch

    from deco.config import DataSection, load_config
    from deco.threads import DEFAULT_THREADS
    from deco.train import run_training
    from deco.train.loading.loader import auto_workers, loader_settings, usable_cores
    from deco.train.report.metrics import read_metrics

    cores = usable_cores()
    on_thread = ["data.num_workers=0", "data.prefetch_thread=false"]
    setups: dict[str, tuple[int, list[str]]] = {}
    for threads in dict.fromkeys((DEFAULT_THREADS, cores)):
        setups[f"default@{threads}t"] = (threads, [])
        setups[f"training_thread@{threads}t"] = (threads, on_thread)
        setups[f"read_ahead_thread@{threads}t"] = (threads, ["data.num_workers=0", "data.prefetch_thread=true"])
        setups[f"one_worker@{threads}t"] = (threads, ["data.num_workers=1"])
    got: dict[str, Any] = {"cores": cores, "deco_default_threads": DEFAULT_THREADS, "goal_max": 0.05,
                           "setups": {name: extra for name, (_, extra) in setups.items()}}
    runs: dict[str, dict[str, list[float]]] = {name: {"wait": [], "step_s": []} for name in setups}
    before = torch.get_num_threads()
    try:
        for r in range(rounds):
            for name, (threads, extra) in setups.items():
                torch.set_num_threads(threads)
                out = work / f"wait-{name}-{r}"
                cfg = load_config(ROOT / "configs" / "tiny.yaml", _overrides(
                    data, out, "train.stage=2", f"train.stage1_checkpoint={stage1}", "train.max_steps=60",
                    "train.global_batch_size=16", "train.per_device_batch_size=16", *extra))
                run_training(cfg)
                records = [r for r in read_metrics(out / "metrics.jsonl") if "data_wait_fraction" in r][3:]
                runs[name]["wait"].append(statistics.median(r["data_wait_fraction"] for r in records))
                runs[name]["step_s"].append(_step_times([r["time"] for r in records], 0))
        for threads in dict.fromkeys((DEFAULT_THREADS, cores)):
            torch.set_num_threads(threads)
            got[f"default_loading@{threads}t"] = loader_settings(DataSection(), torch.device("cpu"), 1).describe()
            got[f"auto_workers@{threads}t"] = auto_workers("cpu", cores, threads)
    finally:
        torch.set_num_threads(before)
    for name in setups:
        got[name] = {"per_run": runs[name], "data_wait_fraction_median": statistics.median(runs[name]["wait"]),
                     "step_s_median": statistics.median(runs[name]["step_s"])}
    return got


def bench_worker_handoff(data: tuple[Path, Path], work: Path) -> dict[str, Any]:
    """ms per next() on a batch a worker already has ready (tiny data, batch 16), small tensors sent by
    value vs every tensor through shared memory (one file descriptor each)."""
    import dataclasses

    import torch

    from deco.config import DataSection, load_config
    from deco.data import DataCollator
    from deco.train.loading.batches import BatchPlan
    from deco.train.loading.loader import build_loader, loader_settings
    from deco.train.setup import build_dataset, model_for_stage

    cfg = load_config(ROOT / "configs" / "tiny.yaml", _overrides(data, work / "handoff"))
    model, _ = model_for_stage(cfg)
    dataset = build_dataset(cfg, model)
    collate = DataCollator.from_processor(model.processor())
    plan = BatchPlan(len(dataset), 16, 16, 1, 0)
    base = loader_settings(DataSection(num_workers=1), torch.device("cpu"), 1)
    out: dict[str, Any] = {"setup": "1 worker, batch 16 of configs/tiny.yaml's toy data; 60 ms pause before each "
                                    "next() so the worker is ahead; median of 30"}
    for name, by_value in (("small_by_value", True), ("all_shared_memory", False)):
        batches = iter(build_loader(dataset, plan, 0, 0, 0, 100, collate,
                                    dataclasses.replace(base, small_by_value=by_value), 0))
        next(batches)
        waits = []
        for _ in range(30):
            time.sleep(0.06)
            start = time.perf_counter()
            next(batches)
            waits.append(time.perf_counter() - start)
        out[name + "_ms"] = statistics.median(waits) * 1e3
        del batches
    return out


def bench_step_parts(rounds: int) -> dict[str, Any]:
    """Where deco bench's tiny stage-2 step spends its time, MLP-576 vs DeCo-144: wall clocks around
    the step's own calls (tower, projector, LLM, loss, backward, clipping, AdamW) while Loop.next_step
    runs; variants interleaved, medians per part."""
    import collections
    import tempfile as tf

    from deco.bench.estimate import vision_geometry
    from deco.bench.runner import BenchOptions, _recipe, check_options
    from deco.bench.workload import Workbench, variant_plan
    from deco.train.step import accel
    from deco.train.step import loop as loop_module

    opts = BenchOptions(projectors=["mlp", "deco"], tokens=[144], peer=False)
    spec = check_options(opts)
    wb = Workbench(spec, "cpu", "float32")
    for key, name, options in variant_plan(spec.projectors, spec.tokens, vision_geometry(spec, None)[1],
                                           spec.projector_options):
        wb.add_variant(key, name, options)
    rig = wb.start_training(_recipe(opts, spec), Path(tf.mkdtemp(prefix="deco-parts-")))
    rig.start_stage(2, steps=10**6)
    spent: dict[str, float] = collections.defaultdict(float)

    def clock(owner: Any, attr: str, part: str) -> None:
        inner = getattr(owner, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[part] += time.perf_counter() - start

        setattr(owner, attr, timed)

    clock(wb.tower, "forward", "vision tower forward")
    clock(wb.llm, "forward", "LLM forward")
    for v in wb.variants.values():
        clock(v.model.projector, "forward", "projector forward")
    clock(loop_module, "summed_token_loss", "loss forward")
    clock(rig.accelerator, "backward", "backward")
    clock(accel, "grad_norm_of", "gradient clipping")
    clock(rig.optimizer, "step", "AdamW step")
    variants = list(wb.variants.values())
    for v in variants:
        for _ in range(3):
            wb.train_step(v, 2)
    per: dict[str, dict[str, list[float]]] = {v.key: collections.defaultdict(list) for v in variants}
    for _ in range(rounds):
        for v in variants:
            spent.clear()
            seconds = wb.train_step(v, 2)
            waited = wb.data_wait[(v.key, 2)][-1] * seconds
            for part, x in spent.items():
                per[v.key][part].append(x)
            per[v.key]["waiting for data"].append(waited)
            per[v.key]["the rest (Python, dispatch, bookkeeping)"].append(seconds - sum(spent.values()) - waited)
            per[v.key]["step"].append(seconds)
    medians = {key: {part: statistics.median(xs) for part, xs in parts.items()} for key, parts in per.items()}
    mlp, deco = medians["mlp@576"], medians["deco@144"]
    return {"settings": rig.describe(), "rounds": rounds, "median_s": medians,
            "deco_over_mlp": {part: deco[part] / mlp[part] for part in mlp if mlp[part] > 0}}


def bench_optimizers(stage1: Path, data: tuple[Path, Path], work: Path) -> dict[str, Any]:
    """ms per AdamW step for each implementation."""
    import torch

    from deco.train.setup import model_for_stage
    from deco.train.step.optim import adamw, param_groups

    cfg = _config(data, work / "opt", stage1, 1, 4, 1)
    model, _ = model_for_stage(cfg)
    sets = {"tiny stage 2 (projector + LLM)": param_groups(model, cfg.train),
            "25M parameters in 100 tensors": [{"params": [torch.nn.Parameter(torch.randn(1024, 1024)) for _ in range(24)]
                                               + [torch.nn.Parameter(torch.randn(1024)) for _ in range(76)]}]}
    out: dict[str, Any] = {}
    for name, groups in sets.items():
        row: dict[str, float] = {}
        for kind in ("fused", "foreach", "for_loop"):
            opt = adamw([dict(g) for g in groups], 1e-4, kind)
            for g in groups:
                for p in g["params"]:
                    p.grad = torch.randn_like(p)
            n = 100 if "tiny" in name else 10
            for _ in range(3):
                opt.step()
            start = time.perf_counter()
            for _ in range(n):
                opt.step()
            row[kind + "_ms"] = (time.perf_counter() - start) / n * 1e3
        row["foreach_over_fused"] = row["foreach_ms"] / row["fused_ms"]
        row["for_loop_over_fused"] = row["for_loop_ms"] / row["fused_ms"]
        row["params"] = sum(p.numel() for g in groups for p in g["params"])
        out[name] = row
    return out


def bench_loss_memory() -> dict[str, Any]:
    """Peak tensor bytes of loss forward + backward at vocab 32k."""
    import torch
    import torch.nn.functional as F

    from deco.bench.memory import MemoryProbe
    from deco.data import IGNORE_INDEX
    from deco.train.step.loss import summed_token_loss

    def plain(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:  # the loss before this change
        shift = logits[:, :-1].float()
        return F.cross_entropy(shift.reshape(-1, shift.shape[-1]), labels[:, 1:].reshape(-1),
                               ignore_index=IGNORE_INDEX, reduction="sum")

    out: dict[str, Any] = {"shape": "logits [2, 1024, 32000]"}
    for dtype in (torch.bfloat16, torch.float32):
        row: dict[str, Any] = {}
        for name, fn in (("plain_fp32_cross_entropy", plain), ("chunked", summed_token_loss)):
            g = torch.Generator().manual_seed(0)
            logits = torch.randn(2, 1024, 32000, generator=g).to(dtype).requires_grad_(True)
            labels = torch.randint(0, 32000, (2, 1024), generator=g)
            with MemoryProbe("cpu") as probe:  # counts tensors allocated inside (the logits are outside)
                loss = fn(logits, labels)
                loss.backward()
            row[name + "_peak_bytes"] = probe.peak
            row[name + "_loss"] = float(loss)
        row["logits_bytes"] = 2 * 1024 * 32000 * torch.tensor([], dtype=dtype).element_size()
        row["chunked_over_plain"] = row["chunked_peak_bytes"] / row["plain_fp32_cross_entropy_peak_bytes"]
        out[str(dtype).replace("torch.", "")] = row
    return out


def bench_compile(data: tuple[Path, Path], work: Path) -> dict[str, Any]:
    """train.compile=true vs eager on configs/tiny.yaml (stage 1, 6 steps)."""
    from deco.config import load_config
    from deco.train import run_training
    from deco.train.report.metrics import read_metrics

    got = {}
    for name, flag in (("eager", "false"), ("compiled", "true")):
        out = work / f"compile-{name}"
        cfg = load_config(ROOT / "configs" / "tiny.yaml", _overrides(data, out, "train.max_steps=6", f"train.compile={flag}"))
        start = time.perf_counter()
        run_training(cfg)
        records = [r for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
        got[name] = {"wall_s": time.perf_counter() - start, "losses": [r["loss"] for r in records],
                     "step_s_after_3": _step_times([r["time"] for r in records], 3)}
    diff = max(abs(a - b) for a, b in zip(got["eager"]["losses"], got["compiled"]["losses"], strict=True))
    return {**got, "max_abs_loss_diff": diff, "tolerance": 1e-4,
            "compiled_over_eager_step": got["compiled"]["step_s_after_3"] / got["eager"]["step_s_after_3"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=25, help="steps per run of the HF Trainer comparison")
    parser.add_argument("--rounds", type=int, default=2, help="alternated runs of ours and HF's")
    parser.add_argument("--wait-rounds", type=int, default=4, help="alternated runs of each loading setup")
    parser.add_argument("--compile", action="store_true", help="also time train.compile (slow on CPUs)")
    parser.add_argument("--skip-bench", action="store_true", help="leave out the deco bench FLOP-ratio part")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from deco.bench.machine import describe_machine
    from deco.config import load_config
    from deco.data.toy import write_toy_dataset
    from deco.train import run_training

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    report: dict[str, Any] = {
        "benchmark": "train_speed", "command": " ".join(["python", "benchmarks/bench_train_speed.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": describe_machine(device),
        "load_average_at_start": os.getloadavg(), "torch_threads": torch.get_num_threads(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = write_toy_dataset(work / "data", n_images=64)
        run_training(load_config(ROOT / "configs" / "tiny.yaml", _overrides(data, work / "s1", "train.max_steps=3")))
        stage1 = work / "s1" / "final"
        log("loss memory at vocab 32k ...")
        report["loss_memory_vocab32k"] = bench_loss_memory()
        log("AdamW implementations ...")
        report["adamw_ms_per_step"] = bench_optimizers(stage1, data, work)
        log("data wait with default workers ...")
        report["data_wait_default_workers"] = bench_data_wait(data, work, stage1, args.wait_rounds)
        log("worker hand-off ...")
        report["worker_handoff"] = bench_worker_handoff(data, work)
        log("ours vs HF Trainer ...")
        report["vs_hf_trainer"] = bench_hf_peer(data, work, stage1, args.steps, args.rounds)
        if not args.skip_bench:
            from deco.threads import DEFAULT_THREADS

            for threads in dict.fromkeys((DEFAULT_THREADS, torch.get_num_threads())):
                log(f"deco bench tiny at {threads} thread(s): DeCo-144 vs MLP-576 ...")
                report[f"deco144_vs_mlp576@{threads}t"] = bench_flop_ratio(log, threads)
            log("where the stage-2 step's time goes ...")
            report["step_parts"] = bench_step_parts(20)
        if args.compile:
            log("train.compile ...")
            report["compile"] = bench_compile(data, work)
    report["load_average_at_end"] = os.getloadavg()
    out = args.out or ROOT / "benchmarks" / "results" / f"train_speed_{device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
