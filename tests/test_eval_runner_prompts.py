"""LLaVA-1.5's question text per benchmark, and how replies are decoded and cut."""

from __future__ import annotations

import pytest
import torch

from deco.config import load_config
from deco.errors import DataError
from deco.eval.annotations import Sample
from deco.eval.generation import Generator
from deco.eval.prompts import MULTIPLE_CHOICE, SHORT_ANSWER, question_text
from deco.model import build_model

pytestmark = pytest.mark.usefixtures("one_thread_module")


def sample(**kw) -> Sample:
    base = {"qid": "7", "question": "What is it?", "image": "a.jpg", "answers": ("cat",)}
    return Sample(**{**base, **kw})


@pytest.mark.parametrize("bench", ["vqav2", "gqa", "pope", "textvqa"])
def test_short_answer_benchmarks(bench):
    assert question_text(bench, sample()) == "What is it?\nAnswer the question using a single word or phrase."


def test_textvqa_adds_ocr_tokens_when_given():
    s = sample(meta={"ocr_tokens": ["STOP", "5"]})
    assert question_text("textvqa", s) == f"What is it?\nReference OCR token: STOP, 5\n{SHORT_ANSWER}"


def test_vizwiz_asks_for_unanswerable():
    assert question_text("vizwiz", sample()) == (
        "What is it?\nWhen the provided information is insufficient, respond with 'Unanswerable'.\n" + SHORT_ANSWER)


def test_mme_replaces_its_yes_no_instruction():
    s = sample(question="Is there a dog in this image? Please answer yes or no.")
    assert question_text("mme", s) == f"Is there a dog in this image?\n{SHORT_ANSWER}"


def test_mmbench_hint_then_question_then_lettered_options():
    s = sample(choices=("red", "blue", "green"), hint="Look at the sky.", answers=("B",))
    assert question_text("mmbench", s) == (
        "Look at the sky.\nWhat is it?\nA. red\nB. blue\nC. green\n"
        "Answer with the option's letter from the given choices directly.")
    assert question_text("mmbench", sample(choices=("x", "y"))) == f"What is it?\nA. x\nB. y\n{MULTIPLE_CHOICE}"


def test_scienceqa_context_line_only_with_a_hint():
    with_hint = sample(choices=("sun", "ice"), hint="Heat flows.")
    assert question_text("scienceqa", with_hint) == f"Context: Heat flows.\nWhat is it?\nA. sun\nB. ice\n{MULTIPLE_CHOICE}"
    assert question_text("scienceqa", sample(choices=("sun", "ice"))) == f"What is it?\nA. sun\nB. ice\n{MULTIPLE_CHOICE}"


def test_seed_lists_four_options():
    s = sample(choices=("a", "b", "c", "d"))
    assert question_text("seed", s) == f"What is it?\nA. a\nB. b\nC. c\nD. d\n{MULTIPLE_CHOICE}"


def test_bad_questions_name_the_id():
    with pytest.raises(DataError, match="question 7 has no question text.*v2_OpenEnded"):
        question_text("vqav2", sample(question=" "))
    with pytest.raises(DataError, match="question 7 has 1 option"):
        question_text("seed", sample(choices=("only",)))


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model(load_config("configs/tiny.yaml", []))


def test_decode_stops_at_eos_and_cuts_stop_strings(tiny_model):
    gen = Generator(tiny_model, "plain", "cpu")
    tok = gen.tokenizer
    ids = tok(" red\nblue", add_special_tokens=False).input_ids
    reply = gen.decode(ids + [tok.eos_token_id, tok.pad_token_id, tok.pad_token_id], gen.stop_texts)
    assert reply.text == "red" and reply.tokens == len(ids) + 1  # the plain template's turn ends at "\n"
    assert gen.decode(ids).text == "red\nblue" and gen.decode(ids).tokens == len(ids)
    assert gen.decode(ids, ["bl"]).text == "red"


def test_vicuna_stops_on_the_eos_token_and_plain_on_a_newline(tiny_model):
    assert Generator(tiny_model, "vicuna_v1", "cpu").eos_ids == [tiny_model.tokenizer.eos_token_id]
    assert Generator(tiny_model, "vicuna_v1", "cpu").stop_texts == []
    assert Generator(tiny_model, "plain", "cpu").stop_texts == ["\n"]
