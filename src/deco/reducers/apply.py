"""Put a reducer into a loaded DecoModel: the placeholder count follows the reducer's declared budget."""

from __future__ import annotations

from deco.model.multimodal import DecoModel
from deco.reducers.base import Reducer
from deco.reducers.registry import ReduceSpec, build_reducer, parse_reduce


def apply_reducer(model: DecoModel, spec: str | ReduceSpec | None) -> Reducer | None:
    """Attach the reducer `spec` names (None/"none": leave the model as it is); returns it.

    After this, `model.num_image_tokens` is the reducer's K, so `model.processor()` lays out K
    placeholders per image and `DecoModel.embed` checks the count as for any projector. Call before
    building a Generator or processor. One reducer per model (an LLM-stage reducer's hooks stay).
    """
    parsed = parse_reduce(spec)
    if parsed is None:
        return None
    if getattr(model, "reducer", None) is not None:
        model.num_image_tokens = model.reducer.input_tokens  # type: ignore[union-attr]
    reducer = build_reducer(parsed)
    reducer.attach(model)
    model.reducer = reducer
    model.num_image_tokens = reducer.num_tokens(reducer.input_tokens or model.num_image_tokens)
    return reducer
