"""The demo's word-level tokenizer: every word of the questions, answers, captions and template text.

Built with the `tokenizers` library and wrapped as an HF fast tokenizer (deco.model.tokenizer), then
saved with `save_pretrained`, so the run config names it by path like any real tokenizer and the
real template, label-masking and generation code runs on it.
"""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedTokenizerBase

from deco.data.templates import GPT, HUMAN, get_template
from deco.demo.images.questions import DESCRIBE, vocabulary
from deco.errors import DataError
from deco.model.tokenizer import IMAGE_TOKEN, build_word_tokenizer, load_tokenizer

TEMPLATES = ("plain", "vicuna_v1")
_SPECIALS = ("<s>", "</s>", "<unk>", IMAGE_TOKEN)


def template_words(name: str) -> set[str]:
    """Words a template adds around turns (system prompt, role tags), special tokens excluded."""
    template = get_template(name)
    rounds = 1 if template.max_rounds == 1 else 2
    turns = []
    for i in range(rounds):
        turns += [(HUMAN, (IMAGE_TOKEN + "\n" if i == 0 else "") + "qqq"), (GPT, "aaa")]
    text = "".join(s.text for s in template.segments(turns)) + " " + template.prompt(IMAGE_TOKEN + "\nqqq")
    for special in _SPECIALS:
        text = text.replace(special, " ")
    return set(text.split()) - {"qqq", "aaa"}


def demo_words() -> list[str]:
    """The whole vocabulary: scene words plus template words."""
    words = set(vocabulary()) | set(DESCRIBE.split())
    for name in TEMPLATES:
        words |= template_words(name)
    return sorted(words)


def build_demo_tokenizer(directory: str | Path) -> PreTrainedTokenizerBase:
    """Build the word-level tokenizer, save it to `directory` and return it loaded back from there."""
    tokenizer = build_word_tokenizer(demo_words(), style="llama")
    tokenizer.save_pretrained(str(directory))
    return load_tokenizer(directory)


def check_covered(tokenizer: PreTrainedTokenizerBase, texts: list[str], where: str) -> None:
    """Raise DataError if a text has a word outside the vocabulary (it would silently become <unk>)."""
    vocab = tokenizer.get_vocab()
    for text in texts:
        for special in _SPECIALS:
            text = text.replace(special, " ")
        missing = [w for w in text.split() if w not in vocab]
        if missing:
            raise DataError(f"{where}: word '{missing[0]}' is not in the demo vocabulary (text: {text!r})")
