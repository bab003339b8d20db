"""Write bench.json and bench.md, print the rich table; the JSON schema check lives here too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deco.bench.machine import machine_line
from deco.bench.memory import gib
from deco.errors import DataError

# Keys every bench.json has (tests and readers rely on them); nested: keys of each variant.
TOP_KEYS = ("schema", "created", "machine", "settings", "memory_estimate", "baseline", "variants", "peer", "notes")
VARIANT_KEYS = ("key", "projector", "options", "tokens", "params", "flops", "time_s", "decode_tokens_per_s",
                "memory_bytes", "kv_cache", "ratios")
PARAM_KEYS = ("projector", "vision_tower", "llm", "total", "trainable_stage1", "trainable_stage2")
FLOP_PHASES = ("forward", "train_stage1", "train_stage2", "prefill", "decode_token", "projector_fwd_bwd")
TIME_KEYS = ("projector_fwd_bwd", "train_stage1", "train_stage2", "prefill", "decode_token")
STAT_KEYS = ("median", "q1", "q3", "iqr", "min", "max", "n")


def check_schema(data: dict[str, Any]) -> None:
    """Raise DataError naming the first missing key of a bench.json dict."""
    def need(obj: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
        for key in keys:
            if key not in obj:
                raise DataError(f"bench.json: '{where}{key}' is missing")

    need(data, TOP_KEYS, "")
    if data["schema"] != "deco-bench/1":
        raise DataError(f"bench.json: schema is {data['schema']!r}, expected 'deco-bench/1'")
    need(data["machine"], ("cpu", "logical_cores", "torch", "device", "gpu"), "machine.")
    for i, v in enumerate(data["variants"]):
        where = f"variants[{i}]."
        need(v, VARIANT_KEYS, where)
        need(v["params"], PARAM_KEYS, where + "params.")
        for phase in FLOP_PHASES:
            need(v["flops"], (phase,), where + "flops.")
            need(v["flops"][phase], ("total", "vision_tower", "projector", "llm"), f"{where}flops.{phase}.")
        for key in TIME_KEYS:
            need(v["time_s"], (key,), where + "time_s.")
            need(v["time_s"][key], STAT_KEYS, f"{where}time_s.{key}.")
        for key in ("train_stage1", "train_stage2", "prefill"):
            need(v["memory_bytes"], (key,), where + "memory_bytes.")
            need(v["memory_bytes"][key], ("weights", "optimizer_state", "dynamic_peak", "peak"),
                 f"{where}memory_bytes.{key}.")
        need(v["kv_cache"], ("bytes_per_token", "visual_bytes_per_image"), where + "kv_cache.")
        need(v["ratios"], ("tokens", "time", "flops", "memory_peak", "time_over_flops"), where + "ratios.")
    if data["peer"] is not None:
        need(data["peer"], ("max_abs_logit_diff", "ratio", "within_2_percent", "logits_match_1e-5"), "peer.")
    if data["baseline"] not in {v["key"] for v in data["variants"]}:
        raise DataError(f"bench.json: baseline '{data['baseline']}' is not one of the variants")


def _ms(stats: dict[str, Any] | None) -> str:
    if not stats or stats.get("median") is None:
        return "-"
    return f"{stats['median'] * 1e3:.1f} ± {stats['iqr'] / 2 * 1e3:.1f}"


def _g(n: float | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e9:,.0f}" if n >= 1e11 else f"{n / 1e9:.3g}"


def _x(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}"


def _count(n: int | None) -> str:
    if n is None:
        return "-"
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n:,}"


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _main_rows(data: dict[str, Any], source: str | None = None) -> list[list[str]]:
    rows = []
    for v in data["variants"]:
        r = v[source] if source else v
        mem = r["memory_bytes"]
        rows.append([
            v["key"], str(v["tokens"]), _count(v["params"]["projector"]),
            f"{_count(r['params']['trainable_stage1'] if source else v['params']['trainable_stage1'])} / "
            f"{_count(r['params']['trainable_stage2'] if source else v['params']['trainable_stage2'])}",
            _g(r["flops"]["forward"]["total"]), _g(r["flops"]["train_stage2"]["total"]),
            _ms(r["time_s"]["projector_fwd_bwd"]), _ms(r["time_s"]["train_stage1"]), _ms(r["time_s"]["train_stage2"]),
            gib(mem["train_stage1"]["peak"]), gib(mem["train_stage2"]["peak"]),
            _ms(r["time_s"]["prefill"]), _rate(r["decode_tokens_per_s"]), gib(r["kv_cache"]["visual_bytes_per_image"]),
        ])
    return rows


MAIN_HEADER = ["config", "visual tokens", "projector params", "trainable s1 / s2", "fwd GFLOP", "train s2 GFLOP",
               "proj fwd+bwd ms", "train s1 ms", "train s2 ms", "peak mem s1", "peak mem s2", "TTFT ms",
               "decode tok/s", "KV visual/image"]
RATIO_HEADER = ["config", "tokens ×", "train s1 time ×", "FLOPs ×", "time/FLOP", "train s2 time ×", "FLOPs ×",
                "time/FLOP", "TTFT ×", "FLOPs ×", "time/FLOP", "decode time ×", "peak mem s2 ×"]


def _ratio_rows(data: dict[str, Any], key: str = "ratios") -> list[list[str]]:
    rows = []
    for v in data["variants"]:
        r = v.get(key)
        if r is None:
            continue
        row = [v["key"], _x(r["tokens"])]
        for phase in ("train_stage1", "train_stage2", "prefill"):
            row += [_x(r["time"][phase]), _x(r["flops"][phase]), _x(r["time_over_flops"][phase])]
        row += [_x(r["time"]["decode_token"]), _x(r["memory_peak"]["train_stage2"])]
        rows.append(row)
    return rows


COST_COLUMNS = (0, 1, 2, 3, 4, 5, 13)
TIME_COLUMNS = (0, 6, 7, 8, 9, 10, 11, 12)
SHORT_RATIOS = (0, 1, 5, 6, 7, 8, 9, 10, 12)


def _rich(title: str, header: list[str], rows: list[list[str]], columns: tuple[int, ...]) -> Any:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title))  # titles hold "[measured]": literal brackets, not rich markup
    # Config names are never cut ("deco@144" and "deco@64" must stay apart); numbers fold when narrow.
    name_width = max(len(header[columns[0]]), *(len(row[columns[0]]) for row in rows))
    for i in columns:
        if i == columns[0]:
            table.add_column(header[i], justify="left", no_wrap=True, min_width=name_width)
        else:
            table.add_column(header[i], justify="right", overflow="fold")
    for row in rows:
        table.add_row(*[row[i] for i in columns])
    return table


REDUCER_HEADER = ["reducer", "acts on", "tokens in → kept", "prefill GFLOP", "FLOPs ×", "TTFT ms", "TTFT ×",
                  "KV bytes (batch)", "KV ×", "selection ms/image"]


def _reducer_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in data.get("reducers") or []:
        sel = r["selection_s_per_image"]
        flop_mark = "" if r["measured_as_run"] else " †"
        rows.append([
            r["key"], r["stage"] or "-", f"{r['tokens_in']} → {r['tokens_kept']}",
            _g(r["prefill_flops"]["total"]) + flop_mark, _x(r["ratios"]["flops"]), _ms(r["time_to_first_token_s"]),
            _x(r["ratios"]["time"]), _count(r["kv_cache_bytes"]) + flop_mark, _x(r["ratios"]["kv"]),
            "-" if sel is None else f"{sel * 1e3:.2f}",
        ])
    return rows


def _reducers_md(data: dict[str, Any]) -> list[str]:
    if not data.get("reducers"):
        return []
    return ["## Training-free reducers on the mlp model", "",
            "Each reducer keeps its budget of the mlp model's visual tokens at inference (deco.reducers); ratios "
            "against the unreduced mlp prefill `(none)`, measured in the same interleaved rounds. TTFT = image "
            "encoding + reduction + the LLM pass that gives the first token. Prefill FLOPs include the reducer's own "
            "(DivPrune's distances, VisPruner's similarity rounds, the recomputed tower attention of VisionZip and "
            "VisPruner). Selection = the reducer's own time per image (for VisionZip/VisPruner also the tower "
            "attention map it recomputes; the encoder pass itself is not counted). Measured at the size's depth, never extrapolated. "
            "† FastV masks the dropped tokens (same outputs as cutting them), so its FLOPs and KV bytes are "
            "computed from counted passes (layers < K at all tokens, layers ≥ K at the kept ones) and its TTFT "
            "is the masked run's, with eager attention: nothing saved by construction.", "",
            _md_table(REDUCER_HEADER, _reducer_rows(data)), ""]


def print_table(data: dict[str, Any], console: Any) -> None:
    """The headline figures as rich tables in the terminal (bench.md has every column)."""
    s = data["settings"]
    head = f"{s['size']} on {s['device']} ({s['dtype']}), batch {s['batch_size']}, {s['input_patches']} patches"
    extrap = data["variants"][0].get("extrapolated") is not None
    source, label = ("extrapolated", "extrapolated to full depth (estimate)") if extrap else (None, "measured")
    rows = _main_rows(data, source)
    console.print(_rich(f"Cost per configuration: {head} [{label}]", MAIN_HEADER, rows, COST_COLUMNS))
    console.print(_rich(f"Time (median ± IQR/2, {s['repeats']} interleaved rounds) and peak memory [{label}]",
                        MAIN_HEADER, rows, TIME_COLUMNS))
    key = "ratios_extrapolated" if extrap else "ratios"
    console.print(_rich(f"Against {data['baseline']} [{label}]; time/FLOP 1.00 = time falls as fast as FLOPs",
                        RATIO_HEADER, _ratio_rows(data, key), SHORT_RATIOS))
    if data["peer"]:
        console.print(peer_summary(data["peer"]))
    if data.get("reducers"):
        console.print(_rich("Training-free reducers on the mlp model (bench.md explains †)", REDUCER_HEADER,
                            _reducer_rows(data), tuple(range(len(REDUCER_HEADER)))))
    if s.get("train_step"):
        console.print(f"training steps: {train_step_line(s['train_step'])}")
    if data.get("loader"):
        console.print(loader_line(data["loader"]))
    console.print(f"machine: {machine_line(data['machine'])}")


def train_step_line(t: dict[str, Any]) -> str:
    """The settings of the timed training steps, in one line."""
    ckpt = t["gradient_checkpointing"]
    return (f"{t['code']}; precision {t['precision']}, per-device batch {t['per_device_batch']} x "
            f"{t['accumulation']} accumulation, clip {t['max_grad_norm']}, activation checkpointing stage 1 "
            f"{'on' if ckpt['stage1'] else 'off'} / stage 2 {'on' if ckpt['stage2'] else 'off'}, {t['optimizer']}, "
            f"{t['data_loader']}, compile {'on' if t['compile'] else 'off'}")


def loader_line(loader: dict[str, Any]) -> str:
    """The data loader alone against the baseline step's demand."""
    over = loader["loader_over_demand"]
    return (f"data loader alone: {loader['loader_samples_per_s']:.1f} samples/s = "
            + ", ".join(f"{x:.1f}x {k}'s demand" for k, x in over.items())
            + " (above 1: the loader keeps up)")


def peer_summary(peer: dict[str, Any]) -> str:
    """One paragraph: logits check, forward-time ratio, and what the spread says about it."""
    paired = peer["paired_ratio"]
    text = (f"HF LlavaForConditionalGeneration vs our {peer['variant']} ({peer['sequence_tokens']} tokens): "
            f"max |logit diff| {peer['max_abs_logit_diff']:.2e} "
            f"({'match' if peer['logits_match_1e-5'] else 'MISMATCH'} at 1e-5). Forward "
            f"{peer['deco_forward_s']['median'] * 1e3:.1f} ms (ours) vs {peer['hf_forward_s']['median'] * 1e3:.1f} ms "
            f"(HF), median of {paired['n']} interleaved rounds; ratio ours/HF {peer['ratio']:.3f} (median of the "
            f"per-round ratios, IQR {paired['q1']:.3f}-{paired['q3']:.3f}; ratio of medians "
            f"{peer['ratio_of_medians']:.3f}, of minimums {peer['ratio_of_minimums']:.3f}). ")
    if peer["within_2_percent"]:
        return text + "Within the 2% target."
    if paired["q1"] <= 1.0 <= paired["q3"]:
        return text + (f"Outside the 2% target, but the per-round spread ({(paired['q3'] - paired['q1']) * 100:.0f}% "
                       "IQR) contains 1.0: the gap is not distinguishable from timing noise on this machine. "
                       "Both run the very same HF modules; only the wrappers differ.")
    return text + ("Outside the 2% target and outside the per-round spread: a systematic difference in the "
                   "wrappers (see notes).")


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _flop_rows(data: dict[str, Any], source: str | None = None) -> list[list[str]]:
    rows = []
    for v in data["variants"]:
        f = (v[source] if source else v)["flops"]
        row = [v["key"]]
        for phase in ("forward", "train_stage1", "train_stage2"):
            p = f[phase]
            row += [_g(p["vision_tower"]), _g(p["projector"]), _g(p["llm"]), _g(p["total"])]
        rows.append(row)
    return rows


def write_markdown(data: dict[str, Any], path: Path, plot_name: str | None) -> None:
    """bench.md: settings, machine, tables, peer comparison, per-layer figures, notes."""
    s = data["settings"]
    m = data["machine"]
    out = [f"# deco bench: {s['size']} on {s['device']} ({s['dtype']})", ""]
    if data.get("command"):
        out += [f"Reproduce: `{data['command']}`", ""]
    out += [f"- Machine: {machine_line(m)}; load average at start/end {m.get('load_average_start')} / "
            f"{m.get('load_average_end')}; torch threads {s['threads']}.",
            f"- Run: {data['created']}, {data['duration_s']:.0f} s. Batch {s['batch_size']}, input grid "
            f"{s['input_grid'][0]}x{s['input_grid'][1]} = {s['input_patches']} patches, training text "
            f"{s['train_text_tokens']} tokens, {s['new_tokens']} decoded tokens; {s['warmup']} warm-up + "
            f"{s['repeats']} rounds, configurations interleaved (rotated order each round).",
            f"- Vision tower: {json.dumps(s['vision'])}", f"- LLM: {json.dumps(s['llm'])}",
            f"- Projector option overrides for this size: {json.dumps(s.get('projector_options') or {})}",
            f"- Optimizer: {s['optimizer']}. Baseline for ratios: `{data['baseline']}`."]
    if s.get("train_step"):
        out += [f"- Training steps: {train_step_line(s['train_step'])}."]
    if data.get("loader"):
        out += [f"- {loader_line(data['loader'])}; data wait per step (median fraction): "
                f"{json.dumps({k: round(x, 3) for k, x in data['loader']['data_wait_fraction_median'].items()})}."]
    out += [""]
    if s.get("extrapolated_to"):
        t = s["extrapolated_to"]
        ml = s["measured_layers"]
        out += [f"**Extrapolated.** Measured with {ml['vision']} vision and {ml['llm']} LLM layers of the real "
                f"shapes; full-depth figures add ({t.get('vision_layers')} - {ml['vision']}) vision and "
                f"({t.get('llm_layers')} - {ml['llm']}) LLM layers at the per-layer cost measured in the same "
                "run (time per layer from hooks in every timed round; activation bytes per layer from the "
                "memory probe; FLOPs and parameters per layer exact). They are estimates, not measurements "
                "of a full model.", ""]
    if plot_name:
        out += [f"![time and memory versus visual tokens]({plot_name})", ""]
    out += ["## Measured", "", "Times are median ± half the inter-quartile range.", "",
            _md_table(MAIN_HEADER, _main_rows(data)), ""]
    extrap = data["variants"][0].get("extrapolated") is not None
    if extrap:
        out += ["## Extrapolated to full depth (estimate)", "", _md_table(MAIN_HEADER, _main_rows(data, "extrapolated")), ""]
    out += [f"## Ratios against `{data['baseline']}`", "",
            "`time/FLOP` = time ratio / FLOP ratio: 1.00 means the time fell as much as the FLOPs did; "
            "above 1, costs the FLOP count does not see (memory-bound ops, launches, Python, the optimizer) "
            "keep the time up.", ""]
    out += [_md_table(RATIO_HEADER, _ratio_rows(data)), ""]
    if extrap:
        out += ["Extrapolated:", "", _md_table(RATIO_HEADER, _ratio_rows(data, "ratios_extrapolated")), ""]
    flop_header = ["config"] + [f"{p} {c}" for p in ("fwd", "train s1", "train s2")
                                for c in ("vision", "projector", "LLM", "total")]
    out += ["## FLOPs by component (GFLOP)", "", "`torch.utils.flop_counter` (matmuls, convolutions, attention; "
            "elementwise ops and the optimizer update count zero). Stage 1 backward runs through the LLM "
            "for the projector's gradient but computes no LLM weight gradients.", "",
            _md_table(flop_header, _flop_rows(data)), ""]
    if extrap:
        out += ["Extrapolated:", "", _md_table(flop_header, _flop_rows(data, "extrapolated")), ""]
        out += _per_layer_md(data)
    out += _memory_md(data)
    out += _reducers_md(data)
    if data["peer"]:
        out += ["## Peer: HF LlavaForConditionalGeneration", "", peer_summary(data["peer"]), "",
                f"Weights: {data['peer']['weights']}.", ""]
    out += ["## Notes", ""] + [f"- {n}" for n in data["notes"]] + [""]
    path.write_text("\n".join(out), encoding="utf-8")


def _per_layer_md(data: dict[str, Any]) -> list[str]:
    rows = []
    for v in data["variants"]:
        p = v["extrapolated"]["per_layer"]
        rows.append([
            v["key"], _count(p["llm_params"]), _g(p["llm_flops"]["train_stage2"]), _g(p["llm_flops"]["prefill"]),
            _ms(p["llm_time_s"]["train_stage1"]), _ms(p["llm_time_s"]["train_stage2"]), _ms(p["llm_time_s"]["prefill"]),
            f"{(p['llm_time_s']['decode_token']['median'] or 0) * 1e3:.2f}",
            gib(p["llm_activation_bytes"]["train_stage2"]), f"{p['kv_bytes_per_token']:,}",
            _ms(p["vision_time_s"]["prefill"]),
        ])
    header = ["config", "LLM layer params", "train s2 GFLOP/layer", "prefill GFLOP/layer", "train s1 ms/layer",
              "train s2 ms/layer", "prefill ms/layer", "decode ms/layer/token", "s2 activations/layer",
              "KV bytes/token/layer", "vision ms/layer"]
    return ["## Per-layer figures (the basis of the extrapolation)", "", _md_table(header, rows), ""]


def _memory_md(data: dict[str, Any]) -> list[str]:
    rows = []
    for v in data["variants"]:
        for source in ("memory_bytes",):
            m = v[source]
            for phase in ("train_stage1", "train_stage2", "prefill"):
                rows.append([v["key"], phase, gib(m[phase]["weights"]), gib(m[phase]["optimizer_state"]),
                             gib(m[phase]["dynamic_peak"]), gib(m[phase]["peak"])])
    return ["## Memory (measured)", "",
            "peak = weights + AdamW state (2 moments per trained parameter) + dynamic peak (tensor bytes "
            "allocated during the step: activations, gradients, temporaries; on CPU counted by a "
            "dispatch-mode storage tracker, on GPU by `torch.cuda.max_memory_allocated`).", "",
            _md_table(["config", "step", "weights", "AdamW state", "dynamic peak", "peak"], rows), ""]


def write_outputs(data: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """bench.json, bench.md and bench.png in `out_dir`; returns their paths."""
    from deco.bench.plot import write_plot

    check_schema(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "bench.json", "md": out_dir / "bench.md", "plot": out_dir / "bench.png"}
    paths["json"].write_text(json.dumps(data, indent=2), encoding="utf-8")
    write_plot(data, paths["plot"])
    write_markdown(data, paths["md"], paths["plot"].name)
    return paths
