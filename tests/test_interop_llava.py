"""HF LLaVA checkpoints in and out: same logits both ways, processor settings, bad checkpoints refused."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaImageProcessor,
    LlavaProcessor,
    SiglipVisionConfig,
)

from deco.config import load_config
from deco.data.templates import render_prompt
from deco.errors import ConfigError, ShapeError
from deco.interop import export_hf_llava, import_llava_hf, match_template, save_deco
from deco.interop.export import export_model
from deco.model import build_model, load_model
from deco.model.tokenizer import build_byte_tokenizer

VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
          "image_size": 32, "patch_size": 8}
TEXT = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 264}
MEAN, STD = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
# A chat template in the llava-hf style ("USER: <image>\n... ASSISTANT:"), which is no deco template.
HF_STYLE_TEMPLATE = (
    "{% for m in messages %}{{ m['role'].upper() + ': ' }}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}{{ '<image>\n' }}{% else %}{{ c['text'] + ' ' }}{% endif %}{% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def save_tiny_llava(root, arch="clip", act="gelu", pad=True):
    """A random tiny LlavaForConditionalGeneration saved with its tokenizer and processor, as on the Hub."""
    torch.manual_seed(0)
    tokenizer = build_byte_tokenizer("llama")
    clip = arch == "clip"
    config = LlavaConfig(
        vision_config=(CLIPVisionConfig if clip else SiglipVisionConfig)(**VISION),
        text_config=LlamaConfig(**TEXT),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        projector_hidden_act=act,
        vision_feature_select_strategy="default" if clip else "full",
        vision_feature_layer=-2,
        image_seq_length=16,
    )
    hf = LlavaForConditionalGeneration(config).eval()
    hf.save_pretrained(root)
    image_processor = LlavaImageProcessor(
        size={"shortest_edge": 32} if clip else {"height": 32, "width": 32}, crop_size={"height": 32, "width": 32},
        do_center_crop=clip, do_pad=pad, image_mean=MEAN, image_std=STD,
    )
    LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                   vision_feature_select_strategy=config.vision_feature_select_strategy,
                   num_additional_image_tokens=1 if clip else 0, chat_template=HF_STYLE_TEMPLATE).save_pretrained(root)
    return hf


def batch_for(image_token_id, num_tokens=16, size=32, seed=1):
    generator = torch.Generator().manual_seed(seed)
    ids = [1, 40, 41] + [image_token_id] * num_tokens + [42, 43, 44]
    return torch.tensor([ids, ids[:1] + [50] + ids[2:]]), torch.randn(2, 3, size, size, generator=generator)


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("llava")
    save_tiny_llava(root)
    return root


@pytest.mark.parametrize("arch", ["clip", "siglip"])
def test_import_gives_hf_logits(tmp_path, arch):
    save_tiny_llava(tmp_path, arch=arch)
    hf = LlavaForConditionalGeneration.from_pretrained(tmp_path).eval()
    model = import_llava_hf(tmp_path)
    assert model.vision_tower.arch == arch and model.projector.name == "mlp"
    assert model.num_image_tokens == 16 and model.image_token_id == hf.config.image_token_index
    ids, pixels = batch_for(model.image_token_id)
    with torch.no_grad():
        ours = model(input_ids=ids, pixel_values=pixels).logits
        theirs = hf(input_ids=ids, pixel_values=pixels).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_import_takes_processor_settings_and_chat_template(llava_dir):
    model = import_llava_hf(llava_dir)
    transform = model.vision_tower.transform(model.pad_to_square)
    assert list(transform.mean) == MEAN and list(transform.std) == STD
    assert model.pad_to_square is True and transform.size == 32
    assert model.tokenizer.chat_template == HF_STYLE_TEMPLATE
    assert model.config["projector"] == {"name": "mlp", "options": {"depth": 2, "activation": "gelu"}}
    # Pixels from deco's processor equal the HF processor's on a non-square image.
    image = Image.new("RGB", (50, 32), (200, 30, 90))
    hf_pixels = LlavaProcessor.from_pretrained(llava_dir)(images=image, text="<image>", return_tensors="pt").pixel_values
    ours = model.processor().preprocess_image(image)
    assert ours.shape == hf_pixels[0].shape
    # deco pads with round(mean * 255), HF (like LLaVA) with int(mean * 255): at most 1/255 apart.
    assert (ours - hf_pixels[0]).abs().max() <= 1 / 255 / min(STD) + 1e-5


def test_import_reads_5x_weight_names(tmp_path, llava_dir):
    # save_pretrained writes the 4.x (Hub) names; a file with the 5.x module names loads the same.
    shutil.copytree(llava_dir, tmp_path, dirs_exist_ok=True)
    hf = LlavaForConditionalGeneration.from_pretrained(llava_dir).eval()
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, tmp_path / "model.safetensors",
              metadata={"format": "pt"})
    assert any(k.startswith("model.language_model.") for k in load_file(tmp_path / "model.safetensors"))
    model = import_llava_hf(tmp_path)
    ids, pixels = batch_for(model.image_token_id)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, pixel_values=pixels).logits,
                                   hf(input_ids=ids, pixel_values=pixels).logits, atol=1e-5, rtol=0)


def test_imported_generation_matches_hf_greedy(llava_dir):
    hf = LlavaForConditionalGeneration.from_pretrained(llava_dir).eval()
    model = import_llava_hf(llava_dir)
    ids, pixels = batch_for(model.image_token_id)
    ids, pixels = ids[:1], pixels[:1]
    ours = model.generate(ids, pixel_values=pixels, max_new_tokens=6, do_sample=False)
    theirs = hf.generate(input_ids=ids, pixel_values=pixels, max_new_tokens=6, do_sample=False,
                         pad_token_id=0, eos_token_id=None)
    n = ours.shape[1]
    assert n > 0 and torch.equal(ours[0], theirs[0, ids.shape[1]: ids.shape[1] + n])


def tiny_deco(projector, **options):
    torch.manual_seed(0)
    overrides = [f"projector.name={projector}", f"projector.options={options or {}}"]
    return build_model(load_config("configs/tiny.yaml", overrides)).eval()


EXPORT_FILES = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                "tokenizer_config.json", "processor_config.json", "chat_template.jinja"}


@pytest.mark.parametrize("projector", ["mlp", "linear"])
def test_export_loads_in_hf_with_same_logits(tmp_path, projector):
    model = tiny_deco(projector)
    export_hf_llava(model, tmp_path, template="vicuna_v1")
    assert {p.name for p in tmp_path.iterdir()} == EXPORT_FILES  # what push_to_hub uploads; no pickles
    hf = LlavaForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert hf.config.projector_hidden_act == ("gelu" if projector == "mlp" else "linear")
    ids, pixels = batch_for(model.image_token_id, model.num_image_tokens, 48)
    with torch.no_grad():
        torch.testing.assert_close(hf(input_ids=ids, pixel_values=pixels).logits,
                                   model(input_ids=ids, pixel_values=pixels).logits, atol=1e-5, rtol=0)
    # Re-import gives the same projector kind back (a linear map folds exactly through an identity).
    again = import_llava_hf(tmp_path)
    assert again.projector.name == projector
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=ids, pixel_values=pixels).logits,
                                   model(input_ids=ids, pixel_values=pixels).logits, atol=1e-5, rtol=0)


def test_exported_processor_matches_deco_processor(tmp_path):
    model = tiny_deco("mlp")
    export_hf_llava(model, tmp_path, template="vicuna_v1")
    processor = LlavaProcessor.from_pretrained(tmp_path)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert text == render_prompt("vicuna_v1", "What is it?", num_images=1)
    image = Image.new("RGB", (48, 48), (10, 120, 240))
    hf_batch = processor(images=image, text=text, return_tensors="pt")
    ours = model.processor()(text, [image])
    assert torch.equal(hf_batch.input_ids, ours["input_ids"])
    torch.testing.assert_close(hf_batch.pixel_values, ours["pixel_values"], atol=1e-5, rtol=0)


def test_export_refuses_compressing_projector(tmp_path):
    model = tiny_deco("deco", grid="3x3")
    with pytest.raises(ConfigError, match="--format deco"):
        export_hf_llava(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_deco_format_export_records_template_and_reloads(tmp_path):
    model = tiny_deco("deco", grid="3x3")
    save_deco(model, tmp_path / "saved")
    export_model(tmp_path / "saved", tmp_path / "out", "deco", template="chatml")
    reloaded = load_model(tmp_path / "out")
    assert match_template(reloaded.tokenizer.chat_template) == "chatml"
    assert model.tokenizer.chat_template is None  # the caller's tokenizer is left alone
    ids, pixels = batch_for(model.image_token_id, model.num_image_tokens, 48)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids, pixel_values=pixels).logits,
                                   model(input_ids=ids, pixel_values=pixels).logits)
    assert not [p for p in (tmp_path / "out").rglob("*") if p.suffix in (".bin", ".pt", ".pkl")]


# ------------------------------------------------------------------------------------------ bad input


def test_other_architecture_is_named(tmp_path):
    torch.manual_seed(0)
    from transformers import LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(**TEXT)).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match=r"'llama' \(LlamaForCausalLM\) checkpoint; expected an HF Llava"):
        import_llava_hf(tmp_path)


def test_missing_tokenizer_files_is_config_error(tmp_path, llava_dir):
    shutil.copytree(llava_dir, tmp_path, dirs_exist_ok=True)
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(ConfigError, match="no tokenizer files"):
        import_llava_hf(tmp_path)


def test_shape_mismatch_names_the_tensors(tmp_path, llava_dir):
    shutil.copytree(llava_dir, tmp_path, dirs_exist_ok=True)
    config = json.loads((tmp_path / "config.json").read_text())
    config["text_config"]["intermediate_size"] = 100
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ShapeError, match=r"mlp\.(down|gate|up)_proj\.weight: checkpoint \(\d+, \d+\) vs config"):
        import_llava_hf(tmp_path)


def test_missing_tensors_are_an_error_not_random_init(tmp_path, llava_dir):
    shutil.copytree(llava_dir, tmp_path, dirs_exist_ok=True)
    state = load_file(tmp_path / "model.safetensors")
    save_file({k: v for k, v in state.items() if "multi_modal_projector" not in k}, tmp_path / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(ConfigError, match="missing from the checkpoint: .*multi_modal_projector"):
        import_llava_hf(tmp_path)


def test_pickle_only_weights_refused_unless_allowed(tmp_path, llava_dir):
    shutil.copytree(llava_dir, tmp_path, dirs_exist_ok=True)
    state = load_file(tmp_path / "model.safetensors")
    (tmp_path / "model.safetensors").unlink()
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(ConfigError, match="only pickle weights.*--allow-pickle.*model.allow_pickle=true"):
        import_llava_hf(tmp_path)
    model = import_llava_hf(tmp_path, allow_pickle=True)
    reference = import_llava_hf(llava_dir)
    ids, pixels = batch_for(model.image_token_id)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, pixel_values=pixels).logits,
                                   reference(input_ids=ids, pixel_values=pixels).logits)


def test_unsupported_feature_strategy_is_explained(tmp_path, llava_dir):
    shutil.copytree(llava_dir, tmp_path, dirs_exist_ok=True)
    config = json.loads((tmp_path / "config.json").read_text())
    config["vision_feature_select_strategy"] = "full"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="strategy 'default'"):
        import_llava_hf(tmp_path)


def test_hf_llava_converts_to_a_deco_folder(tmp_path, llava_dir):
    export_model(llava_dir, tmp_path / "deco", "deco")
    reloaded = load_model(tmp_path / "deco")
    imported = import_llava_hf(llava_dir)
    assert reloaded.pad_to_square and list(reloaded.vision_tower.mean) == MEAN
    assert reloaded.tokenizer.chat_template == HF_STYLE_TEMPLATE
    ids, pixels = batch_for(imported.image_token_id)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids, pixel_values=pixels).logits,
                                   imported(input_ids=ids, pixel_values=pixels).logits)
