"""Writing an explanation to a folder: JSON summary, the maps (safetensors) and PNG figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from deco.analysis.explanation import Explanation
from deco.analysis.figures import query_grid_figure, text_to_patch_figure, text_to_query_figure


def _top_patches(row: Any, grid: tuple[int, int], k: int = 5) -> list[dict[str, Any]]:
    values, index = row.float().topk(min(k, row.numel()))
    return [{"row": int(i) // grid[1], "col": int(i) % grid[1], "share": float(v)}
            for v, i in zip(values, index, strict=True)]


def summary(exp: Explanation, model_label: str) -> dict[str, Any]:
    """The JSON-ready description of an explanation (maps themselves go to maps.safetensors)."""
    q2p = exp.q2p
    return {
        "model": model_label,
        "projector": q2p.projector,
        "question": exp.question,
        "prompt": exp.prompt,
        "answer": exp.answer,
        "answer_tokens": exp.t2q.tokens,
        "words": [{"text": w.text, "tokens": w.tokens,
                   "top_patches": _top_patches(exp.word_t2p[i], q2p.grid)} for i, w in enumerate(exp.words)],
        "query_to_patch": {
            "route": q2p.route, "note": q2p.note, "patch_grid": list(q2p.grid),
            "token_grid": list(q2p.out_grid) if q2p.out_grid else None,
            "tokens": q2p.maps.shape[1], "zero_relevance_tokens": q2p.zero_rows,
        },
        "text_to_query": {"method": "Chefer et al. 2021 self-attention rule through the LLM (eager attention), "
                                    "gradients of each answer token's logit; rows normalised over visual tokens"},
        "text_to_patch": {"method": "text_to_query @ query_to_patch (rows sum to 1 over patches); "
                                    "a word's map is the mean of its tokens' maps"},
        "timings_s": exp.timings,
        "files": {"maps": "maps.safetensors", "figures": ["query_to_patch.png", "text_to_patch.png",
                                                         "text_to_query.png"]},
    }


def write_explanation(exp: Explanation, out_dir: str | Path, model_label: str, max_queries: int = 64) -> dict[str, Path]:
    """explanation.json, maps.safetensors and three PNG figures in out_dir; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    paths["json"] = out / "explanation.json"
    paths["json"].write_text(json.dumps(summary(exp, model_label), indent=2, ensure_ascii=False), encoding="utf-8")
    paths["maps"] = out / "maps.safetensors"
    tensors = {
        "query_to_patch": exp.q2p.maps[0], "query_to_patch_raw": exp.q2p.raw[0],
        "text_to_query": exp.t2q.maps, "text_to_query_raw": exp.t2q.raw,
        "text_to_patch": exp.t2p, "word_text_to_patch": exp.word_t2p,
    }
    save_file({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}, str(paths["maps"]))
    route = f"{exp.q2p.route} route"
    paths["query_to_patch"] = query_grid_figure(
        exp.image, exp.q2p.maps[0], exp.q2p.grid, out / "query_to_patch.png",
        f"Query-to-Patch, {model_label} ({route})", max_queries,
    )
    paths["text_to_patch"] = text_to_patch_figure(
        exp.image, exp.word_t2p, [w.text for w in exp.words], exp.q2p.grid, out / "text_to_patch.png",
        f"Text-to-Patch, {model_label}: Q: {exp.question[:60]}  A: {exp.answer[:40]}",
    )
    paths["text_to_query"] = text_to_query_figure(
        exp.t2q.maps, exp.t2q.tokens, out / "text_to_query.png", f"Text-to-Query, {model_label}"
    )
    return paths
