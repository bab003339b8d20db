"""`deco app`: a Gradio page to ask a model about an image and see what each visual token holds.

Files, one job each: sources (which models: --model or `deco demo`'s), inputs (upload and question
checks), engine (one model, one call at a time: answers and deco.analysis explanations), overlay and
views (drawing the maps), training (the server's one demo run), eta (its time left from real step
counts), runpanel (the run as every tab shows it), handlers (the callbacks),
page (layout and wiring), server (build and launch), scenes (bundled demo images), cli (`deco app`).
Gradio is optional (`pip install 'deco-vlm[app]'`); nothing here imports it until the app is built.
"""

from __future__ import annotations

from deco.lazy import lazy_exports

_EXPORTS = {"build_app": "server", "serve": "server", "free_port": "server", "demo_models": "sources",
            "ModelChoice": "sources", "Engine": "engine"}

__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = ["Engine", "ModelChoice", "build_app", "demo_models", "free_port", "serve"]
