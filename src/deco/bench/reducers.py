"""`deco bench --reduce`: training-free reducers on the bench's MLP model, beside the trained projectors.

For each reducer at each budget: prefill FLOPs (counted), time to first token (image encoding + the
reducer + the LLM pass that gives the first token), KV-cache bytes after prefill, and the reducer's own
selection time (tower attention included). Same towers, LLM, prompt and batch as the projector rows.

FastV masks dropped tokens instead of cutting them (deco.reducers.fastv), so its measured pass does not
get cheaper; its FLOPs and KV bytes are computed from counted passes instead: layers < K at M tokens,
layers >= K at K tokens (the LLM's layers are identical, so its FLOPs split evenly by layer). Its
time to first token is measured as run (eager attention, nothing saved) and marked so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deco.bench.flops import count_flops
from deco.bench.inference import prefill_and_decode
from deco.bench.timing import interleave, summarize
from deco.bench.workload import Variant, Workbench
from deco.errors import ConfigError
from deco.model.multimodal import DecoModel
from deco.reducers.apply import apply_reducer
from deco.reducers.registry import parse_reduce


def reducer_specs(names: list[str], budgets: list[int]) -> list[str]:
    """`NAME:N` entries pass through; a bare NAME is measured at every budget (checked, torch-free)."""
    specs: list[str] = []
    for name in names:
        entries = [name] if ":" in name else [f"{name}:{b}" for b in budgets]
        specs += [str(parse_reduce(e)) for e in entries]
    return specs


def _reduced_model(wb: Workbench, base: Variant, spec: str) -> tuple[DecoModel, Any, dict[str, Any]]:
    model = DecoModel(wb.tower, base.model.projector, wb.llm, wb.tokenizer, wb.image_token_id)
    reducer = apply_reducer(model, spec)
    return model, reducer, wb.prompt_batch(model)


def _prefill(model: DecoModel, batch: dict[str, Any]) -> dict[str, float]:
    return {"prefill": prefill_and_decode(model, batch, 0)["prefill"]}


def bench_reducers(wb: Workbench, base: Variant, specs: list[str], repeats: int, warmup: int,
                   log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One record per reducer spec, reduced from `base` (the mlp variant)."""
    if not type(base.model.projector.config).tokenwise:
        raise ConfigError("deco bench --reduce: reducers act on the per-patch mlp model; include mlp")
    batch_size = base.prompt_batch["input_ids"].shape[0]
    llm_layers = wb.llm.config.num_hidden_layers
    records, jobs, models = [], {}, {}
    base_flops = count_flops(lambda: prefill_and_decode(base.model, base.prompt_batch, 0), base.model)
    for spec in specs:
        model, reducer, batch = _reduced_model(wb, base, spec)
        seen: dict[str, Any] = {}
        flops = count_flops(lambda m=model, b=batch, s=seen: prefill_and_decode(m, b, 0, seen=s), model)
        record: dict[str, Any] = {
            "key": spec, "reducer": reducer.name, "budget": reducer.budget, "stage": reducer.stage,
            "tokens_in": reducer.input_tokens, "tokens_kept": reducer.budget,
            "prefill_flops": flops, "kv_cache_bytes": seen.get("cache_bytes"), "measured_as_run": True,
        }
        if reducer.stage == "llm":
            # FLOPs/KV as FastV computes them: the first K layers at M tokens, the rest at K tokens.
            short_model, _, short_batch = _reduced_model(wb, base, f"random:{reducer.budget}")
            short_seen: dict[str, Any] = {}
            short = count_flops(lambda m=short_model, b=short_batch, s=short_seen: prefill_and_decode(m, b, 0, seen=s),
                                short_model)
            k = reducer.layer
            llm = k / llm_layers * base_flops["llm"] + (llm_layers - k) / llm_layers * short["llm"]
            record["prefill_flops"] = {**base_flops, "llm": llm,
                                       "total": base_flops["total"] - base_flops["llm"] + llm}
            full_kv, short_kv = seen.get("cache_bytes", 0), short_seen.get("cache_bytes", 0)
            record["kv_cache_bytes"] = int(k / llm_layers * full_kv + (llm_layers - k) / llm_layers * short_kv)
            record["measured_as_run"] = False
            record["layer"] = k
        models[spec] = (model, reducer)
        records.append(record)
        if reducer.stage != "llm":  # FastV's hooks sit on the shared LLM: it is timed alone, after the others
            jobs[spec] = lambda m=model, b=batch: _prefill(m, b)
    jobs["(none)"] = lambda: _prefill(base.model, base.prompt_batch)
    log(f"reducers: {warmup} warm-up + {repeats} rounds of prefill, interleaved: {', '.join(jobs)}")
    for _, reducer in models.values():
        reducer.seconds = 0.0
    samples = interleave(jobs, repeats, warmup)
    for spec, (model, reducer) in models.items():
        if reducer.stage == "llm":
            got = [_prefill(model, wb.prompt_batch(model))["prefill"] for _ in range(warmup + repeats)][warmup:]
            samples[spec] = {"prefill": got}
            reducer.detach(model)
    base_ttft = summarize(samples["(none)"]["prefill"])["median"]
    base_kv = records_base_kv(wb, base)
    for record in records:
        model, reducer = models[record["key"]]
        ttft = summarize(samples[record["key"]]["prefill"])
        calls = warmup + repeats
        record["time_to_first_token_s"] = ttft
        record["selection_s_per_image"] = reducer.seconds / calls / batch_size if reducer.stage != "llm" else None
        record["ratios"] = {
            "flops": record["prefill_flops"]["total"] / base_flops["total"],
            "time": (ttft["median"] / base_ttft) if base_ttft else None,
            "kv": (record["kv_cache_bytes"] / base_kv) if record["kv_cache_bytes"] else None,
        }
    records.insert(0, {"key": "(none)", "reducer": None, "budget": base.tokens, "stage": None,
                       "tokens_in": base.tokens, "tokens_kept": base.tokens, "prefill_flops": base_flops,
                       "kv_cache_bytes": base_kv, "measured_as_run": True,
                       "time_to_first_token_s": summarize(samples["(none)"]["prefill"]),
                       "selection_s_per_image": 0.0, "ratios": {"flops": 1.0, "time": 1.0, "kv": 1.0}})
    return records


def records_base_kv(wb: Workbench, base: Variant) -> int:
    """KV-cache bytes after the unreduced prefill of the base variant."""
    seen: dict[str, Any] = {}
    prefill_and_decode(base.model, base.prompt_batch, 0, seen=seen)
    return int(seen["cache_bytes"])
