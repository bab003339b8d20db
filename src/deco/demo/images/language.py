"""Pretrains the demo's small LM on the scenes' language, text only, before any image is seen.

LLaVA-1.5 starts from a pretrained Vicuna: the LM already reads questions and knows how answers look,
and the projector only has to bring the picture into a form the LM can use. The demo's LM is trained
the same way in miniature: conversations in the `vicuna_v1` template where the scene's caption stands
where the image will later be ("small red circle at top-left . ... \\n cell of red" -> "top-left"), so
the LM learns the question families as reading comprehension over a description. The report measures
that skill on held-out scenes: an upper bound for what perfect perception would give.

The LM is built with the demo's LM settings, trained with AdamW (warm-up, cosine), saved with
`save_pretrained` and named by path in every run config (`llm.pretrained`), like a real checkpoint.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from deco.data.encoding import IGNORE_INDEX, ConversationEncoder
from deco.data.templates import GPT, HUMAN, get_template, render_prompt
from deco.demo.core.settings import LMSettings, SceneSettings
from deco.demo.images.questions import DESCRIBE, caption, conversation_questions
from deco.demo.images.scenes import Scene

TEMPLATE = "vicuna_v1"


def lm_config(settings: LMSettings, vocab_size: int) -> LlamaConfig:
    """The demo LM's architecture (random weights until pretrained)."""
    return LlamaConfig(hidden_size=settings.hidden_size, intermediate_size=settings.intermediate_size,
                       num_hidden_layers=settings.num_layers, num_attention_heads=settings.num_heads,
                       num_key_value_heads=settings.num_heads, vocab_size=vocab_size,
                       max_position_embeddings=2048, tie_word_embeddings=False)


def text_turns(scene: Scene, rng: np.random.Generator, scenes: SceneSettings) -> list[tuple[str, str]]:
    """One text conversation about a scene: its caption, then question turns of the demo's families (the
    caption stands where the image goes in the multimodal data), sometimes closed by a 'describe' turn."""
    pairs = conversation_questions(scene, rng, scenes.questions_per_image, scenes.families)
    turns: list[tuple[str, str]] = []
    for _family, (question, answer) in pairs:
        turns += [(HUMAN, question), (GPT, answer)]
    if rng.random() < scenes.caption_fraction:
        turns += [(HUMAN, DESCRIBE), (GPT, caption(scene))]
    turns[0] = (HUMAN, f"{caption(scene)}\n{turns[0][1]}")
    return turns


def encode_corpus(
    scenes: Sequence[Scene], tokenizer: PreTrainedTokenizerBase, settings: LMSettings, scene_settings: SceneSettings,
    seed: int,
) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) of `settings.conversations_per_scene` text conversations per scene; loss on the
    answers only, as in stage 2."""
    template = get_template(TEMPLATE)
    encoder = ConversationEncoder(tokenizer, template)
    rng = np.random.default_rng([seed, 7])
    batch = [template.segments(text_turns(s, rng, scene_settings))
             for _ in range(settings.conversations_per_scene) for s in scenes]
    out = []
    for enc in encoder.encode_many(batch):
        if isinstance(enc, Exception):
            raise enc
        out.append((enc.input_ids, enc.labels))
    return out


def _batch(corpus: list[tuple[list[int], list[int]]], idx: torch.Tensor, pad_id: int) -> dict[str, torch.Tensor]:
    rows = [corpus[int(i)] for i in idx]
    n = max(len(r[0]) for r in rows)
    ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), n), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    for i, (a, b) in enumerate(rows):
        ids[i, : len(a)], labels[i, : len(b)], mask[i, : len(a)] = torch.tensor(a), torch.tensor(b), 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def pretrain_language_model(
    train_scenes: Sequence[Scene],
    test_scenes: Sequence[Scene],
    tokenizer: PreTrainedTokenizerBase,
    settings: LMSettings,
    scene_settings: SceneSettings,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[LlamaForCausalLM, dict[str, Any]]:
    """Train the LM on text conversations; returns it (eval mode) and a report with held-out accuracy per
    family when the scene is given as text. Single-threaded, like the encoder: the same weights anywhere."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(settings.seed)
        model = LlamaForCausalLM(lm_config(settings, len(tokenizer)))
        start = time.perf_counter()
        corpus = encode_corpus(train_scenes, tokenizer, settings, scene_settings, settings.seed)
        losses = _fit(model, corpus, tokenizer.pad_token_id, settings, progress)
        model.eval()
        report = {
            "steps": settings.pretrain_steps,
            "conversations": len(corpus),
            "seconds": round(time.perf_counter() - start, 1),
            "final_loss": round(float(np.mean(losses[-20:])), 4),
            "held_out_text_accuracy": text_accuracy(model, tokenizer, test_scenes, scene_settings.families,
                                                    settings.seed),
        }
        return model, report
    finally:
        torch.set_num_threads(threads)


def _fit(model: LlamaForCausalLM, corpus: list, pad_id: int, settings: LMSettings,
         progress: Callable[[int, int], None] | None) -> list[float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.pretrain_lr, weight_decay=0.01)
    steps, warmup = settings.pretrain_steps, max(1, settings.pretrain_steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    generator = torch.Generator().manual_seed(settings.seed)
    model.train()
    losses = []
    for step in range(steps):
        idx = torch.randint(len(corpus), (settings.pretrain_batch_size,), generator=generator)
        loss = model(**_batch(corpus, idx, pad_id)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, steps)
    return losses


@torch.no_grad()
def text_accuracy(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, scenes: Sequence[Scene],
                  families: Sequence[str], seed: int) -> dict[str, float]:
    """Exact-match accuracy per family of greedy answers (as the demo scores them), the scene given as its
    caption."""
    from deco.demo.core.evaluate import normalize
    from deco.demo.images.questions import ask

    rng = np.random.default_rng([seed, 8])
    hits: dict[str, list[float]] = defaultdict(list)
    prompts, answers, asked = [], [], []
    for scene in scenes:
        for family in families:
            qa = ask(family, scene, rng)
            if qa is not None:
                prompts.append(render_prompt(TEMPLATE, f"{caption(scene)}\n{qa[0]}"))
                answers.append(qa[1])
                asked.append(family)
    tokenizer.padding_side = "left"
    for start in range(0, len(prompts), 64):
        enc = tokenizer(prompts[start : start + 64], return_tensors="pt", padding=True)
        out = model.generate(**enc, max_new_tokens=6, do_sample=False, num_beams=1,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        guesses = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        for guess, answer, family in zip(guesses, answers[start : start + 64], asked[start : start + 64],
                                         strict=True):
            hits[family].append(float(normalize(guess) == normalize(answer)))
    return {f: round(sum(v) / len(v), 4) for f, v in hits.items()}


def save_language_model(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, report: dict[str, Any],
                        directory: str | Path) -> None:
    """`save_pretrained` (safetensors) with its tokenizer and pretraining report beside it."""
    import json

    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    Path(directory, "pretrain.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
