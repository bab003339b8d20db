"""From a truncated 7B-shaped model to the full depth: per-layer figures times the missing layers.

All layers of a Llama (or CLIP) stack have the same shapes, so each extra layer adds what one
measured layer costs: its parameters, FLOPs, time, saved activations and KV cache. Everything
outside the stack (embeddings, lm_head, loss, projector) is measured once as it is. Times use
the per-layer time measured by hooks in the same timed call, so every extrapolated sample has
its own spread. These are estimates and the output says so.
"""

from __future__ import annotations

from typing import Any

from deco.bench.inference import kv_bytes_per_token
from deco.bench.layerclock import llm_layers, vision_layers
from deco.bench.timing import summarize

TIME_PHASES = ("train_stage1", "train_stage2", "prefill", "decode_token")
FLOP_PHASES = ("forward", "train_stage1", "train_stage2", "prefill", "decode_token")


def _layer_params(layers: Any) -> tuple[int, int]:
    params = list(layers[0].parameters()) if len(layers) else []
    return sum(p.numel() for p in params), sum(p.numel() * p.element_size() for p in params)


def extrapolate_variant(
    wb: Any, record: dict[str, Any], static: dict[str, Any], samples: dict[str, list[float]], target: dict
) -> dict[str, Any]:
    """Full-depth figures for one variant (`target`: {'vision_layers': n|None, 'llm_layers': n|None})."""
    # Only the stacks being extrapolated are inspected (a named --vision tower may have no HF layout).
    llm_stack = llm_layers(wb.llm) if target.get("llm_layers") else []
    vision_stack = vision_layers(wb.tower) if target.get("vision_layers") else []
    add_l = target["llm_layers"] - len(llm_stack) if llm_stack else 0
    add_v = target["vision_layers"] - len(vision_stack) if vision_stack else 0
    l_params, l_bytes = _layer_params(llm_stack)
    v_params, v_bytes = _layer_params(vision_stack)

    params = dict(record["params"])
    params["llm"] += add_l * l_params
    params["vision_tower"] += add_v * v_params
    params["total"] += add_l * l_params + add_v * v_params
    params["trainable_stage2"] += add_l * l_params

    flops: dict[str, Any] = {}
    for phase in FLOP_PHASES:
        f = record["flops"][phase]
        per = f.get("per_layer", {})
        llm = f["llm"] + add_l * (per.get("llm") or 0)
        vis = f["vision_tower"] + add_v * (per.get("vision_tower") or 0)
        flops[phase] = {"vision_tower": vis, "projector": f["projector"], "llm": llm,
                        "total": f["total"] + (llm - f["llm"]) + (vis - f["vision_tower"])}

    flops["projector_fwd_bwd"] = record["flops"]["projector_fwd_bwd"]  # the projector has no stacked layers

    time_s: dict[str, Any] = {}
    for phase in TIME_PHASES:
        base = samples.get(phase, [])
        llm_t = samples.get(f"{phase}.llm_layer", [0.0] * len(base))
        vis_t = samples.get(f"{phase}.vision_layer", [0.0] * len(base))
        time_s[phase] = summarize([t + add_l * a + add_v * b for t, a, b in zip(base, llm_t, vis_t, strict=True)])
    time_s["projector_fwd_bwd"] = record["time_s"]["projector_fwd_bwd"]

    memory: dict[str, Any] = {}
    weights = record["memory_bytes"]["train_stage1"]["weights"] + add_l * l_bytes + add_v * v_bytes
    for stage in (1, 2):
        name = f"train_stage{stage}"
        m = record["memory_bytes"][name]
        opt = m["optimizer_state"] + (2 * add_l * l_bytes if stage == 2 else 0)
        # Each extra layer keeps its activations for backward; in stage 2 it also gets gradients.
        per_layer = static["layer_activation_bytes"][name] + (l_bytes if stage == 2 else 0)
        dyn = m["dynamic_peak"] + add_l * per_layer
        memory[name] = {"weights": weights, "optimizer_state": opt, "dynamic_peak": dyn, "peak": weights + opt + dyn}
    kv_layer = kv_bytes_per_token(wb.llm, layers=1)
    prompt = record["kv_cache"]["prompt_tokens"] * wb.spec.batch_size
    dyn = record["memory_bytes"]["prefill"]["dynamic_peak"] + add_l * kv_layer * prompt
    memory["prefill"] = {"weights": weights, "optimizer_state": 0, "dynamic_peak": dyn, "peak": weights + dyn}

    full_layers = wb.llm.config.num_hidden_layers + add_l
    decode = time_s["decode_token"]["median"]
    return {
        "method": (f"measured with {len(vision_stack) or 'all'} vision / {len(llm_stack) or 'all'} LLM layers; "
                   f"+{add_v} vision and +{add_l} LLM layers added at the measured per-layer cost"),
        "params": params,
        "flops": flops,
        "time_s": time_s,
        "decode_tokens_per_s": (1.0 / decode) if decode else None,
        "memory_bytes": memory,
        "kv_cache": {"bytes_per_token": kv_layer * full_layers,
                     "visual_bytes_per_image": kv_layer * full_layers * record["tokens"]},
        "tokens": record["tokens"],
        "per_layer": {
            "llm_params": l_params,
            "vision_params": v_params,
            "llm_flops": {p: record["flops"][p].get("per_layer", {}).get("llm") for p in FLOP_PHASES},
            "vision_flops": {p: record["flops"][p].get("per_layer", {}).get("vision_tower") for p in FLOP_PHASES},
            "llm_time_s": {p: summarize(samples.get(f"{p}.llm_layer", [])) for p in TIME_PHASES},
            "vision_time_s": {p: summarize(samples.get(f"{p}.vision_layer", [])) for p in TIME_PHASES},
            "llm_activation_bytes": static["layer_activation_bytes"],
            "kv_bytes_per_token": kv_layer,
        },
    }
