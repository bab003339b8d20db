"""`deco bench` end to end: check, estimate, build, count, time (interleaved), compare, assemble."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import statistics
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from deco.bench.compare import add_ratios
from deco.bench.estimate import estimate_memory, refuse_if_too_big, vision_geometry
from deco.bench.extrapolate import extrapolate_variant
from deco.bench.flops import FlopRecorder, component_roots
from deco.bench.inference import kv_bytes_per_token, prefill_and_decode
from deco.bench.layerclock import LayerClock, LayerMemory, llm_layers, vision_layers
from deco.bench.machine import describe_machine
from deco.bench.memory import MemoryProbe, available_memory, gib
from deco.bench.notes import standard_notes
from deco.bench.peer import build_peer, compare_logits, time_forwards
from deco.bench.sizes import SizeSpec, get_size, with_overrides
from deco.bench.timing import interleave, summarize
from deco.bench.trainstep import Recipe
from deco.bench.workload import Variant, Workbench, set_stage, trainable_parameters, variant_plan
from deco.errors import ConfigError
from deco.model.llm import DTYPES
from deco.projectors.registry import get_options_class, projector_names
from deco.train.step.optim import OPTIMIZERS

SCHEMA = "deco-bench/1"
BASELINE = "mlp"
TIMED = ("projector_fwd_bwd", "train_stage1", "train_stage2", "prefill", "decode_token")


@dataclass
class BenchOptions:
    """What `deco bench` was asked for; None fields take the size's defaults."""

    size: str = "tiny"
    projectors: list[str] | None = None
    tokens: list[int] | None = None
    device: str = "cpu"
    dtype: str = "float32"
    repeats: int | None = None
    warmup: int | None = None
    batch_size: int | None = None
    vision: str | None = None
    llm: str | None = None
    proxy_layers: int = 2
    peer: bool = True
    peer_repeats: int | None = None
    memory_budget_gib: float | None = None
    threads: int | None = None
    notes: list[str] = field(default_factory=list)
    # deco train's settings for the timed training steps; None: the size's recipe.
    precision: str | None = None
    accum: int | None = None
    checkpointing: bool | None = None
    optimizer: str = "auto"
    workers: int | None = None
    compile: bool = False
    seed: int = 0
    # Training-free reducers on the mlp model (deco.reducers): NAME (at every --tokens budget) or NAME:N.
    reduce: list[str] | None = None


def check_options(opts: BenchOptions) -> SizeSpec:
    """Validate device, dtype, projector names and counts; return the resolved size spec."""
    if opts.device not in ("cpu", "cuda"):
        raise ConfigError(f"--device must be cpu or cuda, got '{opts.device}'")
    if opts.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"--device cuda was asked for but no CUDA device is available (torch {torch.__version__}, "
            f"built with CUDA {torch.version.cuda or 'none'}); run with --device cpu"
        )
    if opts.dtype not in DTYPES:
        raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, got '{opts.dtype}'")
    for name, value in (("repeats", opts.repeats), ("batch-size", opts.batch_size), ("threads", opts.threads),
                        ("peer-repeats", opts.peer_repeats)):
        if value is not None and value < 1:
            raise ConfigError(f"--{name} must be at least 1, got {value}")
    if opts.accum is not None and opts.accum < 1:
        raise ConfigError(f"--accum must be at least 1, got {opts.accum}")
    if opts.workers is not None and opts.workers < 0:
        raise ConfigError(f"--workers must be 0 or more, got {opts.workers}")
    if opts.precision is not None and opts.precision not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"--precision must be fp32, bf16 or fp16, got '{opts.precision}'")
    if opts.optimizer not in OPTIMIZERS:
        raise ConfigError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got '{opts.optimizer}'")
    if opts.warmup is not None and opts.warmup < 0:
        raise ConfigError(f"--warmup must be 0 or more, got {opts.warmup}")
    spec = get_size(opts.size, opts.proxy_layers)
    projectors = opts.projectors or spec.projectors
    if projectors == ["all"]:  # every image projector: the bench times single images
        projectors = [p for p in projector_names() if not get_options_class(p).takes_video]
    for name in projectors:
        if get_options_class(name).takes_video:  # also a ConfigError for unknown names
            raise ConfigError(
                f"'{name}' is a video projector; deco bench times single images (its image equivalents: "
                "deco for deco3d/deco_spatial/pllava, qformer for qformer_video); `deco projectors` lists "
                "their tokens per video"
            )
    # mlp at the full patch count is the baseline every ratio is taken against.
    projectors = [BASELINE] + [p for p in dict.fromkeys(projectors) if p != BASELINE]
    for t in opts.tokens or []:
        if t < 1:
            raise ConfigError(f"--tokens must be positive, got {t}")
    if opts.reduce:
        from deco.reducers.registry import parse_reduce

        for name in opts.reduce:  # bad names and budgets fail before any model is built
            parse_reduce(name if ":" in name else f"{name}:1")
    return with_overrides(
        spec, projectors=projectors, tokens=opts.tokens, repeats=opts.repeats, warmup=opts.warmup,
        batch_size=opts.batch_size, peer_repeats=opts.peer_repeats,
    )


def _extrapolating(spec: SizeSpec, opts: BenchOptions) -> dict[str, int] | None:
    # Only the towers the size builds are truncated; a named --vision/--llm is the real thing.
    if spec.extrapolate_to is None:
        return None
    return {
        "vision_layers": spec.extrapolate_to["vision_layers"] if opts.vision is None else None,
        "llm_layers": spec.extrapolate_to["llm_layers"] if opts.llm is None else None,
    }


def run_bench(opts: BenchOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the whole benchmark and return the bench.json dict."""
    spec = check_options(opts)
    threads = torch.get_num_threads()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    try:
        return _run(opts, spec, log)
    finally:
        torch.set_num_threads(threads)


def _run(opts: BenchOptions, spec: SizeSpec, log: Callable[[str], None]) -> dict[str, Any]:
    _, grid = vision_geometry(spec, opts.vision)
    plan = variant_plan(spec.projectors, spec.tokens, grid, spec.projector_options)
    estimate = estimate_memory(spec, plan, opts.dtype, opts.vision, opts.llm)
    available = available_memory(opts.device)
    if opts.memory_budget_gib is not None:
        available = int(opts.memory_budget_gib * 2**30)
    refuse_if_too_big(estimate, available, "the GPU" if opts.device == "cuda" else "this machine")
    log(f"estimated memory {gib(estimate['total_bytes'])} of {gib(available)} available; "
        f"{len(plan)} configurations: {', '.join(k for k, _, _ in plan)}")

    wb = Workbench(spec, opts.device, opts.dtype, opts.vision, opts.llm, opts.seed)
    for key, name, options in plan:
        wb.add_variant(key, name, options)
    extrap = _extrapolating(spec, opts)
    clocks = _clocks(wb, extrap) if extrap else None

    started = dt.datetime.now(dt.timezone.utc)
    load_start = _load_average()
    # Inference and the projector alone first, with every weight in the model's dtype; then deco train's
    # stage-1 and stage-2 steps, which upcast what they train to float32 master weights as training does.
    log("counting FLOPs and memory (one instrumented pass per configuration)")
    static = {key: _instrumented_pass(wb, v, clocks is not None) for key, v in wb.variants.items()}
    log(f"timing: {spec.warmup} warm-up + {spec.repeats} rounds, configurations interleaved")
    jobs = {key: _job(wb, v, clocks) for key, v in wb.variants.items()}
    samples = interleave(jobs, spec.repeats, spec.warmup, on_round=lambda r, n: log(f"  round {r}/{n}"))
    peer = _peer(wb, spec, log) if opts.peer else None
    reducers = None
    if opts.reduce:
        from deco.bench.reducers import bench_reducers, reducer_specs

        base = next(v for v in wb.variants.values() if v.projector == BASELINE)
        specs = reducer_specs(opts.reduce, opts.tokens or spec.tokens)
        reducers = bench_reducers(wb, base, specs, spec.repeats, spec.warmup, log)
    with tempfile.TemporaryDirectory(prefix="deco-bench-") as tmp:
        rig = wb.start_training(_recipe(opts, spec), Path(tmp))
        for stage in (1, 2):
            rig.start_stage(stage, steps=2 + spec.warmup + spec.repeats)
            name = f"train_stage{stage}"
            log(f"stage {stage}: deco train's step, {spec.warmup} warm-up + {spec.repeats} rounds, interleaved")
            for key, v in wb.variants.items():
                static[key].update(_instrumented_train(wb, v, stage, clocks is not None))
            train_jobs = {key: _train_job(wb, v, stage, clocks) for key, v in wb.variants.items()}
            for key, got in interleave(train_jobs, spec.repeats, spec.warmup).items():
                samples[key].update(got)
            static["_weights_" + name] = {key: wb.weight_bytes(v) for key, v in wb.variants.items()}
            static["_optimizer_" + name] = {key: wb.optimizer_state_bytes(v, stage) for key, v in wb.variants.items()}
        loader = _loader_figures(wb, rig, samples, log)
        train_step = rig.describe()
    log("training step: " + "; ".join(f"{k} {v}" for k, v in train_step.items() if k not in ("code", "samples")))

    variants = [_variant_record(wb, v, static, samples[key], extrap) for key, v in wb.variants.items()]
    baseline = next(r for r in variants if r["projector"] == BASELINE)
    add_ratios(variants, baseline)
    data = {
        "schema": SCHEMA,
        "command": None,
        "created": started.isoformat(timespec="seconds"),
        "duration_s": (dt.datetime.now(dt.timezone.utc) - started).total_seconds(),
        "machine": {**describe_machine(opts.device), "load_average_start": load_start,
                    "load_average_end": _load_average()},
        "settings": {**_settings(wb, spec, opts, grid, extrap), "train_step": train_step},
        "loader": loader,
        "memory_estimate": estimate,
        "baseline": baseline["key"],
        "variants": variants,
        "peer": peer,
        "reducers": reducers,
        "notes": list(opts.notes),
    }
    data["notes"] += standard_notes(data)
    return data


def _load_average() -> list[float] | None:
    """1/5/15-minute load averages: how busy the machine was (other processes add timing noise)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def _clocks(wb: Workbench, extrap: dict[str, Any]) -> dict[str, Any]:
    # A stack is timed only where it is extrapolated (the size's own random towers).
    return {
        "llm": LayerClock(llm_layers(wb.llm) if extrap["llm_layers"] else [], wb.device),
        "vision": LayerClock(vision_layers(wb.tower) if extrap["vision_layers"] else [], wb.device),
    }


def _instrumented_pass(wb: Workbench, v: Variant, per_layer: bool) -> dict[str, Any]:
    """One untimed run of every measured step under the FLOP counter and the memory probe."""
    rec = FlopRecorder(component_roots(v.model))
    memory: dict[str, int] = {}
    layer_bytes: dict[str, float] = {}
    with rec.phase("projector_fwd_bwd"), MemoryProbe(wb.device) as probe:
        wb.projector_step(v)
    memory["projector_fwd_bwd"] = probe.peak
    set_stage(v.model, None)
    with rec.phase("forward"), torch.no_grad():
        v.model(**{k: x for k, x in v.train_batch.items() if k != "labels"})
    seen: dict[str, Any] = {}
    probes: dict[str, MemoryProbe] = {}

    @contextlib.contextmanager
    def phase(name: str) -> Iterator[None]:
        with rec.phase(name):
            if name == "prefill":
                with MemoryProbe(wb.device) as p:
                    yield
                probes[name] = p
            else:
                yield

    prefill_and_decode(v.model, v.prompt_batch, wb.spec.new_tokens, phase, seen)
    memory["prefill"] = probes["prefill"].peak
    return {"flops": rec.flops, "memory": memory, "layer_activation_bytes": layer_bytes, "cache": seen,
            "weights": wb.weight_bytes(v)}


def _instrumented_train(wb: Workbench, v: Variant, stage: int, per_layer: bool) -> dict[str, Any]:
    """One untimed deco-train step of `stage` under the FLOP counter and the memory probe (also its
    first step: allocation and any compilation happen here, not in a timed round)."""
    name = f"train_stage{stage}"
    rec = FlopRecorder(component_roots(v.model))
    with rec.phase(name), MemoryProbe(wb.device) as probe:
        ctx = LayerMemory(llm_layers(wb.llm)).measure(probe) if per_layer else contextlib.nullcontext({})
        with ctx as got:
            wb.train_step(v, stage)
    wb.data_wait.pop((v.key, stage), None)
    return {f"flops.{name}": rec.flops[name], f"memory.{name}": probe.peak,
            f"layer_activation_bytes.{name}": got.get("bytes", 0.0)}


def _train_job(wb: Workbench, v: Variant, stage: int, clocks: dict[str, Any] | None) -> Callable[[], dict[str, float]]:
    """One round of a stage's training step for a variant."""
    name = f"train_stage{stage}"

    def run() -> dict[str, float]:
        got: dict[str, float] = {}
        with _layer_clocks(clocks, got, name):
            got[name] = wb.train_step(v, stage)
        return got

    return run


def _recipe(opts: BenchOptions, spec: SizeSpec) -> Recipe:
    """deco train's settings for the timed steps: the options, else the size's recipe."""
    r = spec.recipe
    return Recipe(
        precision=opts.precision or r.get("precision", "bf16" if opts.dtype != "float32" else "fp32"),
        accum=opts.accum or r.get("accum", 1),
        gradient_checkpointing_stage2=r.get("gradient_checkpointing_stage2", False)
        if opts.checkpointing is None else opts.checkpointing,
        optimizer=opts.optimizer, num_workers=opts.workers if opts.workers is not None else "auto",
        compile=opts.compile,
    )


def _loader_figures(wb: Workbench, rig: Any, samples: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """The loader alone against what the baseline's steps consume, and the steps' data wait."""
    base = next(v for v in wb.variants.values() if v.projector == BASELINE)
    per_step = wb.spec.batch_size * rig.recipe.accum
    rate = rig.loader_rate(base, micro_batches=max(4, 2 * rig.recipe.accum))
    demand = {f"stage{s}": per_step / statistics.median(samples[base.key][f"train_stage{s}"]) for s in (1, 2)}
    wait = {f"{key}/stage{s}": statistics.median(vals) for (key, s), vals in wb.data_wait.items() if vals}
    out = {"settings": rig.loading.describe(), "loader_samples_per_s": rate,
           "step_demand_samples_per_s": demand, "loader_over_demand": {k: rate / d for k, d in demand.items()},
           "data_wait_fraction_median": wait}
    log(f"data loader alone: {rate:.1f} samples/s; {base.key}'s steps consume "
        + ", ".join(f"{k} {d:.1f}" for k, d in demand.items()) + " samples/s")
    return out


def _job(wb: Workbench, v: Variant, clocks: dict[str, Any] | None) -> Callable[[], dict[str, float]]:
    """One round's inference and projector measurements for a variant, each timing itself."""

    def run() -> dict[str, float]:
        got: dict[str, float] = {"projector_fwd_bwd": wb.projector_step(v)}
        set_stage(v.model, None)

        @contextlib.contextmanager
        def phase(name: str) -> Iterator[None]:
            label = "decode_token" if name == "decode" else name
            with _layer_clocks(clocks, got, label, wb.spec.new_tokens if name == "decode" else 1):
                yield

        got.update(prefill_and_decode(v.model, v.prompt_batch, wb.spec.new_tokens, phase))
        return got

    return run


@contextlib.contextmanager
def _layer_clocks(clocks: dict[str, Any] | None, got: dict[str, float], label: str, per: int = 1) -> Iterator[None]:
    if clocks is None:
        yield
        return
    with clocks["llm"].measure() as llm_t, clocks["vision"].measure() as vis_t:
        yield
    got[f"{label}.llm_layer"] = llm_t["seconds"] / per
    got[f"{label}.vision_layer"] = vis_t["seconds"] / per


def _variant_record(
    wb: Workbench, v: Variant, everything: dict[str, Any], samples: dict[str, list[float]], extrap: dict | None
) -> dict[str, Any]:
    model = v.model
    static = everything[v.key]
    for key in [k for k in static if "." in k]:  # the training steps' figures, measured in their own phase
        part, name = key.split(".", 1)
        static[part][name] = static.pop(key)
    counts = model.component_parameters()
    flops = static["flops"]
    flops["decode_token"] = _scaled(flops.pop("decode"), 1.0 / wb.spec.new_tokens)
    weights = static["weights"]  # in the model's dtype, before training upcast what it trains
    memory: dict[str, Any] = {"projector_fwd_bwd": {"dynamic_peak": static["memory"]["projector_fwd_bwd"]}}
    for stage in (1, 2):
        name = f"train_stage{stage}"
        w, opt = everything["_weights_" + name][v.key], everything["_optimizer_" + name][v.key]
        dyn = static["memory"][name]
        memory[name] = {"weights": w, "optimizer_state": opt, "dynamic_peak": dyn, "peak": w + opt + dyn}
    dyn = static["memory"]["prefill"]
    memory["prefill"] = {"weights": weights, "optimizer_state": 0, "dynamic_peak": dyn, "peak": weights + dyn}
    time_s = {m: summarize(samples.get(m, [])) for m in TIMED}
    decode = time_s["decode_token"]["median"]
    per_token = kv_bytes_per_token(wb.llm)
    record: dict[str, Any] = {
        "data_wait_fraction": {f"train_stage{st}": statistics.median(wb.data_wait[(v.key, st)])
                               for st in (1, 2) if wb.data_wait.get((v.key, st))},
        "key": v.key,
        "projector": v.projector,
        "options": {k: list(x) if isinstance(x, tuple) else x for k, x in v.options.items()},
        "tokens": v.tokens,
        "params": {
            "projector": counts["projector"][0],
            "vision_tower": counts["vision_tower"][0],
            "llm": counts["llm"][0],
            "total": sum(c[0] for c in counts.values()),
            "trainable_stage1": trainable_parameters(model, 1),
            "trainable_stage2": trainable_parameters(model, 2),
        },
        "flops": flops,
        "time_s": time_s,
        "decode_tokens_per_s": (1.0 / decode) if decode else None,
        "memory_bytes": memory,
        "kv_cache": {
            "bytes_per_token": per_token,
            "visual_bytes_per_image": per_token * v.tokens,
            "prompt_tokens": static["cache"]["prompt_tokens"],
            "measured_prompt_bytes": static["cache"]["cache_bytes"],
        },
    }
    if extrap:
        record["extrapolated"] = extrapolate_variant(wb, record, static, samples, extrap)
    return record


def _scaled(flops: dict[str, Any], factor: float) -> dict[str, Any]:
    """FLOP split (and its per-layer block) times `factor`: decode FLOPs per generated token."""
    out: dict[str, Any] = {}
    for key, value in flops.items():
        if isinstance(value, dict):
            out[key] = _scaled(value, factor)
        else:
            out[key] = value * factor if value is not None else None
    return out


def _peer(wb: Workbench, spec: SizeSpec, log: Callable[[str], None]) -> dict[str, Any]:
    base = next(v for v in wb.variants.values() if v.projector == BASELINE)
    log(f"peer: HF LlavaForConditionalGeneration vs our {base.key}, {spec.peer_repeats} interleaved forwards")
    set_stage(base.model, None)
    peer = build_peer(base.model)
    batch = base.train_batch
    out = compare_logits(base.model, peer, batch)
    out.update(time_forwards(base.model, peer, batch, spec.peer_repeats, warmup=1))
    out["logits_match_1e-5"] = out["max_abs_logit_diff"] <= 1e-5
    out["variant"] = base.key
    out["sequence_tokens"] = int(batch["input_ids"].shape[1])
    out["weights"] = "vision tower and LLM modules shared with ours; projector copied mlp.0/mlp.2 -> linear_1/linear_2"
    return out


def _settings(wb: Workbench, spec: SizeSpec, opts: BenchOptions, grid: tuple[int, int], extrap: dict | None) -> dict[str, Any]:
    lcfg = wb.llm.config
    return {
        "size": spec.name,
        "device": opts.device,
        "dtype": opts.dtype,
        "batch_size": spec.batch_size,
        "train_text_tokens": spec.train_text_tokens,
        "prompt": spec.prompt,
        "new_tokens": spec.new_tokens,
        "repeats": spec.repeats,
        "warmup": spec.warmup,
        "threads": torch.get_num_threads(),
        "seed": opts.seed,
        "input_grid": list(grid),
        "input_patches": grid[0] * grid[1],
        "projectors": spec.projectors,
        "tokens": spec.tokens,
        "projector_options": spec.projector_options,
        "vision": opts.vision or {"arch": spec.vision_arch, **spec.vision_config},
        "llm": opts.llm or {"arch": spec.llm_arch, **spec.llm_config, "vocab_size": lcfg.vocab_size},
        "measured_layers": {"vision": wb.tower.model.config.num_hidden_layers, "llm": lcfg.num_hidden_layers},
        "extrapolated_to": extrap,
        "optimizer": (wb.rig.describe()["optimizer"] if wb.rig else "AdamW") + "; vision tower frozen",
        "attention": "sdpa",
    }
