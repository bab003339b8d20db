"""`deco chat` and `deco export`: templates, generation with the KV cache, the terminal loop, the commands."""

from __future__ import annotations

import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from deco.cli import app
from deco.config import load_config
from deco.data.templates import TEMPLATES, render_prompt
from deco.errors import ConfigError
from deco.interop import ChatSession, GenerationOptions, jinja_chat_template, locate_model, prompt_style
from deco.interop.chat import run_interactive
from deco.interop.resolve import PromptStyle, load_any_model
from deco.model import build_model, save_model
from deco.model.tokenizer import build_byte_tokenizer

runner = CliRunner()


def tiny(projector="mlp", template=None):
    torch.manual_seed(0)
    # 16 px images of 4 px patches: 16 visual tokens keep generation fast on a CPU.
    overrides = [f"projector.name={projector}", "projector.options={}", "vision.hf_config.image_size=16"]
    if projector == "deco":
        overrides[1] = "projector.options={grid: 3x3}"
    model = build_model(load_config("configs/tiny.yaml", overrides)).eval()
    if template:
        model.tokenizer.chat_template = jinja_chat_template(template)
    return model


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished run as `deco train` leaves it: config.yaml (data.template) and final/."""
    root = tmp_path_factory.mktemp("run")
    save_model(tiny("mlp"), root / "final")
    (root / "config.yaml").write_text(yaml.safe_dump({"data": {"template": "vicuna_v1"}}))
    (root / "checkpoint-4").mkdir()
    return root


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "cat.png"
    Image.new("RGB", (60, 40), (220, 120, 30)).save(path)
    return path


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_jinja_template_renders_like_render_prompt(name):
    tokenizer = build_byte_tokenizer("qwen" if name == "chatml" else "llama")
    tokenizer.chat_template = jinja_chat_template(name)
    if name == "plain":
        cases = [([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}],
                  render_prompt(name, "hi", num_images=1))]
    else:
        cases = [
            ([{"role": "user", "content": "What is  this? <image>"}, {"role": "assistant", "content": "A cat."},
              {"role": "user", "content": "Colour?"}],
             render_prompt(name, "Colour?", 1, [("What is  this? <image>", "A cat.")])),
            ([{"role": "system", "content": "Be brief."},
              {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " Hi "}]}],
             render_prompt(name, " Hi ", 1, system="Be brief.")),
            ([{"role": "user", "content": "No image here."}], render_prompt(name, "No image here.")),
        ]
    for messages, expected in cases:
        assert tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == expected


def test_generate_with_kv_cache_equals_step_by_step_argmax():
    model = tiny("deco")
    batch = model.processor()(render_prompt("vicuna_v1", "Describe.", 1), [Image.new("RGB", (16, 16), "red")])
    new = model.generate(**batch, max_new_tokens=5, do_sample=False, eos_token_id=None)
    ids = batch["input_ids"]
    with torch.no_grad():
        for _ in range(5):  # no cache: the whole sequence every step
            logits = model(input_ids=ids, pixel_values=batch["pixel_values"]).logits
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(new[0], ids[0, batch["input_ids"].shape[1]:])


def test_session_keeps_history_in_the_template(image_file):
    model = tiny("mlp")
    session = ChatSession(model, PromptStyle("vicuna_v1", None, "test"), GenerationOptions(max_new_tokens=4))
    session.set_image(image_file)
    first = session.ask("What is it?")
    assert session.prompt("And then?") == render_prompt(
        "vicuna_v1", "And then?", 1, [("<image>\nWhat is it?", first)])
    session.reset()
    assert session.history == []
    with pytest.raises(ConfigError, match="without <image>"):
        session.ask("<image> again")


def test_greedy_is_deterministic_and_sampling_follows_the_seed(image_file):
    model = tiny("mlp")
    style = PromptStyle("vicuna_v1", None, "test")

    def answer(options):
        session = ChatSession(model, style, options)
        session.set_image(image_file)
        return session.ask("Hi")

    assert answer(GenerationOptions(max_new_tokens=6)) == answer(GenerationOptions(max_new_tokens=6))
    sampled = GenerationOptions(max_new_tokens=12, temperature=1.5, top_p=0.9, seed=3)
    assert answer(sampled) == answer(sampled)
    with pytest.raises(ConfigError, match="--top-p"):
        GenerationOptions(top_p=0).validate()


def test_plain_template_is_single_turn(image_file):
    session = ChatSession(tiny("mlp"), PromptStyle("plain", None, "test"), GenerationOptions(max_new_tokens=3))
    session.set_image(image_file)
    session.ask("ignored")
    assert session.single_turn and session.history == [] and session.prompt("x") == "<image>"


def test_jinja_only_models_use_their_own_template(image_file):
    model = tiny("mlp")
    model.tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'].upper() + ': ' }}{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}{{ '<image>\n' }}{% else %}{{ c['text'] + ' ' }}{% endif %}{% endfor %}"
        "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")
    style = prompt_style(model)
    assert style.template is None and style.jinja == model.tokenizer.chat_template
    session = ChatSession(model, style, GenerationOptions(max_new_tokens=3))
    session.set_image(image_file)
    assert session.prompt("Hi") == "USER: <image>\nHi ASSISTANT:"


def test_template_resolution_order(run_dir):
    model = load_any_model(run_dir)
    assert prompt_style(model, run_dir).template == "vicuna_v1"  # the run's data.template
    assert prompt_style(model, run_dir, "chatml").template == "chatml"  # --template wins
    model.tokenizer.chat_template = jinja_chat_template("plain")
    assert prompt_style(model, run_dir).template == "plain"  # recorded with the model
    with pytest.raises(ConfigError, match="unknown conversation template"):
        prompt_style(model, run_dir, "vicuna")


def test_locate_model_explains_what_it_found(tmp_path, run_dir):
    assert locate_model(run_dir) == (run_dir / "final", "deco")
    (tmp_path / "checkpoint-2").mkdir()
    with pytest.raises(ConfigError, match="checkpoint-N/ folders hold training state"):
        locate_model(tmp_path)
    build_byte_tokenizer().save_pretrained(tmp_path / "tok")
    (tmp_path / "tok" / "config.json").write_text('{"model_type": "blip-2", "architectures": ["Blip2Model"]}')
    with pytest.raises(ConfigError, match=r"'blip-2' \(Blip2Model\) checkpoint; expected a saved deco model"):
        locate_model(tmp_path / "tok")


def test_interactive_loop_commands(image_file):
    session = ChatSession(tiny("mlp"), PromptStyle("vicuna_v1", None, "test"), GenerationOptions(max_new_tokens=3))
    session.set_image(image_file)
    lines = iter(["What?", "/image /no/such.png", "/reset", "/bogus", "Again?", "/quit", "never read"])
    out: list[str] = []
    run_interactive(session, read=lambda _: next(lines), write=out.append)
    text = "".join(out)
    assert text.count("model> ") == 2
    assert "image file not found: /no/such.png" in text and "conversation cleared" in text
    assert "unknown command /bogus" in text
    assert next(lines) == "never read"


def test_chat_cli_one_shot_matches_session(run_dir, image_file):
    result = runner.invoke(app, ["chat", "--model", str(run_dir), "--image", str(image_file),
                                 "--prompt", "What colour?", "--max-new-tokens", "5", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    session = ChatSession(load_any_model(run_dir), PromptStyle("vicuna_v1", None, "t"),
                          GenerationOptions(max_new_tokens=5))
    session.set_image(image_file)
    assert result.output.rstrip("\n") == session.ask("What colour?")


def test_chat_cli_interactive_reads_stdin(run_dir, image_file):
    result = runner.invoke(app, ["chat", "--model", str(run_dir), "--image", str(image_file),
                                 "--max-new-tokens", "3", "--device", "cpu"], input="Hello?\n/quit\n")
    assert result.exit_code == 0, result.output
    assert "template 'vicuna_v1'" in result.output and "model> " in result.output


def test_export_cli_hf_llava_verifies(tmp_path, run_dir):
    out = tmp_path / "hf"
    result = runner.invoke(app, ["export", "--model", str(run_dir), "--format", "hf-llava", "--out", str(out),
                                 "--verify"])
    assert result.exit_code == 0, result.output
    diff = float(result.output.split("at most ")[1])
    assert diff <= 1e-5
    assert (out / "chat_template.jinja").read_text() == jinja_chat_template("vicuna_v1")


def test_export_cli_refuses_non_empty_out_and_compressing_projector(tmp_path):
    save_model(tiny("deco"), tmp_path / "model")
    result = runner.invoke(app, ["export", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "x")])
    assert isinstance(result.exception, ConfigError) and "--format deco" in str(result.exception)
    result = runner.invoke(app, ["export", "--model", str(tmp_path / "model"), "--format", "deco",
                                 "--out", str(tmp_path / "model")])
    assert isinstance(result.exception, ConfigError) and "not an empty folder" in str(result.exception)
