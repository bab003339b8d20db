"""An AnyRes model through the evaluation path: batched generation, log-likelihoods, `deco info`."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from deco.cli import app
from deco.eval.generation import Generator
from test_anyres_data import tiny_anyres

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def images():
    # A wide and a tall image: they get different tile layouts (1x3 and 3x1), so blocks differ in length.
    return [Image.new("RGB", (150, 50), (200, 30, 30)), Image.new("RGB", (50, 150), (30, 30, 200))]


def test_batched_generation_equals_one_by_one_with_different_layouts():
    gen = Generator(tiny_anyres(), "plain", "cpu")
    wide, tall = images()
    prompts = [gen.prompt("what colour", 1), gen.prompt("what colour", 1)]
    both = gen.generate(prompts, [[wide], [tall]], max_new_tokens=4)
    alone = [gen.generate([prompts[0]], [[wide]], max_new_tokens=4)[0],
             gen.generate([prompts[1]], [[tall]], max_new_tokens=4)[0]]
    assert [r.text for r in both] == [r.text for r in alone]


def test_loglikelihood_uses_the_tiles_and_their_layout_tokens():
    model = tiny_anyres()
    gen = Generator(model, "plain", "cpu")
    wide, tall = images()
    prompt = gen.prompt("what colour", 1)
    score, _ = gen.loglikelihood(prompt, " red", [wide])
    # Same as scoring through the processor by hand (tiles, layouts, newline ids in the block).
    batch = gen.processor([prompt + " red"], [wide])
    n = len(gen._token_ids(prompt + " red")) - len(gen._token_ids(prompt))
    with torch.no_grad():
        logits = model(**batch).logits
    ids = batch["input_ids"][0]
    want = torch.log_softmax(logits[0, -n - 1 : -1].float(), -1).gather(1, ids[-n:, None]).sum().item()
    assert abs(score - want) < 1e-4
    assert abs(gen.loglikelihood(prompt, " red", [tall])[0] - score) > 1e-6  # the image matters


def test_info_prints_the_anyres_token_counts():
    result = CliRunner().invoke(app, ["info", "configs/tiny.yaml", "vision.anyres.enabled=true",
                                      "projector.options={grid: 3x3}"])
    assert result.exit_code == 0, result.output
    assert "AnyRes: layout 2x2 -> 51 tokens per image" in result.output
