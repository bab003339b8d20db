"""Collapse probe: the projector's outputs on a fixed batch of training images, measured at every
checkpoint of a run.

A projector whose outputs hardly change from one image to the next has collapsed: the LM then learns
to answer from the text alone and the run still "converges". The DeCo article reports duplicate
Q-Former queries across images; here the same-token-across-images cosine (token i of image a against
token i of image b, averaged; deco.analysis.metrics.redundancy) is logged to the run directory's
probe.jsonl (one record per checkpoint) so it shows in any run, and a value above COLLAPSE_COS is flagged
in the log.
"""

from __future__ import annotations

from typing import Any

import torch

from deco.analysis.metrics import redundancy

# Above this mean same-index cosine the outputs are treated as image-independent. Healthy projectors in
# the demo sit far below (DeCo ~0.3-0.7); the collapsed Q-Former of issue 13 measured 1.000.
COLLAPSE_COS = 0.99
PROBE_FILE = "probe.jsonl"


def probe_images(dataset: Any, count: int = 8) -> torch.Tensor | None:
    """Pixel values of the first `count` single-image training samples (fixed for the whole run), or
    None when the data has too few images (text-only data, or multi-image/AnyRes samples only)."""
    pixels = []
    for index in range(min(len(dataset), 32 * count)):  # bounded: text-only data is not scanned to the end
        if len(pixels) == count:
            break
        sample = dataset[index]
        values = sample.get("pixel_values")
        if values is None or values.dim() != 4 or values.shape[0] != 1 or sample.get("image_layouts"):
            continue
        pixels.append(values[0])
    return torch.stack(pixels) if len(pixels) >= 2 else None


@torch.no_grad()
def measure(model: Any, pixel_values: torch.Tensor) -> dict[str, Any]:
    """Redundancy of the projector outputs on the probe images, and whether they look collapsed."""
    training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        tokens = model.encode_images(pixel_values.to(device))  # [I, M, Dl]
    finally:
        model.train(training)
    stats = redundancy(tokens.float())
    same = stats["same_index_cos"]
    return {"same_index_cos": same, "within_mean_cos": stats["within_mean_cos"],
            "across_mean_cos": stats["across_mean_cos"], "images": int(tokens.shape[0]),
            "collapsed": bool(same is not None and same > COLLAPSE_COS)}


def collapse_warning(step: int, probe: dict[str, Any]) -> str | None:
    """The log line for a collapsed probe, else None."""
    if not probe.get("collapsed"):
        return None
    return (f"step {step}: projector outputs are nearly the same for every image (same-token cosine "
            f"{probe['same_index_cos']:.4f} > {COLLAPSE_COS} on {probe['images']} probe images): collapsed?")
