"""Relevance analysis (R-GAE after Chefer et al. 2021), visual-token metrics and figures.

Flow: `query_to_patch` (projector tokens -> patches: exact pooling matrix, attention relevance, or
input-gradient sensitivity) and `text_to_query` (answer tokens -> visual tokens, through the LLM)
compose into Text-to-Patch in `explain`; `compare_projectors` measures redundancy, coverage and
spatial fidelity over images; `figures` draws them; `deco analyze` (cli.py) runs it all.
"""

from __future__ import annotations

from deco.lazy import lazy_exports

# Lazy exports: `deco --help` imports deco.analysis.cli, which must not pull in torch and transformers.
_EXPORTS = {
    "compare_projectors": "compare", "markdown_table": "compare", "projector_metrics": "compare",
    "write_table": "compare", "Explanation": "explanation", "Word": "explanation", "explain": "explanation",
    "model_query_to_patch": "explanation", "coverage": "metrics", "redundancy": "metrics",
    "relevance_centres": "metrics", "spatial_fidelity": "metrics", "QueryPatchMap": "query_patch",
    "default_route": "query_patch", "output_grid": "query_patch", "query_to_patch": "query_patch",
    "TextQueryMap": "text_query", "build_prompt": "text_query", "text_to_query": "text_query",
    "metrics_bar_chart": "figures", "write_explanation": "outputs",
}


__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "Explanation",
    "QueryPatchMap",
    "TextQueryMap",
    "Word",
    "build_prompt",
    "compare_projectors",
    "coverage",
    "default_route",
    "explain",
    "markdown_table",
    "metrics_bar_chart",
    "model_query_to_patch",
    "output_grid",
    "projector_metrics",
    "query_to_patch",
    "redundancy",
    "relevance_centres",
    "spatial_fidelity",
    "text_to_query",
    "write_explanation",
    "write_table",
]
