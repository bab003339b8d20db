"""Ratios against the baseline (mlp at the full patch count), and measured time against FLOPs.

`time_over_flops` = (time ratio) / (FLOP ratio). 1.0 means the time fell exactly as much as the
FLOPs did (the limit a FLOP count promises); above 1.0, fixed costs the FLOP count does not see
(kernel launches, memory-bound ops, Python, the optimizer update) keep the time higher.
"""

from __future__ import annotations

from typing import Any

PHASES = ("projector_fwd_bwd", "train_stage1", "train_stage2", "prefill", "decode_token")
MEMORY = ("train_stage1", "train_stage2", "prefill")


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def ratios(record: dict[str, Any], base: dict[str, Any], source: str | None = None) -> dict[str, Any]:
    """Ratios of `record` to `base` for time, FLOPs, peak memory and visual tokens.

    `source` picks a nested block (e.g. 'extrapolated') holding the same keys.
    """
    r = record[source] if source else record
    b = base[source] if source else base
    out: dict[str, Any] = {"tokens": _ratio(record["tokens"], base["tokens"]), "time": {}, "flops": {},
                           "memory_peak": {}, "time_over_flops": {}}
    for phase in (*PHASES, "forward"):
        t = _ratio(r["time_s"].get(phase, {}).get("median"), b["time_s"].get(phase, {}).get("median"))
        f = _ratio(r["flops"].get(phase, {}).get("total"), b["flops"].get(phase, {}).get("total"))
        out["time"][phase] = t
        out["flops"][phase] = f
        out["time_over_flops"][phase] = _ratio(t, f)
    for phase in MEMORY:
        out["memory_peak"][phase] = _ratio(r["memory_bytes"][phase]["peak"], b["memory_bytes"][phase]["peak"])
    return out


def add_ratios(records: list[dict[str, Any]], base: dict[str, Any]) -> None:
    """Put `ratios` (and `ratios_extrapolated` where extrapolated figures exist) into each record."""
    for record in records:
        record["ratios"] = ratios(record, base)
        if "extrapolated" in record and "extrapolated" in base:
            record["ratios_extrapolated"] = ratios(record, base, "extrapolated")
