"""lmms-eval adapter: `python -m lmms_eval --model deco --model_args pretrained=PATH --tasks ...`.

lmms-eval (>= 0.7) finds this model through the `lmms_eval.models` entry point in pyproject.toml, whose
payload is `manifests` below. Model args (comma-separated key=value): `pretrained` (a saved model folder
or a run directory with final/), `template` (default: the run's eval.template, else vicuna_v1),
`max_new_tokens` (128, when a task sets none), and `loglikelihood`:
"loss" (default) returns the continuation's negative log-likelihood, the value lmms-eval's
multiple-choice scoring takes the argmin of (its LLaVA adapters return the loss too); "logprob"
returns the log-likelihood itself, as the base class documents and lm-eval's perplexity expects.
lmms-eval's own `--batch_size N` (default 1; "auto" means 8) and `--device` (default: CUDA if available)
reach the model too.

Install with `pip install -e .[eval]`. Single process only (no multi-GPU sharding of requests).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmms_eval.api.instance import GenerationResult, Instance, TokenCounts
from lmms_eval.api.model import lmms
from PIL import Image

from deco.config import EvalSection
from deco.data.images import load_image, to_rgb
from deco.errors import ConfigError, DataError
from deco.eval.generation import Generator
from deco.eval.runner import resolve_model_dir, run_eval_defaults
from deco.model.builder import load_model

MODEL_NAME = "deco"
_GEN_KEYS = ("max_new_tokens", "temperature", "top_p", "num_beams", "do_sample")


def manifests() -> list[Any]:
    """Entry-point payload: lmms-eval's model manifest for `--model deco`."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id=MODEL_NAME, simple_class_path=f"{__name__}.DecoLMM")]


class DecoLMM(lmms):
    """A deco model inside lmms-eval: batched generation and teacher-forced continuation scores."""

    is_simple = True

    def __init__(
        self,
        pretrained: str,
        template: str | None = None,
        batch_size: int | str = 1,
        max_new_tokens: int | str = 128,
        device: str = "auto",
        loglikelihood: str = "loss",
        max_batch_size: int | None = None,  # lmms-eval passes it for "auto" batch sizes; unused
        **unused: Any,
    ) -> None:
        super().__init__()
        if unused:
            raise ConfigError(f"unknown deco model_args {sorted(unused)}; valid: pretrained, template, "
                              "max_new_tokens, loglikelihood (batch size and device are lmms-eval options)")
        if loglikelihood not in ("loss", "logprob"):
            raise ConfigError(f"model_args loglikelihood must be 'loss' or 'logprob', got {loglikelihood!r}")
        model_dir = resolve_model_dir(pretrained)
        defaults = run_eval_defaults(pretrained) or EvalSection()
        self.generator = Generator(load_model(model_dir), template or defaults.template, device)
        self.batch_size = 8 if str(batch_size).startswith("auto") else int(batch_size)
        self.max_new_tokens = int(max_new_tokens)
        self.sign = -1.0 if loglikelihood == "loss" else 1.0

    def _doc(self, doc_id: int, task: str, split: str) -> Any:
        return self.task_dict[task][split][doc_id]

    def _visuals(self, doc_to_visual: Any, doc: Any) -> list[Image.Image]:
        visuals = doc_to_visual(doc) if callable(doc_to_visual) else doc_to_visual
        out = []
        for v in visuals or []:
            if isinstance(v, Image.Image):
                out.append(to_rgb(v))
            elif isinstance(v, (str, Path)) and Path(v).is_file():
                out.append(load_image(v))
            else:
                raise DataError(f"deco takes images (PIL or image file paths); the task gave {type(v).__name__} {v!r:.80}")
        return out

    def generate_until(self, requests: list[Instance]) -> list[GenerationResult]:
        """Generate for each request (context, gen_kwargs, doc_to_visual, doc_id, task, split), batched.

        Replies come with their generated-token counts, which lmms-eval reports as token usage.
        """
        groups: dict[str, list[int]] = {}
        for i, req in enumerate(requests):  # a batch shares one set of generation settings
            groups.setdefault(json.dumps(req.args[1], sort_keys=True, default=str), []).append(i)
        results: list[GenerationResult] = [GenerationResult(text="")] * len(requests)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                for i, reply in zip(chunk, self._generate_chunk([requests[i] for i in chunk]), strict=True):
                    results[i] = reply
        return results

    def _generate_chunk(self, chunk: Sequence[Instance]) -> list[GenerationResult]:
        settings = dict(chunk[0].args[1] or {})
        until = settings.pop("until", None) or []
        until = [until] if isinstance(until, str) else list(until)
        gen = {k: settings[k] for k in _GEN_KEYS if k in settings and settings[k] is not None}
        max_new = int(gen.pop("max_new_tokens", self.max_new_tokens))
        sample = bool(gen.pop("do_sample", False)) or float(gen.get("temperature", 0) or 0) > 0
        if not sample:  # greedy: drop sampling knobs HF would warn about
            gen.pop("temperature", None)
            gen.pop("top_p", None)
        prompts, images = [], []
        for req in chunk:
            context, _, doc_to_visual, doc_id, task, split = req.args
            visuals = self._visuals(doc_to_visual, self._doc(doc_id, task, split))
            prompts.append(self.generator.prompt(_text(context), len(visuals)))
            images.append(visuals)
        replies = self.generator.generate(prompts, images, max_new, stop=until, do_sample=sample, **gen)
        return [GenerationResult(text=r.text, token_counts=TokenCounts(output_tokens=r.tokens)) for r in replies]

    def loglikelihood(self, requests: list[Instance]) -> list[GenerationResult]:
        """Teacher-forced (score, is_greedy) of each continuation after its context and images.

        The score is the loss or the log-likelihood (model arg `loglikelihood`). Each pair is wrapped in a
        GenerationResult: lmms-eval 0.7.3's `unwrap_generation_output` turns a bare (float, bool) tuple into
        its string, which breaks its own multiple-choice scoring; the wrapper's `.text` reaches the task as is.
        """
        out = []
        for req in requests:
            if len(req.args) == 2:  # (context, continuation) without a document: mutual-information requests
                (context, continuation), visuals = req.args, []
            else:
                context, target, doc_to_visual, doc_id, task, split = req.args
                doc = self._doc(doc_id, task, split)
                continuation = target if isinstance(target, str) else target(doc)
                visuals = self._visuals(doc_to_visual, doc)
            prompt = self.generator.prompt(_text(context), len(visuals))
            logprob, greedy = self.generator.loglikelihood(prompt, str(continuation), visuals)
            out.append(GenerationResult(text=(self.sign * logprob, greedy)))  # type: ignore[arg-type]
        return out

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        """Not supported: deco's adapter answers single-round tasks."""
        raise NotImplementedError("the deco lmms-eval adapter does not implement multi-round generation")


def _text(context: Any) -> str:
    """lmms-eval passes the context as a string (some tasks wrap it in a one-item list)."""
    return str(context[0] if isinstance(context, list) else context)
