"""train.compile: torch.compile the LLM and the projector in place.

`Module.compile()` compiles the module's call and keeps its parameters and their names, so
checkpoints, the optimizer's parameter groups and saved models are the same as without it.
The vision tower is left alone: frozen, it runs once per image under no compile-sensitive loop.
"""

from __future__ import annotations

from deco.model import DecoModel


def compile_parts(model: DecoModel) -> list[str]:
    """Compile model.llm and model.projector in place; returns the names compiled (for the log)."""
    model.llm.compile()
    model.projector.compile()
    return ["llm", "projector"]
