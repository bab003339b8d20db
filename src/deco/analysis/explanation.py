"""One explained answer: Query-to-Patch, Text-to-Query and their composition Text-to-Patch.

Text-to-Patch is T2Q (rows normalised over the M visual tokens) @ Q2P (rows normalised over the N
patches), so each answer token's map is a distribution over patches. Answer tokens are grouped into
words (a new word starts at a token whose text begins with whitespace) and a word's map is the mean
of its tokens' maps; special tokens (end of sequence) are left out of the words.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from deco.analysis.query_patch import QueryPatchMap, query_to_patch
from deco.analysis.text_query import (
    DEFAULT_TEMPLATE,
    TextQueryMap,
    answer_text,
    build_prompt,
    generate_answer,
    text_to_query,
)
from deco.errors import DataError
from deco.model.multimodal import DecoModel

ImageInput = str | Path | Image.Image


@dataclass
class Word:
    """An answer word: its text and the indices of its tokens in the answer."""

    text: str
    tokens: list[int]


@dataclass
class Explanation:
    """Everything `deco analyze` reports for one (image, question, answer)."""

    question: str
    prompt: str
    answer: str
    q2p: QueryPatchMap  # maps [1, M, N]
    t2q: TextQueryMap  # maps [J, M]
    t2p: torch.Tensor  # [J, N]
    words: list[Word]
    word_t2p: torch.Tensor  # [W, N]
    image: np.ndarray  # [S, S, 3] in [0, 1]: the image as the model saw it
    timings: dict[str, float] = field(default_factory=dict)


def load_images(images: ImageInput | list[ImageInput]) -> list[Image.Image]:
    """PIL images from paths (the project's loader, with its clear errors) or PIL images."""
    from deco.data.images import load_image

    items = images if isinstance(images, list) else [images]
    return [im.convert("RGB") if isinstance(im, Image.Image) else load_image(im) for im in items]


def pixel_values(model: DecoModel, images: list[Image.Image]) -> torch.Tensor:
    """[I, 3, S, S] in the model's preprocessing."""
    transform = model.processor().transform
    return torch.stack([transform(im) for im in images])


def display_image(model: DecoModel, pixels: torch.Tensor) -> np.ndarray:
    """Undo the normalisation of one [3, S, S] tensor: what the model saw, as [S, S, 3] in [0, 1]."""
    transform = model.processor().transform
    mean = torch.tensor(transform.mean).view(3, 1, 1)
    std = torch.tensor(transform.std).view(3, 1, 1)
    return (pixels.cpu().float() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()


def model_query_to_patch(
    model: DecoModel, pixels: torch.Tensor, route: str = "auto", chunk_size: int = 16
) -> QueryPatchMap:
    """Query-to-Patch maps [I, M, N] for images [I, 3, S, S] through the model's vision tower.

    With a token reducer before the LLM (deco.reducers), M is the kept tokens: each kept token's weights
    over the projector's tokens (one-hot for a selection, the merge weights otherwise) times the projector's
    maps. An LLM-stage reducer (FastV) leaves the LLM's input, and so these maps, as they are.
    """
    device = next(model.projector.parameters(), pixels).device
    with torch.no_grad():
        # Main layer [I, N, Dv] and, for a multi-level projector, the extra layers it reads.
        features, multi_level = model.vision_features(pixels.to(device))
    q2p = query_to_patch(model.projector, features, model.vision_tower.grid, route, chunk_size, multi_level)
    reducer = getattr(model, "reducer", None)
    if reducer is None or reducer.stage == "llm":
        return q2p
    with torch.no_grad():
        model.encode_images(pixels.to(device))  # the reducer records what it kept for these images
    weights = reducer.last.maps(reducer.input_tokens).to(q2p.maps.device, q2p.maps.dtype)  # [I, K, M]
    side = round(reducer.budget ** 0.5)
    out_grid = (side, side) if reducer.name == "pool" else None
    return dataclasses.replace(q2p, maps=weights @ q2p.maps, raw=weights @ q2p.raw.to(weights.dtype),
                               out_grid=out_grid)


def group_words(pieces: list[str], special: list[bool]) -> list[Word]:
    """Group token pieces into words: a piece starting with whitespace opens a new word."""
    words: list[Word] = []
    open_word = False
    pending: list[int] = []  # tokens with no text of their own yet (bytes of an unfinished character)
    for k, (piece, is_special) in enumerate(zip(pieces, special, strict=True)):
        if is_special:
            open_word = False
        elif piece == "":
            pending.append(k)
        elif not piece.strip():
            open_word = False
            pending = []
        elif open_word and not piece[:1].isspace():
            words[-1].text += piece
            words[-1].tokens += pending + [k]
            pending = []
        else:
            words.append(Word(piece.strip(), pending + [k]))
            open_word = True
            pending = []
    return words


def explain(
    model: DecoModel,
    image: ImageInput,
    question: str,
    answer: str | None = None,
    template: str | None = DEFAULT_TEMPLATE,
    max_new_tokens: int = 16,
    route: str = "auto",
    chunk_size: int = 8,
) -> Explanation:
    """Generate (or take) the answer and compute the three maps for it."""
    start = time.perf_counter()
    prompt = build_prompt(question, template)
    (pil,) = load_images(image)
    batch = model.processor()(prompt, [pil])
    device = next(model.llm.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    pixels = batch["pixel_values"]  # [1, 3, S, S]
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    if answer is None:
        answer_ids = generate_answer(model, batch, max_new_tokens)
        timings["generate_s"] = time.perf_counter() - t0
    else:
        if not answer.strip():
            raise DataError("the given answer is empty: omit it to let the model generate one")
        answer_ids = model.tokenizer(answer_text(answer, template), add_special_tokens=False).input_ids
    input_ids = torch.cat([batch["input_ids"], torch.tensor([answer_ids], device=device)], dim=1)

    t0 = time.perf_counter()
    q2p = model_query_to_patch(model, pixels, route, chunk_size)
    timings["query_to_patch_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    t2q = text_to_query(model, input_ids, batch["pixel_values"], batch["input_ids"].shape[1], chunk_size)
    timings["text_to_query_s"] = time.perf_counter() - t0

    t2p = t2q.maps @ q2p.maps[0].to(t2q.maps.device)  # [J, N]
    special = set(model.tokenizer.all_special_ids)
    words = group_words(t2q.tokens, [i in special for i in t2q.token_ids])
    word_t2p = (torch.stack([t2p[w.tokens].mean(0) for w in words]) if words
                else t2p.new_zeros(0, t2p.shape[1]))
    timings["total_s"] = time.perf_counter() - start
    return Explanation(
        question=question,
        prompt=prompt,
        answer=model.tokenizer.decode(answer_ids, skip_special_tokens=True),
        q2p=q2p,
        t2q=t2q,
        t2p=t2p,
        words=words,
        word_t2p=word_t2p,
        image=display_image(model, pixels[0]),
        timings=timings,
    )
