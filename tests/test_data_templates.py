"""Templates: expected ids and loss masks built by hand, token by token, for both tokenizer styles."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from deco.data import (
    IGNORE_INDEX,
    ConversationEncoder,
    TokenizationMismatch,
    get_template,
    render_prompt,
)
from deco.errors import ConfigError, DataError
from deco.model.tokenizer import IMAGE_TOKEN, build_byte_tokenizer

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
WITH_IMAGE = [
    ("human", "What colour?\n<image>"),
    ("gpt", "Red."),
    ("human", "And the shape?"),
    ("gpt", "A square."),
]
TEXT_ONLY = [("human", "Hi"), ("gpt", "Hello!"), ("human", "Bye"), ("gpt", "Ciao, é.")]


def _byte_chars() -> dict[int, str]:
    """GPT-2's byte -> printable character table (what a byte-level tokenizer's vocabulary is made of)."""
    keep = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    )
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


BYTE_CHARS = _byte_chars()


def b(tok, text: str) -> list[int]:
    """Ids of plain text, one byte-level token per UTF-8 byte (no specials inside)."""
    return [tok.convert_tokens_to_ids(BYTE_CHARS[x]) for x in text.encode("utf-8")]


def s(tok, token: str) -> list[int]:
    """The id of one special token, which must be a single entry of the vocabulary."""
    token_id = tok.convert_tokens_to_ids(token)
    assert token_id is not None and token_id != tok.unk_token_id
    return [token_id]


def build(parts: list[tuple[list[int], bool]]) -> tuple[list[int], list[int]]:
    """Concatenate (ids, carries_loss) parts into expected input ids and labels."""
    ids, labels = [], []
    for part, loss in parts:
        ids += part
        labels += part if loss else [IGNORE_INDEX] * len(part)
    return ids, labels


def encode(tok, name: str, turns, system=None):
    template = get_template(name)
    enc = ConversationEncoder(tok, template).encode(template.segments(turns, system))
    return enc.input_ids, enc.labels


@pytest.fixture(scope="module")
def llama():
    return build_byte_tokenizer("llama")


@pytest.fixture(scope="module")
def qwen():
    return build_byte_tokenizer("qwen")


# ---- vicuna_v1 ---------------------------------------------------------------------------------


def test_vicuna_llama_multi_turn_with_image(llama):
    t = llama
    expected = build(
        [
            (
                s(t, "<s>")
                + b(t, VICUNA_SYSTEM + " USER: ")
                + s(t, IMAGE_TOKEN)
                + b(t, "\nWhat colour? ASSISTANT:"),
                False,
            ),
            (b(t, " Red.") + s(t, "</s>"), True),
            (b(t, "USER: And the shape? ASSISTANT:"), False),
            (b(t, " A square.") + s(t, "</s>"), True),
        ]
    )
    assert encode(t, "vicuna_v1", WITH_IMAGE) == expected


def test_vicuna_llama_text_only(llama):
    t = llama
    expected = build(
        [
            (s(t, "<s>") + b(t, VICUNA_SYSTEM + " USER: Hi ASSISTANT:"), False),
            (b(t, " Hello!") + s(t, "</s>"), True),
            (b(t, "USER: Bye ASSISTANT:"), False),
            (b(t, " Ciao, é.") + s(t, "</s>"), True),
        ]
    )
    assert encode(t, "vicuna_v1", TEXT_ONLY) == expected


def test_vicuna_qwen_has_no_bos_and_spells_out_eos(qwen):
    t = qwen  # "</s>" is not a special token of a Qwen vocabulary: four byte tokens, all with loss
    expected = build(
        [
            (b(t, VICUNA_SYSTEM + " USER: ") + s(t, IMAGE_TOKEN) + b(t, "\nWhat colour? ASSISTANT:"), False),
            (b(t, " Red.</s>"), True),
            (b(t, "USER: And the shape? ASSISTANT:"), False),
            (b(t, " A square.</s>"), True),
        ]
    )
    assert encode(t, "vicuna_v1", WITH_IMAGE) == expected
    expected = build(
        [
            (b(t, VICUNA_SYSTEM + " USER: Hi ASSISTANT:"), False),
            (b(t, " Hello!</s>"), True),
            (b(t, "USER: Bye ASSISTANT:"), False),
            (b(t, " Ciao, é.</s>"), True),
        ]
    )
    assert encode(t, "vicuna_v1", TEXT_ONLY) == expected


def test_vicuna_empty_system_drops_prompt_and_separator(llama):
    ids, _ = encode(llama, "vicuna_v1", TEXT_ONLY[:2], system="")
    assert ids[: 1 + len("USER: Hi")] == s(llama, "<s>") + b(llama, "USER: Hi")


# ---- chatml --------------------------------------------------------------------------------


def test_chatml_qwen_multi_turn_with_image(qwen):
    t = qwen
    start, end = s(t, "<|im_start|>"), s(t, "<|im_end|>")
    expected = build(
        [
            (start + b(t, "system\nYou are a helpful assistant.") + end + b(t, "\n"), False),
            (start + b(t, "user\n") + s(t, IMAGE_TOKEN) + b(t, "\nWhat colour?") + end + b(t, "\n"), False),
            (start + b(t, "assistant\n"), False),
            (b(t, "Red.") + end, True),
            (
                b(t, "\n")
                + start
                + b(t, "user\nAnd the shape?")
                + end
                + b(t, "\n")
                + start
                + b(t, "assistant\n"),
                False,
            ),
            (b(t, "A square.") + end, True),
            (b(t, "\n"), False),
        ]
    )
    assert encode(t, "chatml", WITH_IMAGE) == expected


def test_chatml_qwen_text_only(qwen):
    t = qwen
    start, end = s(t, "<|im_start|>"), s(t, "<|im_end|>")
    expected = build(
        [
            (start + b(t, "system\nYou are a helpful assistant.") + end + b(t, "\n"), False),
            (start + b(t, "user\nHi") + end + b(t, "\n") + start + b(t, "assistant\n"), False),
            (b(t, "Hello!") + end, True),
            (b(t, "\n") + start + b(t, "user\nBye") + end + b(t, "\n") + start + b(t, "assistant\n"), False),
            (b(t, "Ciao, é.") + end, True),
            (b(t, "\n"), False),
        ]
    )
    assert encode(t, "chatml", TEXT_ONLY) == expected


def test_chatml_llama_spells_out_chatml_markers(llama):
    t = llama  # a Llama vocabulary has no <|im_start|>: byte tokens, after one BOS
    head = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    expected = build(
        [
            (
                s(t, "<s>")
                + b(t, head)
                + s(t, IMAGE_TOKEN)
                + b(t, "\nWhat colour?<|im_end|>\n<|im_start|>assistant\n"),
                False,
            ),
            (b(t, "Red.<|im_end|>"), True),
            (b(t, "\n<|im_start|>user\nAnd the shape?<|im_end|>\n<|im_start|>assistant\n"), False),
            (b(t, "A square.<|im_end|>"), True),
            (b(t, "\n"), False),
        ]
    )
    assert encode(t, "chatml", WITH_IMAGE) == expected
    ids, labels = encode(t, "chatml", TEXT_ONLY)
    assert ids[0] == t.bos_token_id and ids.count(t.bos_token_id) == 1
    assert t.decode([x for x in labels if x != IGNORE_INDEX]) == "Hello!<|im_end|>Ciao, é.<|im_end|>"


# ---- plain ---------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["llama", "qwen"])
def test_plain_is_image_then_caption_with_loss_on_caption_and_newline(style):
    t = build_byte_tokenizer(style)
    bos = s(t, "<s>") if style == "llama" else []
    turns = [("human", "Describe the picture briefly.\n<image>"), ("gpt", "A red square.")]
    expected = build([(bos + s(t, IMAGE_TOKEN), False), (b(t, "A red square.\n"), True)])
    assert encode(t, "plain", turns) == expected


def test_plain_rejects_multi_turn(llama):
    template = get_template("plain")
    with pytest.raises(DataError, match="plain.*1 human/gpt pair"):
        template.segments(WITH_IMAGE)


# ---- prompts, registry, robustness ------------------------------------------------------------


@pytest.mark.parametrize("style", ["llama", "qwen"])
@pytest.mark.parametrize("name", ["plain", "vicuna_v1", "chatml"])
def test_inference_prompt_is_the_training_prefix(style, name):
    """Tokenizing render_prompt() gives exactly the ids before the first loss token in training."""
    tok = build_byte_tokenizer(style)
    turns = WITH_IMAGE[:2]
    ids, labels = encode(tok, name, turns)
    first_loss = next(i for i, x in enumerate(labels) if x != IGNORE_INDEX)
    prompt = render_prompt(name, "What colour?", num_images=1)
    assert tok(prompt).input_ids == ids[:first_loss]


def test_render_prompt_multi_turn_history_and_marker_checks():
    prompt = render_prompt(
        "vicuna_v1", "And the shape?", num_images=1, history=[("<image>\nWhat colour?", "Red.")]
    )
    assert prompt.endswith("ASSISTANT: Red.</s>USER: And the shape? ASSISTANT:")
    assert prompt.count(IMAGE_TOKEN) == 1
    with pytest.raises(DataError, match="2 <image> marker"):
        render_prompt("chatml", "<image><image> hi", num_images=1)
    assert render_prompt("chatml", "hi").endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("bad", ["vicuna", "Vicuna_v1", "chat", ""])
def test_unknown_template_name_lists_valid_names(bad):
    with pytest.raises(ConfigError, match="valid: chatml, plain, vicuna_v1"):
        get_template(bad)


def _metaspace_tokenizer(merges: bool) -> PreTrainedTokenizerFast:
    """A SentencePiece-like tokenizer ("▁" for spaces, prefixed to the first piece of every call)."""
    chars = [chr(c) for c in range(33, 127)] + ["▁", "\n"]
    specials = ["<unk>", "<s>", "</s>"]
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    merge_list = []
    if merges:  # a token that swallows the space after "ASSISTANT:", across the loss boundary
        vocab[":▁"] = len(vocab)
        merge_list = [(":", "▁")]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merge_list, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.add_special_tokens(specials)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN], "pad_token": "<unk>"})
    return fast


def test_sentencepiece_style_prefix_is_realigned_by_offsets():
    tok = _metaspace_tokenizer(merges=False)
    template = get_template("vicuna_v1")
    segs = template.segments(TEXT_ONLY[:2] + [("human", "Bye"), ("gpt", "Ciao.")])
    # Tokenized alone, "USER: Bye ..." gets a "▁" prefix it does not have after "</s>" in the whole text.
    alone = tok("USER: Bye", add_special_tokens=False).input_ids
    assert tok.convert_ids_to_tokens(alone)[0] == "▁"
    pieces = [tok.bos_token_id] + [
        i for seg in segs for i in tok(seg.text, add_special_tokens=False).input_ids
    ]
    enc = ConversationEncoder(tok, template).encode(segs)
    assert pieces != enc.input_ids == tok(enc.text).input_ids  # the piece-by-piece ids were not used
    loss_tokens = tok.convert_ids_to_tokens([x for x in enc.labels if x != IGNORE_INDEX])
    assert "".join(loss_tokens) == "▁Hello!</s>▁Ciao.</s>"


def test_token_across_loss_boundary_is_a_tokenization_mismatch():
    tok = _metaspace_tokenizer(merges=True)
    template = get_template("vicuna_v1")
    with pytest.raises(TokenizationMismatch, match="vicuna_v1.*spans the end of a prompt segment"):
        ConversationEncoder(tok, template).encode(template.segments(TEXT_ONLY[:2]))
