"""Template segments -> token ids + labels, checked against tokenizing the whole text at once.

LLaVA computes labels by re-tokenizing pieces of the rendered text and counting tokens, with
tokenizer-specific corrections (`- 2`, `legacy`); when the counts drift it masks the whole sample
("WARNING: tokenization mismatch ... (ignored)") and trains on nothing. Here:

1. Each segment is tokenized on its own and the ids concatenated (the tokenizer's own BOS/EOS
   added once, around the whole), so every id carries the label of the segment it came from.
2. The result must equal the ids of the fully rendered text (what inference will tokenize).
3. If it does not (SentencePiece tokenizers add a "▁" to the start of every separately tokenized
   piece), the whole text's ids are labelled by character offsets instead, which is exact as long as
   every boundary between loss and no-loss text falls between two tokens.
4. Otherwise the sample raises `TokenizationMismatch`, which the dataset reports or counts.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from deco.data.templates import Segment, Template
from deco.errors import ConfigError, DataError

IGNORE_INDEX = -100
log = logging.getLogger(__name__)


class TokenizationMismatch(DataError):
    """A loss/no-loss boundary of the template falls inside a token of the whole text."""


@dataclass
class Encoded:
    """Token ids of one conversation and its labels (-100 where there is no loss)."""

    input_ids: list[int]
    labels: list[int]
    text: str


class ConversationEncoder:
    """Encodes template segments with one tokenizer; build once per (tokenizer, template)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, template: Template) -> None:
        self.tokenizer = tokenizer
        self.template = template
        self.prefix, self.suffix = _special_wrapping(tokenizer)
        if template.end_of_turn_is_token:
            eot = tokenizer(template.end_of_turn, add_special_tokens=False).input_ids
            if len(eot) != 1:
                log.warning(
                    "template '%s' ends answers with %r, which this tokenizer splits into %d tokens (it is "
                    "not one special token): generation will have to stop on the text, not a token id",
                    template.name,
                    template.end_of_turn,
                    len(eot),
                )

    def encode(self, segments: Sequence[Segment]) -> Encoded:
        """Ids and labels of one rendered conversation; raises TokenizationMismatch."""
        result = self.encode_many([segments])[0]
        if isinstance(result, DataError):
            raise result
        return result

    def encode_many(self, batch: Sequence[Sequence[Segment]]) -> list[Encoded | TokenizationMismatch]:
        """Encode several conversations with two batched tokenizer calls; failures are returned, not raised."""
        texts = ["".join(s.text for s in segs) for segs in batch]
        flat = [s.text for segs in batch for s in segs]
        piece_ids = self.tokenizer(flat, add_special_tokens=False).input_ids if flat else []
        full_ids = self.tokenizer(texts).input_ids if texts else []
        out: list[Encoded | TokenizationMismatch] = []
        k = 0
        for segs, text, full in zip(batch, texts, full_ids, strict=True):
            ids, labels = list(self.prefix), [IGNORE_INDEX] * len(self.prefix)
            for seg in segs:
                ids.extend(piece_ids[k])
                labels.extend(piece_ids[k] if seg.trainable else [IGNORE_INDEX] * len(piece_ids[k]))
                k += 1
            ids.extend(self.suffix)
            labels.extend([IGNORE_INDEX] * len(self.suffix))
            if ids == list(full):
                out.append(Encoded(ids, labels, text))
                continue
            try:
                out.append(self._by_offsets(segs, text))
            except TokenizationMismatch as exc:
                out.append(
                    TokenizationMismatch(f"{exc} ({_first_difference(self.tokenizer, ids, list(full))})")
                )
        return out

    def _by_offsets(self, segs: Sequence[Segment], text: str) -> Encoded:
        """Label the whole text's tokens by the segment their characters come from."""
        if not getattr(self.tokenizer, "is_fast", False):
            raise TokenizationMismatch(
                f"tokenization mismatch in template '{self.template.name}': the segments tokenize "
                "differently from the whole text, and a slow tokenizer has no offsets to realign them"
            )
        enc = self.tokenizer(text, return_offsets_mapping=True)
        starts, ends, trainable, pos = [], [], [], 0
        for seg in segs:
            starts.append(pos)
            pos += len(seg.text)
            ends.append(pos)
            trainable.append(seg.trainable)
        labels = []
        for token, (lo, hi) in zip(enc.input_ids, enc.offset_mapping, strict=True):
            if hi <= lo:  # added special tokens (BOS) have empty spans
                labels.append(IGNORE_INDEX)
                continue
            first = bisect.bisect_right(starts, lo) - 1
            last = bisect.bisect_right(starts, hi - 1) - 1
            if any(trainable[i] != trainable[first] for i in range(first, last + 1)):
                raise TokenizationMismatch(
                    f"tokenization mismatch in template '{self.template.name}': token "
                    f"{self.tokenizer.convert_ids_to_tokens(token)!r} spans the end of a "
                    f"{'loss' if trainable[first] else 'prompt'} segment at character {ends[first]} "
                    f"(text {text[max(0, ends[first] - 20) : ends[first] + 20]!r})"
                )
            labels.append(token if trainable[first] else IGNORE_INDEX)
        return Encoded(list(enc.input_ids), labels, text)


def _special_wrapping(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The ids the tokenizer adds before and after a text on its own (Llama: [BOS], []; Qwen: [], [])."""
    probe = "deco probe text"
    bare = tokenizer(probe, add_special_tokens=False).input_ids
    wrapped = tokenizer(probe).input_ids
    for start in range(len(wrapped) - len(bare) + 1):
        if wrapped[start : start + len(bare)] == bare:
            return list(wrapped[:start]), list(wrapped[start + len(bare) :])
    raise ConfigError("cannot tell which special tokens this tokenizer adds around a text")


def _first_difference(tokenizer: PreTrainedTokenizerBase, pieces: list[int], full: list[int]) -> str:
    i = next(
        (i for i, (a, b) in enumerate(zip(pieces, full, strict=False)) if a != b), min(len(pieces), len(full))
    )
    show = tokenizer.convert_ids_to_tokens
    return (
        f"pieces give {len(pieces)} ids, the whole text {len(full)}; first difference at id {i}: "
        f"{show(pieces[i : i + 3])} vs {show(full[i : i + 3])}"
    )
