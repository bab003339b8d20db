"""Conversation templates: how (human, gpt) turns become one text, and which parts of it carry loss.

A template renders a conversation as a list of `Segment`s, each either trainable (an assistant answer
and its end-of-turn marker) or not (system prompt, user turns, role tags). `deco.data.encoding` turns
the segments into token ids and labels. The same pieces build the inference prompt (`render_prompt`),
so what a model sees at evaluation is exactly the prefix it was trained on.

Formats (LLaVA's `conversation.py` for `plain` and `vicuna_v1`; Qwen's chat format for `chatml`):

    plain      <image>CAPTION\n                                  loss on "CAPTION\n"
    vicuna_v1  SYSTEM USER: Q1 ASSISTANT: A1</s>USER: Q2 ASSISTANT: A2</s>
                                                                 loss on " A1</s>", " A2</s>"
    chatml     <|im_start|>system\nSYSTEM<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n
               <|im_start|>assistant\nA1<|im_end|>\n ...           loss on "A1<|im_end|>", ...
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from deco.errors import ConfigError, DataError
from deco.model.tokens import IMAGE_TOKEN

HUMAN, GPT = "human", "gpt"
Turn = tuple[str, str]  # (role, text), role is HUMAN or GPT


@dataclass(frozen=True)
class Segment:
    """A piece of rendered text; `trainable` pieces carry loss, the others are labelled -100."""

    text: str
    trainable: bool


class Template:
    """Base class: a template is its system prompt and the text around each user turn and answer."""

    name: ClassVar[str]
    default_system: ClassVar[str] = ""
    end_of_turn: ClassVar[str] = ""  # the marker after each answer; generation stops on it
    end_of_turn_is_token: ClassVar[bool] = True  # should the tokenizer have it as one special token?
    max_rounds: ClassVar[int | None] = None

    def system_prefix(self, system: str) -> str:
        """Text before the first user turn."""
        return ""

    def user_part(self, question: str) -> str:
        """One user turn up to and including the assistant role tag (no loss)."""
        raise NotImplementedError

    def answer_part(self, answer: str) -> str:
        """One answer with its end-of-turn marker (loss)."""
        raise NotImplementedError

    def after_answer(self) -> str:
        """Text after each answer's end-of-turn marker (no loss)."""
        return ""

    def segments(self, turns: Sequence[Turn], system: str | None = None) -> list[Segment]:
        """Render a whole conversation (human first, alternating, ending with gpt) as segments."""
        rounds = pair_rounds(turns, self.max_rounds, self.name)
        images = sum(text.count(IMAGE_TOKEN) for _, text in turns)
        pending = self.system_prefix(self.default_system if system is None else system)
        out: list[Segment] = []
        for question, answer in rounds:
            pending += self.user_part(place_image_marker(question, images))
            out.append(Segment(pending, False))
            out.append(Segment(self.answer_part(answer), True))
            pending = self.after_answer()
        if pending:
            out.append(Segment(pending, False))
        return [s for s in out if s.text]

    def prompt(
        self, question: str, history: Sequence[tuple[str, str]] = (), system: str | None = None
    ) -> str:
        """The inference prompt: earlier rounds in full, then `question` up to the assistant tag."""
        if self.max_rounds is not None and len(history) + 1 > self.max_rounds:
            raise ConfigError(f"template '{self.name}' has no multi-turn format; pass no history")
        count = question.count(IMAGE_TOKEN) + sum(q.count(IMAGE_TOKEN) for q, _ in history)
        text = self.system_prefix(self.default_system if system is None else system)
        for q, a in history:
            text += self.user_part(place_image_marker(q, count)) + self.answer_part(a) + self.after_answer()
        return text + self.user_part(place_image_marker(question, count))


def place_image_marker(text: str, total_markers: int) -> str:
    """LLaVA puts a single image first: `<image>\\n` + the rest of the turn, stripped.

    Only for conversations with exactly one marker; with several images the markers stay where the
    data put them, since their order is what pairs them with the images.
    """
    if total_markers != 1 or IMAGE_TOKEN not in text:
        return text
    return IMAGE_TOKEN + "\n" + text.replace(IMAGE_TOKEN, "").strip()


def pair_rounds(turns: Sequence[Turn], max_rounds: int | None, template: str) -> list[tuple[str, str]]:
    """Check the turns alternate human/gpt (human first, gpt last) and pair them into rounds."""
    if not turns:
        raise DataError("conversation has no turns")
    for i, (role, _) in enumerate(turns):
        expected = HUMAN if i % 2 == 0 else GPT
        if role != expected:
            raise DataError(
                f"turn {i} is from '{role}' but '{expected}' was expected (turns must alternate, human first)"
            )
    if len(turns) % 2:
        raise DataError("conversation ends with a human turn that has no gpt answer")
    rounds = [(turns[i][1], turns[i + 1][1]) for i in range(0, len(turns), 2)]
    if max_rounds is not None and len(rounds) > max_rounds:
        raise DataError(f"template '{template}' takes {max_rounds} human/gpt pair(s), got {len(rounds)}")
    return rounds


class PlainTemplate(Template):
    """Stage 1 (LLaVA `preprocess_plain`): the human turn is reduced to its `<image>` marker(s)."""

    name = "plain"
    end_of_turn = "\n"
    end_of_turn_is_token = False
    max_rounds = 1

    def user_part(self, question: str) -> str:
        return IMAGE_TOKEN * question.count(IMAGE_TOKEN)

    def answer_part(self, answer: str) -> str:
        return answer + "\n"


class VicunaV1Template(Template):
    """Stage 2 of LLaVA-1.5 (`conv_vicuna_v1`: separators " " and "</s>")."""

    name = "vicuna_v1"
    # LLaVA-1.5 trains with `--version v1`, which is conv_vicuna_v1 ("curious user"); the
    # "curious human" wording belongs to conv_llava_v1, which LLaVA-1.5 does not use.
    default_system = (
        "A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions."
    )
    end_of_turn = "</s>"

    def system_prefix(self, system: str) -> str:
        return system + " " if system else ""

    def user_part(self, question: str) -> str:
        return f"USER: {question} ASSISTANT:"

    def answer_part(self, answer: str) -> str:
        # The space after "ASSISTANT:" belongs to the answer: the prompt ends at the colon and the
        # model generates " answer</s>", as in LLaVA's evaluation.
        return f" {answer}</s>"


class ChatMLTemplate(Template):
    """Qwen-style ChatML; the newline after each `<|im_end|>` carries no loss."""

    name = "chatml"
    default_system = "You are a helpful assistant."
    end_of_turn = "<|im_end|>"

    def system_prefix(self, system: str) -> str:
        return f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""

    def user_part(self, question: str) -> str:
        return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"

    def answer_part(self, answer: str) -> str:
        return f"{answer}<|im_end|>"

    def after_answer(self) -> str:
        return "\n"


TEMPLATES: dict[str, Template] = {t.name: t for t in (PlainTemplate(), VicunaV1Template(), ChatMLTemplate())}


def get_template(name: str | Template) -> Template:
    """Look a template up by its exact name (a Template instance is passed through)."""
    if isinstance(name, Template):
        return name
    if name not in TEMPLATES:
        raise ConfigError(f"unknown conversation template '{name}'; valid: {', '.join(sorted(TEMPLATES))}")
    return TEMPLATES[name]


def render_prompt(
    template: str | Template,
    question: str,
    num_images: int = 0,
    history: Sequence[tuple[str, str]] = (),
    system: str | None = None,
) -> str:
    """Inference prompt ending with the assistant role tag; adds `<image>\\n` markers if the question lacks them."""
    tmpl = get_template(template)
    have = question.count(IMAGE_TOKEN) + sum(q.count(IMAGE_TOKEN) for q, _ in history)
    if have == 0 and num_images > 0:
        question = (IMAGE_TOKEN + "\n") * num_images + question
    elif have != num_images:
        raise DataError(f"the prompt has {have} {IMAGE_TOKEN} marker(s) but num_images={num_images}")
    return tmpl.prompt(question, history, system)
