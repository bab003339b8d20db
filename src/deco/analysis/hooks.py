"""Capturing attention maps: forward hooks on projector probes, and eager attention in the LLM.

Projectors route every attention map through an `AttentionProbe` (deco.projectors.attention) and
deformable layers also route their sampling locations through a `SamplingLocations` module. A forward
hook records each map tensor as it is produced, in forward order; the caller later asks autograd for
the gradient of its explained output with respect to exactly these tensors (`torch.autograd.grad`,
which leaves parameters' `.grad` untouched). HF LLMs return their maps with `output_attentions=True`,
which needs the eager implementation: `eager_attention` switches to it and restores the configured one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from deco.errors import ConfigError
from deco.projectors.attention import AttentionProbe
from deco.projectors.deformable import SamplingLocations


@dataclass
class ProbeRecord:
    """One attention map seen in a forward pass: `probs` [B, heads, Q, K] and where it came from."""

    name: str  # the probe's module path inside the captured module, for error messages
    kind: str  # "self" or "cross"
    owner: nn.Module  # the module that holds the probe (reads layout: deformable, regions, ...)
    probs: torch.Tensor
    locations: torch.Tensor | None = None  # deformable sampling locations [B, heads, Q, L*P, 2]


@dataclass
class ProbeCapture:
    """Records filled by `capture_probes`, in the order the maps were computed."""

    records: list[ProbeRecord] = field(default_factory=list)


def probe_modules(module: nn.Module) -> list[tuple[str, AttentionProbe]]:
    """Every AttentionProbe inside `module` with its dotted name."""
    return [(n, m) for n, m in module.named_modules() if isinstance(m, AttentionProbe)]


def _owners(module: nn.Module) -> dict[int, tuple[str, nn.Module]]:
    """id(child) -> (child's dotted name, its parent module), for probes and sampling-location modules."""
    out: dict[int, tuple[str, nn.Module]] = {}
    for parent_name, parent in module.named_modules():
        for child_name, child in parent.named_children():
            if isinstance(child, (AttentionProbe, SamplingLocations)):
                full = f"{parent_name}.{child_name}" if parent_name else child_name
                out[id(child)] = (full, parent)
    return out


@contextlib.contextmanager
def capture_probes(module: nn.Module) -> Iterator[ProbeCapture]:
    """Record every probe's attention map (and deformable sampling locations) while the block runs."""
    capture = ProbeCapture()
    owners = _owners(module)
    handles = []

    def on_probe(probe: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        name, owner = owners[id(probe)]
        capture.records.append(ProbeRecord(name, probe.kind, owner, output))

    def on_locations(loc_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        name, owner = owners[id(loc_module)]
        # The deformable layer computes its weights (probe) before its locations: pair with that record.
        for record in reversed(capture.records):
            if record.owner is owner:
                record.locations = output
                return
        raise ConfigError(f"sampling locations '{name}' arrived before any attention map of the same layer")

    for _, child in module.named_modules():
        if isinstance(child, AttentionProbe):
            handles.append(child.register_forward_hook(on_probe))
        elif isinstance(child, SamplingLocations):
            handles.append(child.register_forward_hook(on_locations))
    try:
        yield capture
    finally:
        for handle in handles:
            handle.remove()


def gradients_of(target: torch.Tensor, records: list[ProbeRecord]) -> list[torch.Tensor]:
    """d target / d map for every record; a map the target does not depend on is an error naming it."""
    if not records:
        return []
    for record in records:
        if not record.probs.requires_grad:
            raise ConfigError(
                f"attention map '{record.name}' received no gradient: it is detached from the computation "
                "(computed under torch.no_grad or from detached inputs), so it cannot be weighted"
            )
    grads = torch.autograd.grad(target, [r.probs for r in records], allow_unused=True, retain_graph=False)
    out = []
    for record, grad in zip(records, grads, strict=True):
        if grad is None:
            raise ConfigError(
                f"attention map '{record.name}' received no gradient: the explained output does not "
                "depend on it (is the module run under torch.no_grad, or are its inputs detached?)"
            )
        out.append(grad)
    return out


@contextlib.contextmanager
def eager_attention(llm: nn.Module) -> Iterator[None]:
    """Run an HF model with eager attention (the only one that returns weights); restore afterwards."""
    config = getattr(llm, "config", None)
    before = getattr(config, "_attn_implementation", None)
    if config is None or before is None:
        raise ConfigError(
            f"LLM {type(llm).__name__} has no HF config with an attention implementation; "
            "its attention maps cannot be captured"
        )
    if before != "eager":
        try:
            llm.set_attn_implementation("eager")
        except Exception as exc:  # HF raises ValueError/ImportError variants per model
            raise ConfigError(
                f"cannot switch LLM {type(llm).__name__} from '{before}' to eager attention ({exc}); "
                "only eager attention returns the attention maps Text-to-Query needs"
            ) from None
    try:
        yield
    finally:
        if config._attn_implementation != before:
            llm.set_attn_implementation(before)


def llm_attention_module_names(llm: nn.Module) -> list[str]:
    """Dotted names of the LLM's self-attention modules (for error messages), in layer order."""
    return [n for n, _ in llm.named_modules() if n.endswith("self_attn")]
