"""Time and memory versus visual tokens: one line per projector, the 576 -> 144 step marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PANELS = (
    ("train_stage2", "time", "training step, stage 2 (s)"),
    ("prefill", "time", "time to first token (s)"),
    ("train_stage2", "memory", "peak memory, stage 2"),
)


def _value(v: dict[str, Any], source: str | None, phase: str, kind: str, scale: float = 2**30) -> float:
    r = v[source] if source else v
    if kind == "time":
        return r["time_s"][phase]["median"]
    return r["memory_bytes"][phase]["peak"] / scale


def _spread(v: dict[str, Any], source: str | None, phase: str) -> tuple[float, float]:
    t = (v[source] if source else v)["time_s"][phase]
    return t["median"] - t["q1"], t["q3"] - t["median"]


def write_plot(data: dict[str, Any], path: Path) -> None:
    """Save a PNG with one panel per measure; extrapolated figures when the run has them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    source = "extrapolated" if data["variants"][0].get("extrapolated") else None
    by_projector: dict[str, list[dict[str, Any]]] = {}
    for v in data["variants"]:
        by_projector.setdefault(v["projector"], []).append(v)
    full = data["settings"]["input_patches"]
    compressed = min((t for t in data["settings"]["tokens"] if t < full), default=None, key=lambda t: abs(t - 144))
    peak = max(_value(v, source, "train_stage2", "memory", 1) for v in data["variants"])
    scale, unit = (2**30, "GiB") if peak >= 2**30 else (2**20, "MiB")
    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 4.2))
    for ax, (phase, kind, label) in zip(axes, PANELS, strict=True):
        label = label if kind == "time" else f"{label} ({unit})"
        for name, variants in by_projector.items():
            variants = sorted(variants, key=lambda v: v["tokens"])
            xs = [v["tokens"] for v in variants]
            ys = [_value(v, source, phase, kind, scale) for v in variants]
            if kind == "time":  # error bars: inter-quartile range of the timed rounds
                err = list(zip(*[_spread(v, source, phase) for v in variants], strict=True))
                ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=name)
            else:
                ax.plot(xs, ys, marker="o", label=name)
        ax.axvline(full, color="grey", linestyle=":", linewidth=1)
        if compressed:
            ax.axvline(compressed, color="grey", linestyle=":", linewidth=1)
            base = next((v for v in data["variants"] if v["key"] == data["baseline"]), None)
            deco = next((v for v in data["variants"] if v["projector"] == "deco" and v["tokens"] == compressed), None)
            if base and deco:
                ax.annotate(f"{full}->{compressed}", xy=(compressed, _value(deco, source, phase, kind, scale)),
                            xytext=(full, _value(base, source, phase, kind, scale)),
                            arrowprops={"arrowstyle": "->", "color": "black"}, fontsize=8, ha="right")
        ax.set_xscale("log", base=2)
        ticks = sorted({v["tokens"] for v in data["variants"]})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_ylim(bottom=0)
        ax.set_xlabel("visual tokens into the LLM")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    s = data["settings"]
    where = data["machine"].get("gpu", {}) or {}
    device = where.get("name") or data["machine"]["cpu"]
    title = f"deco bench {s['size']} ({s['dtype']}) on {device}"
    if source:
        title += f" - extrapolated to {s['extrapolated_to']['llm_layers']} LLM layers (estimate)"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
