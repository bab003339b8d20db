"""The method notes every bench.json carries, plus observations about this run's conditions."""

from __future__ import annotations

from typing import Any


def standard_notes(data: dict[str, Any]) -> list[str]:
    """Notes on method and on how far the numbers can be trusted (load, threads, extrapolation)."""
    s = data["settings"]
    m = data["machine"]
    notes = [
        "Timing: every configuration shares one vision tower and one LLM (only the projector differs); "
        f"{s['warmup']} warm-up round(s) and {s['repeats']} timed rounds, each running every configuration "
        "once in a rotated (and on odd rounds reversed) order, so load from other processes hits all alike; "
        "median and inter-quartile range reported. FLOPs and memory come from a separate untimed pass.",
        "Training step = forward + backward + AdamW update on one batch; stage 1 trains the projector "
        "(LLM frozen, gradients still flow through it), stage 2 the projector and the LLM; the vision "
        "tower is frozen in both. AdamW states are allocated before measuring.",
        "Prefill (time to first token) = vision tower + projector + one LLM pass over image and prompt "
        "with a KV cache; decode = single-token greedy steps on that cache. KV-cache bytes for the "
        "visual tokens = 2 x layers x kv_heads x head_dim x tokens x bytes per element.",
    ]
    load = m.get("load_average_start")
    cores = m.get("logical_cores") or 1
    if load and max(load[0], (m.get("load_average_end") or [0])[0]) > 0.5 * cores:
        notes.append(
            f"The machine was shared: load average {load[0]} at the start and "
            f"{(m.get('load_average_end') or ['?'])[0]} at the end on {cores} logical cores (other "
            "processes were running). Absolute times are noisy; the interleaved order keeps the "
            "comparison between configurations fair, and the IQRs show the spread."
        )
    if s["device"] == "cpu" and s["threads"] < cores:
        notes.append(f"torch used {s['threads']} thread(s) of {cores}: on a loaded machine, OpenMP threads "
                     "waiting on each other slow small ops by 10x or more, so the run was pinned to fewer threads.")
    if s.get("extrapolated_to"):
        notes.append("Full-depth figures are extrapolated from the measured layers (see the per-layer table); "
                     "they are estimates, labelled as such everywhere.")
    peer = data.get("peer")
    if peer and not peer["within_2_percent"]:
        paired = peer["paired_ratio"]
        notes.append(
            f"Peer forward ratio ours/HF = {peer['ratio']:.3f}, outside the 2% target. Per-round ratios "
            f"spread over {paired['q1']:.3f}-{paired['q3']:.3f} (IQR), min {paired['min']:.3f}, max "
            f"{paired['max']:.3f}; ratio of minimums {peer['ratio_of_minimums']:.3f}. Both models run the "
            "same HF CLIP and Llama modules on the same tensors (equal logits), so the only code that "
            "differs is the wrapper: ours replaces placeholder ids before the embedding lookup and counts "
            "the slots with one host sync; HF's looks up the placeholder id itself and checks the count "
            "its own way. A gap inside the per-round spread is timing noise; more --peer-repeats narrow it."
        )
    return notes
