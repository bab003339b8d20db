"""Text-to-Query through the LLM, the Text-to-Patch composition, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from deco.analysis.explanation import explain, group_words
from deco.analysis.hooks import eager_attention
from deco.analysis.text_query import build_prompt, text_to_query, token_pieces
from deco.config import load_config
from deco.errors import ConfigError, DataError
from deco.model import build_model

QFORMER = "{hidden_size: 32, num_attention_heads: 4, intermediate_size: 64, num_queries: 9}"


def tiny_model(projector: str = "deco", options: str = "{grid: 3x3}"):
    torch.manual_seed(0)
    config = load_config("configs/tiny.yaml", [f"projector.name={projector}", f"projector.options={options}"])
    return build_model(config).eval()


def scene() -> Image.Image:
    pixels = np.zeros((48, 48, 3), dtype=np.uint8)
    pixels[4:20, 28:44] = (230, 30, 30)
    return Image.fromarray(pixels)


def sequence(model, answer: str = " red square"):
    batch = model.processor()(build_prompt("What is there?", None), [scene()])  # short prompt: fast
    answer_ids = model.tokenizer(answer, add_special_tokens=False).input_ids
    ids = torch.cat([batch["input_ids"], torch.tensor([answer_ids])], 1)
    return ids, batch["pixel_values"], batch["input_ids"].shape[1]


def test_text_to_query_rows_are_distributions_over_the_visual_tokens() -> None:
    model = tiny_model()
    ids, pixels, start = sequence(model)
    result = text_to_query(model, ids, pixels, start, chunk_size=4)
    assert result.maps.shape == (ids.shape[1] - start, model.num_image_tokens)
    assert torch.isfinite(result.raw).all() and (result.raw >= 0).all() and (result.raw.sum(-1) > 0).all()
    torch.testing.assert_close(result.maps.sum(-1), torch.ones(len(result.tokens)))
    assert "".join(result.tokens) == " red square"


def test_text_to_query_does_not_depend_on_how_tokens_are_chunked() -> None:
    model = tiny_model()
    ids, pixels, start = sequence(model, " red")
    one = text_to_query(model, ids, pixels, start, chunk_size=1)
    many = text_to_query(model, ids, pixels, start, chunk_size=3)
    torch.testing.assert_close(one.raw, many.raw, atol=1e-6, rtol=1e-4)


def test_configured_attention_implementation_is_restored() -> None:
    model = tiny_model()
    assert model.llm.config._attn_implementation == "sdpa"
    ids, pixels, start = sequence(model)
    text_to_query(model, ids, pixels, start)
    assert model.llm.config._attn_implementation == "sdpa"
    with pytest.raises(RuntimeError, match="boom"), eager_attention(model.llm):
        assert model.llm.config._attn_implementation == "eager"
        raise RuntimeError("boom")
    assert model.llm.config._attn_implementation == "sdpa"


def test_an_llm_that_returns_no_attention_maps_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model()
    monkeypatch.setattr(model.llm, "set_attn_implementation", lambda impl: None)  # stuck on sdpa
    ids, pixels, start = sequence(model)
    with pytest.raises(ConfigError, match=r"'model\.layers\.0\.self_attn' returned no attention weights"):
        text_to_query(model, ids, pixels, start)


def test_explain_composes_text_to_patch_and_groups_words() -> None:
    model = tiny_model("qformer", QFORMER)
    exp = explain(model, scene(), "What colour is the square?", answer="red square")  # vicuna_v1 prompt
    assert exp.answer == " red square"  # the template's leading space belongs to the answer
    assert [w.text for w in exp.words] == ["red", "square"]
    torch.testing.assert_close(exp.t2p, exp.t2q.maps @ exp.q2p.maps[0])
    torch.testing.assert_close(exp.t2p.sum(-1), torch.ones(exp.t2p.shape[0]))
    torch.testing.assert_close(exp.word_t2p[0], exp.t2p[exp.words[0].tokens].mean(0))
    assert exp.q2p.route == "attention" and exp.image.shape == (48, 48, 3)
    assert exp.image.min() >= 0.0 and exp.image.max() <= 1.0


def test_explain_generates_an_answer_when_none_is_given() -> None:
    model = tiny_model()
    exp = explain(model, scene(), "What is there?", template=None, max_new_tokens=3)
    assert 1 <= exp.t2q.maps.shape[0] <= 3
    assert exp.timings["generate_s"] > 0 and exp.q2p.route == "exact"


def test_words_start_at_whitespace_and_skip_special_tokens() -> None:
    words = group_words([" re", "d", " sq", "uare", "</s>"], [False, False, False, False, True])
    assert [(w.text, w.tokens) for w in words] == [("red", [0, 1]), ("square", [2, 3])]


def test_token_pieces_reassemble_the_text() -> None:
    model = tiny_model()
    ids = model.tokenizer(" déjà vu", add_special_tokens=False).input_ids
    assert "".join(token_pieces(model.tokenizer, ids)) == " déjà vu"


def test_prompt_uses_the_template_or_a_plain_marker() -> None:
    prompt = build_prompt("What is it?")
    assert prompt.endswith("USER: <image>\nWhat is it? ASSISTANT:")
    assert build_prompt("What is it?", None) == "<image>\nWhat is it?"


@pytest.mark.parametrize("question", ["", "   \n"])
def test_an_empty_question_is_a_data_error(question: str) -> None:
    with pytest.raises(DataError, match="question is empty"):
        explain(tiny_model(), scene(), question)


def test_an_unreadable_image_is_a_data_error_naming_the_file(tmp_path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not really a png")
    with pytest.raises(DataError, match="broken.png"):
        explain(tiny_model(), bad, "What is there?")


def test_bytes_of_one_character_belong_to_its_word() -> None:
    model = tiny_model()
    ids = model.tokenizer(" dé vu", add_special_tokens=False).input_ids  # é is two byte tokens
    pieces = token_pieces(model.tokenizer, ids)
    words = group_words(pieces, [False] * len(ids))
    assert [(w.text, w.tokens) for w in words] == [("dé", [1, 2, 3]), ("vu", [5, 6])]  # spaces are own tokens
