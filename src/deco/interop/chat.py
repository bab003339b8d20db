"""Talking to a model about an image: one-shot answers and an interactive terminal loop.

Prompts come from the model's own template (`deco.data.render_prompt`, or the model's Jinja chat
template for imported models that use another format); generation is HF's (KV cache), greedy unless a
temperature is given. Earlier turns are kept as history, as in training's multi-turn format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import TextStreamer

from deco.data.images import load_image
from deco.data.templates import get_template, render_prompt
from deco.errors import ConfigError, DecoError
from deco.interop.resolve import PromptStyle
from deco.model import DecoModel
from deco.model.tokens import IMAGE_TOKEN


@dataclass
class GenerationOptions:
    """Decoding settings; temperature 0 means greedy."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    def validate(self) -> None:
        """Raise ConfigError for impossible values, naming the option."""
        if self.max_new_tokens <= 0:
            raise ConfigError(f"--max-new-tokens must be positive, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"--temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"--top-p must be in (0, 1], got {self.top_p}")

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for HF generate."""
        if self.temperature == 0:
            return {"max_new_tokens": self.max_new_tokens, "do_sample": False}
        return {"max_new_tokens": self.max_new_tokens, "do_sample": True, "temperature": self.temperature,
                "top_p": self.top_p}


class _CallbackStreamer(TextStreamer):
    """HF's TextStreamer, writing through a callback instead of print (so tests and GUIs can use it)."""

    def __init__(self, tokenizer: Any, write: Callable[[str], None]) -> None:
        super().__init__(tokenizer, skip_prompt=False, skip_special_tokens=True)
        self._write = write

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        self._write(text)


class ChatSession:
    """A conversation about (at most) one image with a model, keeping the earlier turns."""

    def __init__(
        self,
        model: DecoModel,
        style: PromptStyle,
        options: GenerationOptions | None = None,
        system: str | None = None,
    ) -> None:
        self.model = model.eval()
        self.style = style
        self.options = options or GenerationOptions()
        self.options.validate()
        self.system = system
        self.processor = model.processor()
        self.image: Any = None
        self.history: list[tuple[str, str]] = []
        self.single_turn = style.template is not None and get_template(style.template).max_rounds == 1

    def set_image(self, path: str | Path | None) -> None:
        """Load an image (the project's loader) and start a new conversation about it."""
        self.image = None if path is None else load_image(path)
        self.reset()

    def reset(self) -> None:
        """Forget earlier turns."""
        self.history = []

    def prompt(self, question: str) -> str:
        """The full prompt text for the next question (history included)."""
        num_images = 1 if self.image is not None else 0
        history = [] if self.single_turn else self.history
        if self.style.template is not None:
            # With history, the image marker already sits in its first question (see `ask`).
            return render_prompt(self.style.template, question, num_images, history, self.system)
        return self._jinja_prompt(question, history, num_images)

    def _jinja_prompt(self, question: str, history: list[tuple[str, str]], num_images: int) -> str:
        messages: list[dict[str, Any]] = [{"role": "system", "content": self.system}] if self.system else []
        for i, (q, a) in enumerate([*history, (question, None)]):
            parts = [{"type": "image"}] * (num_images if i == 0 else 0) + [{"type": "text", "text": q}]
            messages.append({"role": "user", "content": parts})
            if a is not None:
                messages.append({"role": "assistant", "content": [{"type": "text", "text": a}]})
        tokenizer = self.model.tokenizer
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                             chat_template=self.style.jinja)

    def _stop(self) -> tuple[list[int], str | None]:
        """eos ids for generate, and the end-of-turn text to cut the answer at (when it is no token)."""
        tokenizer = self.model.tokenizer
        eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        end = get_template(self.style.template).end_of_turn if self.style.template else ""
        if end and end in tokenizer.get_vocab():
            eos.append(tokenizer.convert_tokens_to_ids(end))
            return sorted(set(eos)), None
        return eos, end or None

    @torch.no_grad()
    def ask(self, question: str, stream: Callable[[str], None] | None = None) -> str:
        """Answer one question (streamed through `stream` if given) and add the turn to the history."""
        if IMAGE_TOKEN in question:
            raise ConfigError(f"type the question without {IMAGE_TOKEN}: the image is added by the template")
        first = not self.history or self.single_turn
        text = self.prompt(question)
        batch = self.processor(text, [self.image] if self.image is not None else None)
        device = next(self.model.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        if self.options.seed is not None:
            torch.manual_seed(self.options.seed)
        eos, cut = self._stop()
        kwargs = self.options.generate_kwargs()
        if cut:
            kwargs.update(stop_strings=[cut], tokenizer=self.model.tokenizer)
        streamer = _CallbackStreamer(self.model.tokenizer, stream) if stream is not None else None
        new_ids = self.model.generate(**batch, eos_token_id=eos or None, streamer=streamer, **kwargs)
        answer = self.model.tokenizer.decode(new_ids[0], skip_special_tokens=True)
        if cut and cut in answer:
            answer = answer[: answer.index(cut)]
        answer = answer.strip()
        # History keeps the image marker in the first question, where render_prompt expects it.
        asked = (IMAGE_TOKEN + "\n" + question) if first and self.image is not None else question
        if not self.single_turn:
            self.history.append((asked, answer))
        return answer


HELP = "commands: /image PATH (new image, new conversation), /reset, /quit (or Ctrl-D)"


def run_interactive(
    session: ChatSession,
    read: Callable[[str], str] = input,
    write: Callable[[str], None] = lambda s: print(s, end="", flush=True),
) -> None:
    """The terminal loop: read a line, answer it (streamed), until /quit or end of input."""
    write(f"{HELP}\n")
    while True:
        try:
            line = read("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            write("\n")
            return
        if not line:
            continue
        if line in ("/quit", "/exit"):
            return
        if line == "/reset":
            session.reset()
            write("(conversation cleared)\n")
            continue
        if line.startswith("/image"):
            path = line[len("/image"):].strip()
            try:
                session.set_image(path or None)
                write(f"(image: {path or 'none'}; conversation cleared)\n")
            except DecoError as exc:  # a missing or broken image: report it and keep the session
                write(f"error: {exc}\n")
            continue
        if line.startswith("/"):
            write(f"unknown command {line.split()[0]}; {HELP}\n")
            continue
        write("model> ")
        session.ask(line, stream=write)
        write("\n")
