"""`deco demo --reduce`: "trained at 36 vs reduced to 36" on a finished demo, training nothing.

Each seed's trained mlp model (144 tokens) is reduced at inference to the compressors' token count by each
reducer and asked the same held-out questions, scored the same way; beside it, the projectors trained to
that count (DeCo and the learned compressors) from the demo's results.json. Accuracy retention is reported
as the field does: reduced accuracy / the unreduced mlp's, per seed, then averaged. Gaps to the trained
DeCo use the demo's noise rule (deco.demo.core.notes.gap_and_noise). Relevance metrics of the kept tokens
(deco.analysis.metrics) come from each reducer's maps over the patches, on the same test images the
demo's analysis uses.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from deco.errors import ConfigError
from deco.reducers.registry import parse_reduce

if TYPE_CHECKING:
    from deco.demo.core.kind import SceneKind


def _stats(values: list[float]) -> dict[str, Any]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def _kept_token_metrics(model: Any, reducer: Any, images: list[Path]) -> dict[str, Any] | None:
    """Redundancy, coverage and spatial spread of the kept tokens on `images` (None for FastV: its choice
    depends on each prompt and is made inside the LLM)."""
    from deco.analysis.explanation import pixel_values
    from deco.analysis.metrics import coverage, redundancy, spatial_fidelity
    from deco.data.images import load_image

    if reducer.stage == "llm":
        return None
    pixels = pixel_values(model, [load_image(p) for p in images])
    with torch.no_grad():
        tokens = model.encode_images(pixels)
    maps = reducer.last.maps(reducer.input_tokens)  # per-patch projector: token i is patch i
    grid = model.vision_tower.grid
    side = round(reducer.budget ** 0.5)
    out_grid = (side, side) if reducer.name == "pool" else None
    return {**redundancy(tokens), **coverage(maps), **spatial_fidelity(maps, grid, out_grid)}


def _merge_trained(results: dict[str, Any], others: list[Path]) -> dict[str, Any]:
    """Add the trained projectors of other finished demo folders run on the same seeds and questions
    (e.g. the learned compressors run separately); the main folder's rows win."""
    for folder in others:
        path = Path(folder) / "results.json"
        if not path.is_file():
            raise ConfigError(f"--trained-in {folder}: {path} is missing")
        other = json.loads(path.read_text(encoding="utf-8"))
        for key in ("seeds", "test_questions_per_family", "geometry"):
            mine, theirs = results.get(key), other.get(key)
            if key == "geometry":
                mine, theirs = (mine or {}).get("patch_grid"), (theirs or {}).get("patch_grid")
            if mine != theirs:
                raise ConfigError(f"--trained-in {folder}: its {key} ({theirs}) differs from the demo's ({mine}); "
                                  "only runs on the same seeds and questions share the noise rule")
        for name, row in other["projectors"].items():
            results["projectors"].setdefault(name, row)
        seen = {(r["projector"], r["seed"]) for r in results["runs"]}
        results["runs"] += [r for r in other["runs"] if (r["projector"], r["seed"]) not in seen]
        names = {r.get("model") for r in results.get("relevance") or []}
        results["relevance"] = (results.get("relevance") or []) + [
            r for r in other.get("relevance") or [] if r.get("model") not in names]
    return results


def evaluate_reduced(out: Path, names: list[str], settings: Any, kind: SceneKind, assets: Any,
                     log: Any = print, trained_in: list[Path] | None = None) -> dict[str, Any]:
    """Reduce each seed's mlp model in `out`/runs by each reducer; returns the comparison payload (`kind`: the
    settings' scene kind, whose families are scored)."""
    from deco.demo.core.evaluate import answer_all, load_test, score
    from deco.demo.core.notes import gap_and_noise
    from deco.model import load_model
    from deco.reducers.apply import apply_reducer

    results_file = out / "results.json"
    if not results_file.is_file():
        raise ConfigError(f"--reduce evaluates a finished demo: {results_file} is missing (run `deco demo` there first)")
    results = _merge_trained(json.loads(results_file.read_text(encoding="utf-8")), list(trained_in or []))
    seeds = results["seeds"]
    h, w = settings.token_grid
    budget = h * w
    specs = [str(parse_reduce(f"{n}:{budget}")) for n in names]
    test = load_test(assets.data_dir / "test.json", settings.eval.test_images)
    images = sorted({assets.images / q["image"] for q in test})[:16]
    trained = results["projectors"]
    if "mlp" not in trained:
        raise ConfigError(f"{results_file}: the demo there has no mlp model to reduce (run it with mlp)")
    mlp_by_seed = {r["seed"]: r["final"]["overall"] for r in results["runs"] if r["projector"] == "mlp"}
    rows: dict[str, dict[str, Any]] = {}
    for spec in specs:
        finals, retention, relevance = [], [], []
        for seed in seeds:
            folder = out / "runs" / f"seed{seed}" / "mlp" / "stage2" / "final"
            if not folder.is_dir():
                raise ConfigError(f"{folder} is missing: the demo's final mlp model of seed {seed}")
            model = load_model(folder).eval()
            reducer = apply_reducer(model, spec)
            answers = answer_all(model, test, assets.images, settings.eval.batch_size, settings.eval.max_new_tokens)
            final = score(test, answers, kind)
            finals.append(final)
            retention.append(final["overall"] / mlp_by_seed[seed] if mlp_by_seed.get(seed) else float("nan"))
            relevance.append(_kept_token_metrics(model, reducer, images))
            log(f"  {spec} seed {seed}: overall {final['overall']:.3f} (mlp {mlp_by_seed.get(seed, float('nan')):.3f})")
        keys = [k for k in ("overall", "spatial", "localisation") if k in finals[0]]
        summary = {k: _stats([f[k] for f in finals]) for k in keys}
        summary["families"] = {f: _stats([x["families"][f] for x in finals]) for f in finals[0]["families"]}
        metrics = None
        if relevance[0] is not None:
            metrics = {k: statistics.fmean(r[k] for r in relevance) for k, v in relevance[0].items()
                       if isinstance(v, (int, float)) and all(isinstance(r[k], (int, float)) for r in relevance)}
        rows[spec] = {"reducer": spec.split(":")[0], "tokens": budget, "final": summary,
                      "retention": _stats(retention), "relevance": metrics, "stage": reducer.stage}
    n = len(test)
    combined = {**trained, **rows}
    for name, row in rows.items():
        if "deco" in trained:
            gap, noise = gap_and_noise(combined, name, "deco", "overall", n)
            row["vs_deco"] = {"gap": gap, "noise": noise, "beyond_noise": abs(gap) > noise}
    trained_rows = {}
    for p, v in trained.items():
        ratios = [r["final"]["overall"] / mlp_by_seed[r["seed"]] for r in results["runs"]
                  if r["projector"] == p and mlp_by_seed.get(r["seed"])]
        trained_rows[p] = {"visual_tokens": v["visual_tokens"], "final": v["final"], "retention": _stats(ratios)}
        if p != "deco" and "deco" in trained:
            gap, noise = gap_and_noise(trained, p, "deco", "overall", n)
            trained_rows[p]["vs_deco"] = {"gap": gap, "noise": noise, "beyond_noise": abs(gap) > noise}
    return {"seeds": seeds, "tokens": budget, "questions": n, "mlp_tokens": trained["mlp"]["visual_tokens"],
            "reduced": rows, "trained": trained_rows,
            "trained_relevance": results.get("relevance", []), "machine": results.get("machine"),
            "majority_baseline": results.get("majority_baseline")}


def _pm(stat: dict[str, Any] | None) -> str:
    return "-" if not stat else f"{stat['mean']:.2f} ± {stat['std']:.2f}"


def _gap(row: dict[str, Any]) -> str:
    vs = row.get("vs_deco")
    if not vs:
        return "reference" if row.get("reference") else "-"
    return f"{vs['gap']:+.2f} (±{vs['noise']:.2f}){' *' if vs['beyond_noise'] else ''}"


def markdown(payload: dict[str, Any]) -> str:
    """reduced.md: the trained-vs-reduced table, kept-token relevance metrics, how to read them."""
    from deco.reducers.registry import reducer_entry

    k, m = payload["tokens"], payload["mlp_tokens"]
    out = [f"# Trained at {k} vs reduced to {k} (deco demo --reduce)", "",
           f"Seeds {payload['seeds']}; {payload['questions']} held-out questions per seed; exact match. "
           f"Machine: {json.dumps(payload.get('machine'))}.", "",
           f"Reduced rows: each seed's trained mlp model ({m} tokens) with a training-free reducer keeping {k} "
           "tokens per image at inference. Retention = accuracy / the unreduced mlp's (same seed), mean ± SD over "
           "seeds. Gap to DeCo = mean accuracy minus the trained DeCo's, with the demo's noise rule in brackets "
           "(twice the seeds' spread of the difference, at least two binomial standard errors); * = beyond it.", "",
           "| method | trained? | acts on | tokens | overall | spatial | retention vs mlp | gap to DeCo |",
           "|---|---|---|---|---|---|---|---|"]
    for name, row in payload["trained"].items():
        fin = row["final"]
        row = {**row, "reference": name == "deco"}
        out.append(f"| {name} | yes | projector | {row['visual_tokens']} | {_pm(fin['overall'])} | "
                   f"{_pm(fin.get('spatial'))} | {_pm(row['retention'])} | {_gap(row)} |")
    for name, row in payload["reduced"].items():
        fin, entry = row["final"], reducer_entry(row["reducer"])
        out.append(f"| mlp + {name} | no | {entry.stage} | {row['tokens']} | {_pm(fin['overall'])} | "
                   f"{_pm(fin.get('spatial'))} | {_pm(row['retention'])} | {_gap(row)} |")
    out += ["", "## Kept tokens: redundancy, coverage, spatial spread (mean over seeds, 16 test images)", "",
            "`within_mean_cos`: mean cosine between an image's tokens; `coverage`: share of patches holding at "
            "least half the uniform share of the tokens' relevance; `cell_occupancy`: share of the token-grid "
            "cells some token's relevance centre falls in. For the mlp the maps are exact (token i = patch i), "
            "so these describe which patches each reducer keeps. FastV chooses inside the LLM per prompt: not "
            "measured here.", "",
            "| method | within_mean_cos | coverage | cell_occupancy | effective_patches_per_token |", "|---|---|---|---|---|"]

    def cell(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}"

    for r in payload.get("trained_relevance") or []:
        out.append(f"| {r['model']} (trained) | {cell(r.get('within_mean_cos'))} | {cell(r.get('coverage'))} | "
                   f"{cell(r.get('cell_occupancy'))} | {cell(r.get('effective_patches_per_token'))} |")
    for name, row in payload["reduced"].items():
        rel = row["relevance"] or {}
        out.append(f"| mlp + {name} | {cell(rel.get('within_mean_cos'))} | {cell(rel.get('coverage'))} | "
                   f"{cell(rel.get('cell_occupancy'))} | {cell(rel.get('effective_patches_per_token'))} |")
    return "\n".join(out) + "\n"
