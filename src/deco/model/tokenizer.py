"""Tokenizer helpers: the `<image>` placeholder token, and small tokenizers built in-process.

Real runs load the LLM's own tokenizer (`load_tokenizer`). Tests and the demo cannot download one,
so `build_byte_tokenizer` makes a byte-level tokenizer in the style of a Llama (BOS `<s>`, EOS
`</s>`) or Qwen (no BOS, `<|im_start|>`/`<|im_end|>`, `<|endoftext|>`) vocabulary, and
`build_word_tokenizer` a word-level one, both wrapped as HF fast tokenizers so the real template
code runs on them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from deco.errors import ConfigError
from deco.hub import hub_kwargs, load_failure
from deco.model.tokens import IMAGE_TOKEN


def ensure_image_token(tokenizer: PreTrainedTokenizerBase) -> int:
    """Add `<image>` as a special token if missing; return its id (the LLM may need resizing)."""
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    if not isinstance(token_id, int) or token_id == tokenizer.unk_token_id:
        raise ConfigError(f"tokenizer could not register the image token {IMAGE_TOKEN!r}")
    return token_id


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> int:
    """Llama tokenizers ship without a pad token; reuse unk (as LLaVA does) or eos."""
    if tokenizer.pad_token_id is None:
        fallback = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
        if fallback is None:
            raise ConfigError("tokenizer has no pad, unk or eos token to pad batches with")
        tokenizer.pad_token = fallback
    return int(tokenizer.pad_token_id)


def load_tokenizer(name_or_path: str | Path) -> PreTrainedTokenizerBase:
    """Load an HF tokenizer by id or local path, with the image and pad tokens in place."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), **hub_kwargs(name_or_path))
    except (OSError, ValueError) as exc:
        raise ConfigError(load_failure("a tokenizer", name_or_path, exc)) from None
    ensure_pad_token(tokenizer)
    ensure_image_token(tokenizer)
    return tokenizer


_STYLES = {
    # style: (special tokens in id order, bos, eos, pad, unk)
    "llama": (["<unk>", "<s>", "</s>"], "<s>", "</s>", None, "<unk>"),
    "qwen": (["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None, "<|im_end|>", "<|endoftext|>", None),
}


def _wrap(tok: Tokenizer, style: str, model_max_length: int) -> PreTrainedTokenizerFast:
    specials, bos, eos, pad, unk = _STYLES[style]
    if bos is not None:
        # Llama tokenizers prepend BOS to every encoded text.
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        unk_token=unk,
        model_max_length=model_max_length,
        additional_special_tokens=[s for s in specials if s not in (bos, eos, pad, unk)],
    )
    fast.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    ensure_pad_token(fast)
    return fast


def build_byte_tokenizer(style: str = "llama", model_max_length: int = 4096) -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (256 byte tokens, no merges) with Llama- or Qwen-style specials."""
    if style not in _STYLES:
        raise ConfigError(f"unknown tokenizer style '{style}'; valid: {', '.join(_STYLES)}")
    specials = _STYLES[style][0]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(specials)}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=_STYLES[style][4]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(specials)
    return _wrap(tok, style, model_max_length)


def build_word_tokenizer(
    words: Iterable[str], style: str = "llama", model_max_length: int = 4096
) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over a fixed vocabulary (whitespace and punctuation split)."""
    if style not in _STYLES:
        raise ConfigError(f"unknown tokenizer style '{style}'; valid: {', '.join(_STYLES)}")
    specials = list(_STYLES[style][0])
    unk = _STYLES[style][4] or "<unk>"
    if unk not in specials:
        specials.append(unk)
    vocab = {tok: i for i, tok in enumerate(specials)}
    for w in sorted(set(words)):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tok.add_special_tokens(specials)
    fast = _wrap(tok, style, model_max_length)
    if fast.unk_token is None:
        fast.unk_token = unk
    return fast
