"""Batched greedy generation and continuation log-likelihoods for one model and conversation template.

Shared by the benchmark runner (`deco eval`) and the lmms-eval adapter, so both ask the model the same
way: the template's inference prompt (`deco.data.templates.render_prompt`), left-padded batches, HF
generation with a KV cache over the merged embeddings, and replies cut at the template's end of turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from deco.data.templates import Template, get_template, render_prompt
from deco.errors import DataError
from deco.model.multimodal import DecoModel


@dataclass(frozen=True)
class Reply:
    """One generated answer: the text (stripped, cut at the first stop string) and new-token count."""

    text: str
    tokens: int


def pick_device(device: str | None) -> torch.device:
    """`None`/"auto": the first CUDA GPU if there is one, else the CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Generator:
    """Asks a DecoModel questions in batches: prompts + images -> replies, greedy unless told otherwise."""

    def __init__(self, model: DecoModel, template: str | Template, device: str | None = None) -> None:
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.template = get_template(template)
        self.processor = model.processor()
        self.tokenizer = model.tokenizer
        self.eos_ids = self._eos_ids()
        # An end of turn that is plain text (the plain template's newline) is cut from the decoded reply.
        self.stop_texts = [] if self.template.end_of_turn_is_token else [self.template.end_of_turn]

    def _eos_ids(self) -> list[int]:
        ids = [self.tokenizer.eos_token_id] if self.tokenizer.eos_token_id is not None else []
        eot = self.template.end_of_turn
        if self.template.end_of_turn_is_token and eot in self.tokenizer.get_vocab():
            ids.append(self.tokenizer.convert_tokens_to_ids(eot))  # e.g. <|im_end|> under a llama tokenizer
        return list(dict.fromkeys(ids))

    def prompt(self, question: str, num_images: int) -> str:
        """The template's inference prompt for one question with `num_images` images (`<image>\\n` first)."""
        return render_prompt(self.template, question, num_images)

    def _inputs(self, prompts: Sequence[str], images: Sequence[Sequence[Image.Image]]) -> dict[str, Any]:
        flat = [im for per_prompt in images for im in per_prompt]  # placeholder blocks read row by row
        batch = self.processor(list(prompts), flat)
        # AnyRes models also get `image_layouts`, a list that stays on the host.
        return {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[str],
        images: Sequence[Sequence[Image.Image]],
        max_new_tokens: int,
        stop: Sequence[str] = (),
        **generate_kwargs: Any,
    ) -> list[Reply]:
        """Greedy (unless `do_sample` is passed) replies for a batch; `images[i]` are prompt i's images."""
        if len(prompts) != len(images):
            raise DataError(f"{len(prompts)} prompts but {len(images)} image lists")
        stops = [s for s in (*self.stop_texts, *stop) if s]
        kwargs: dict[str, Any] = {"do_sample": False, "num_beams": 1, **generate_kwargs}
        kwargs.setdefault("eos_token_id", self.eos_ids)
        if stops:
            kwargs.update(stop_strings=stops, tokenizer=self.tokenizer)  # stop early; the cut below is exact
        new_ids = self.model.generate(**self._inputs(prompts, images), max_new_tokens=max_new_tokens, **kwargs)
        return [self.decode(row, stops) for row in new_ids.tolist()]

    def decode(self, row: list[int], stops: Sequence[str] = ()) -> Reply:
        """New token ids -> reply: decoded up to the first end-of-sequence id, cut at the first stop string."""
        end = next((i + 1 for i, t in enumerate(row) if t in self.eos_ids), len(row))
        text = self.tokenizer.decode(row[:end], skip_special_tokens=True)
        for s in stops:
            text = text.split(s, 1)[0]
        return Reply(text=text.strip(), tokens=end)

    @torch.inference_mode()
    def loglikelihood(
        self, prompt: str, continuation: str, images: Sequence[Image.Image]
    ) -> tuple[float, bool]:
        """Sum of log-probs of `continuation` after `prompt` (+ images), and whether greedy decoding gives it."""
        ctx = self._token_ids(prompt)
        full = self._token_ids(prompt + continuation)
        if full[: len(ctx)] != ctx:
            # The tokenizer merged across the boundary: score the continuation's own tokens instead.
            full = ctx + self._token_ids(continuation, special=False)
        cont = full[len(ctx):]
        if not cont:
            raise DataError(f"continuation {continuation!r} gives no tokens after the prompt")
        # The processor's own image path, so AnyRes models get their tiles, layouts and layout tokens.
        pixels, extra = self.processor.visual_inputs(list(images))
        blocks = extra.pop("blocks", None)
        ids = torch.tensor([self.processor.expand_image_tokens(full, blocks)], device=self.device)
        if pixels is not None:
            pixels = pixels.to(self.device)
        logits = self.model(
            input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels, **extra
        ).logits  # [1, T, V]
        n = len(cont)
        # Logits at position t predict token t + 1: the continuation's n tokens are predicted by the n
        # positions before the last.
        logprobs = torch.log_softmax(logits[0, -n - 1 : -1].float(), dim=-1)  # [n, V]
        target = ids[0, -n:]
        total = logprobs.gather(1, target[:, None]).sum().item()
        greedy = bool((logprobs.argmax(-1) == target).all())
        return total, greedy

    def _token_ids(self, text: str, special: bool = True) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special).input_ids)
