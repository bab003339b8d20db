"""Initialise deco's Q-Former projector from an HF BLIP-2 checkpoint, as the DeCo paper's Q-Former baseline.

What carries over (BLIP-2, arXiv 2301.12597; salesforce/LAVIS blip2_qformer.py): self-attention, FFN and LayerNorms of the chosen Q-Former layers, and
the learnable `query_tokens`. What cannot, and stays at the projector's own initialisation (each
logged with its reason):
- cross-attention key/value when the vision width differs (BLIP-2's EVA-g is 1408 wide, CLIP-L 1024);
- cross-attention of a layer whose checkpoint counterpart has none (BLIP-2 cross-attends every 2nd
  layer; DeCo's 2-layer comparison Q-Former every layer);
- `query_tokens` when the projector asks for another number of queries;
- `language_projection`, which maps into BLIP-2's own LLM (loaded only on request and if it fits).
Only the needed tensors are read from the safetensors files; the vision model and LLM are never loaded.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from deco.errors import ConfigError, ShapeError
from deco.interop.checkpoint import read_hf_config, read_tensors, tensor_names, weight_files
from deco.projectors.qformer import QFormerProjector, blip2_qformer_weights

log = logging.getLogger(__name__)

# model_type -> prefix of the Q-Former tensors: a whole BLIP-2 model, or a bare Q-Former.
_PREFIXES = {"blip-2": "qformer.", "blip_2_qformer": ""}
_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.*)$")
_KV = re.compile(r"\.crossattention\.attention\.(key|value)\.")


@dataclass
class Blip2InitReport:
    """What was loaded from the checkpoint, what kept its fresh initialisation and why, what was unused."""

    checkpoint: str
    layers: list[int]
    loaded: list[str] = field(default_factory=list)
    reinitialised: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few log lines: counts, then every re-initialised tensor with its reason."""
        lines = [
            f"BLIP-2 init from {self.checkpoint}: checkpoint layers {self.layers} -> projector layers "
            f"{list(range(len(self.layers)))}; {len(self.loaded)} tensors loaded, "
            f"{len(self.reinitialised)} re-initialised, {len(self.ignored)} checkpoint tensors unused"
        ]
        lines += [f"  re-initialised {k}: {why}" for k, why in self.reinitialised.items()]
        return "\n".join(lines)


def _checkpoint_layers(names: Sequence[str], prefix: str) -> int:
    indices = {int(m.group(1)) for n in names if n.startswith(prefix) and (m := _LAYER.match(n[len(prefix):]))}
    return max(indices) + 1 if indices else 0


def _renumber(state: dict[str, torch.Tensor], prefix: str, layers: Sequence[int]) -> tuple[dict, list[str]]:
    """Keep the chosen checkpoint layers, renumbered 0..n-1; return the unused layer keys too."""
    target = {src: dst for dst, src in enumerate(layers)}
    out, unused = {}, []
    for key, value in state.items():
        m = _LAYER.match(key[len(prefix):]) if key.startswith(prefix) else None
        if m is None:
            out[key] = value
        elif int(m.group(1)) in target:
            out[f"{prefix}encoder.layer.{target[int(m.group(1))]}.{m.group(2)}"] = value
        else:
            unused.append(key)
    return out, unused


def init_qformer_from_blip2(
    projector: QFormerProjector,
    path: str | Path,
    layers: Sequence[int] | None = None,
    load_language_projection: bool = False,
    allow_pickle: bool = False,
) -> Blip2InitReport:
    """Load a BLIP-2 Q-Former into `projector` in place and return (and log) what happened.

    `layers` picks which checkpoint layers become the projector's layers 0..n-1 (default: the first n,
    n = the projector's num_hidden_layers). The Q-Former width and head count must match the checkpoint.
    """
    path = Path(path)
    config = read_hf_config(path)
    model_type = config.get("model_type")
    if model_type not in _PREFIXES:
        archs = ", ".join(config.get("architectures") or []) or "no architectures listed"
        raise ConfigError(
            f"'{path}' is a '{model_type}' checkpoint ({archs}); expected a BLIP-2 checkpoint "
            "(model_type 'blip-2', e.g. Blip2Model, or 'blip_2_qformer')"
        )
    prefix = _PREFIXES[model_type]
    n_layers = projector.config.num_hidden_layers
    layers = list(range(n_layers)) if layers is None else [int(i) for i in layers]
    files = weight_files(path, allow_pickle)
    names = tensor_names(files, allow_pickle)
    available = _checkpoint_layers(names, prefix)
    if len(layers) != n_layers:
        raise ConfigError(f"{len(layers)} checkpoint layers chosen for a projector with num_hidden_layers={n_layers}")
    bad = [i for i in layers if not 0 <= i < available]
    if bad:
        raise ConfigError(f"'{path}' has {available} Q-Former layers (0..{available - 1}); layers {bad} do not exist")
    wanted = [n for n in names if n.startswith(prefix) or n == "query_tokens" or n.startswith("language_projection.")]
    raw = read_tensors(files, wanted, allow_pickle)
    raw, unused = _renumber(raw, prefix, layers)
    source = blip2_qformer_weights(raw, prefix)
    report = Blip2InitReport(str(path), layers)
    own = projector.state_dict()
    # Unused: layers not chosen, the text branch (dropped by blip2_qformer_weights), and cross-attention
    # of checkpoint layers whose projector layer has none.
    dropped = [k for k in raw if k.startswith(prefix) and "qformer." + k[len(prefix):] not in source
               and k != "query_tokens" and not k.startswith("language_projection.")]
    report.ignored = sorted(unused + dropped + [k for k in source if k not in own])
    state = _select(projector, source, load_language_projection, report)
    projector.load_state_dict(state, strict=False)
    log.info(report.summary())
    return report


def _select(
    projector: QFormerProjector, source: dict[str, torch.Tensor], load_lp: bool, report: Blip2InitReport
) -> dict[str, torch.Tensor]:
    """The checkpoint tensors that fit; re-initialisation reasons and shape errors for the rest."""
    own = projector.state_dict()
    state: dict[str, torch.Tensor] = {}
    errors: list[str] = []
    for key, target in own.items():
        value = source.get(key)
        if key.startswith("language_projection.") and not load_lp:
            report.reinitialised[key] = "maps into BLIP-2's own LLM (load_language_projection=False)"
        elif value is None:
            if ".crossattention." in key:
                report.reinitialised[key] = "the checkpoint layer has no cross-attention (cross_attention_frequency)"
            elif key == "query_tokens":
                report.reinitialised[key] = "not in the checkpoint (a bare Q-Former holds no query tokens)"
            else:
                errors.append(f"{key}: missing from the checkpoint")
        elif value.shape == target.shape:
            state[key] = value.to(target.dtype)
            report.loaded.append(key)
        elif _KV.search(key) and value.shape[0] == target.shape[0]:
            report.reinitialised[key] = f"vision width {value.shape[1]} in the checkpoint, {target.shape[1]} here"
        elif key == "query_tokens" and value.shape[2] == target.shape[2]:
            report.reinitialised[key] = f"{value.shape[1]} queries in the checkpoint, {target.shape[1]} here"
        elif key.startswith("language_projection."):
            report.reinitialised[key] = f"LLM width: checkpoint {tuple(value.shape)}, here {tuple(target.shape)}"
        else:
            errors.append(f"{key}: checkpoint {tuple(value.shape)} vs projector {tuple(target.shape)}")
    # A re-initialised key/value layer is re-initialised whole: its bias alone would fit, but belongs
    # to the checkpoint's weight.
    for key, why in list(report.reinitialised.items()):
        bias = key[: -len("weight")] + "bias"
        if _KV.search(key) and key.endswith(".weight") and bias in state:
            del state[bias]
            report.loaded.remove(bias)
            report.reinitialised[bias] = why
    if errors:
        raise ShapeError(
            f"BLIP-2 checkpoint '{report.checkpoint}' does not fit the Q-Former projector "
            f"(hidden_size={projector.config.hidden_size}, heads={projector.config.num_attention_heads}): "
            + "; ".join(errors[:6]) + (f"; ... {len(errors) - 6} more" if len(errors) > 6 else "")
        )
    return state
