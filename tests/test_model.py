"""The multimodal model: HF towers/LMs by path, placeholder filling, processor, save/load."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from deco.config import load_config
from deco.errors import ConfigError, DataError, ShapeError
from deco.model import build_model, load_model, load_vision_tower, save_model
from deco.model.tokenizer import build_byte_tokenizer

VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4,
          "image_size": 32, "patch_size": 8}
LLM = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
       "num_key_value_heads": 2, "vocab_size": 261}


def tiny_model(projector="deco", options=None, **extra):
    overrides = [f"projector.name={projector}", f"projector.options={options or {}}"]
    overrides += [f"{k}={v}" for k, v in extra.items()]
    torch.manual_seed(0)
    return build_model(load_config("configs/tiny.yaml", overrides)).eval()


def test_clip_drops_cls_and_takes_penultimate_layer():
    tower = load_vision_tower(None, "clip", VISION, feature_layer=-2)
    assert tower.num_prefix_tokens == 1 and tower.grid == (4, 4)
    pixels = torch.randn(2, 3, 32, 32)
    full = tower.model(pixel_values=pixels, output_hidden_states=True).hidden_states
    torch.testing.assert_close(tower(pixels), full[-2][:, 1:])


def test_siglip_keeps_every_patch():
    tower = load_vision_tower(None, "siglip", VISION, feature_layer=-1)
    assert tower.num_prefix_tokens == 0
    pixels = torch.randn(1, 3, 32, 32)
    full = tower.model(pixel_values=pixels, output_hidden_states=True).hidden_states
    assert tower(pixels).shape == (1, 16, 32)
    torch.testing.assert_close(tower(pixels), full[-1])


@pytest.mark.parametrize("arch", ["clip", "siglip"])
@pytest.mark.parametrize("layers", [[-2], [0], [1], [-1], [1, -2], [-3, 2]])
def test_the_pass_stops_at_the_deepest_layer_taken_with_hf_forward_states(arch, layers):
    torch.manual_seed(0)
    tower = load_vision_tower(None, arch, VISION, feature_layer=-2)
    prefix = tower.num_prefix_tokens
    pixels = torch.randn(2, 3, 32, 32)
    full = tower.model(pixel_values=pixels, output_hidden_states=True).hidden_states  # HF's own forward
    ran = []
    for i, layer in enumerate(tower.model.encoder.layers):
        layer.register_forward_hook(lambda *_, i=i: ran.append(i))
    got = tower.forward_layers(pixels, layers)
    for layer, features in zip(layers, got, strict=True):
        torch.testing.assert_close(features, full[layer][:, prefix:], rtol=0, atol=0)
    deepest = max(layer % (tower.num_layers + 1) for layer in layers)
    assert ran == list(range(deepest))  # the layers after the deepest one taken never run


def test_tiny_vit_stops_at_the_deepest_layer_taken():
    from deco.model.tiny_vit import TinyViTConfig, TinyViTTower

    torch.manual_seed(0)
    tower = TinyViTTower(TinyViTConfig(image_size=32, patch_size=8, hidden_size=32, num_layers=3, num_heads=4),
                         feature_layer=-2)
    pixels = torch.randn(2, 3, 32, 32)
    full = tower.model(pixels)
    assert len(full) == 4 and len(tower.hidden_states(pixels, upto=2)) == 3
    torch.testing.assert_close(tower(pixels), full[-2], rtol=0, atol=0)


def test_feature_layer_out_of_range_is_config_error():
    with pytest.raises(ConfigError, match="feature_layer=-9"):
        load_vision_tower(None, "clip", VISION, feature_layer=-9)


@pytest.mark.parametrize("vision_cls,config_cls,arch", [(CLIPVisionModel, CLIPVisionConfig, "clip"),
                                                        (SiglipVisionModel, SiglipVisionConfig, "siglip")])
@pytest.mark.parametrize("llm_cls,llm_config_cls,style", [(LlamaForCausalLM, LlamaConfig, "llama"),
                                                          (Qwen2ForCausalLM, Qwen2Config, "qwen")])
def test_loads_hf_checkpoints_by_path(tmp_path, vision_cls, config_cls, arch, llm_cls, llm_config_cls, style):
    torch.manual_seed(0)
    vision = vision_cls(config_cls(**VISION))
    vision.save_pretrained(tmp_path / "vision")
    llm = llm_cls(llm_config_cls(**LLM))
    llm.save_pretrained(tmp_path / "llm")
    build_byte_tokenizer(style).save_pretrained(tmp_path / "llm")
    cfg = load_config(None, [f"vision.pretrained={tmp_path / 'vision'}", f"llm.pretrained={tmp_path / 'llm'}",
                             "projector.name=deco", "projector.options={grid: 2x2}"])
    model = build_model(cfg).eval()
    assert model.vision_tower.arch == arch
    assert model.num_image_tokens == 4
    pixels = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(
        model.vision_tower(pixels),
        vision(pixel_values=pixels, output_hidden_states=True).hidden_states[-2][:, model.vision_tower.num_prefix_tokens:],
    )
    ids = torch.tensor([[5, 6, 7]])
    torch.testing.assert_close(model(ids).logits, llm(ids).logits[..., : model(ids).logits.shape[-1]])


def test_pickle_only_checkpoint_is_refused_by_default(tmp_path):
    llm = LlamaForCausalLM(LlamaConfig(**LLM))
    (tmp_path / "llm").mkdir()
    llm.config.save_pretrained(tmp_path / "llm")
    torch.save(llm.state_dict(), tmp_path / "llm" / "pytorch_model.bin")  # a trusted file we wrote
    cfg = load_config("configs/tiny.yaml", [f"llm.pretrained={tmp_path / 'llm'}"])
    with pytest.raises(ConfigError, match="allow_pickle"):
        build_model(cfg)


def test_image_tokens_fill_placeholders_in_order():
    model = tiny_model()
    proc = model.processor()
    images = [Image.new("RGB", (40, 30), (255, 0, 0)), Image.new("RGB", (30, 30), (0, 0, 255))]
    batch = proc(["<image> a", "text only", "b <image>"], images)
    embeds = model.embed(batch["input_ids"], batch["pixel_values"])
    feats = model.encode_images(batch["pixel_values"])
    slots = batch["input_ids"] == model.image_token_id
    assert int(slots.sum()) == 2 * model.num_image_tokens
    torch.testing.assert_close(embeds[0][slots[0]], feats[0])
    torch.testing.assert_close(embeds[2][slots[2]], feats[1])
    text_rows = model.llm.get_input_embeddings()(batch["input_ids"][1])
    torch.testing.assert_close(embeds[1], text_rows)


def test_placeholder_count_mismatch_names_both_numbers():
    model = tiny_model()
    proc = model.processor()
    batch = proc("<image> hi", [Image.new("RGB", (48, 48))])
    ids = batch["input_ids"]
    first_slot = int((ids[0] == model.image_token_id).nonzero()[0])
    ids = torch.cat([ids[:, :first_slot], ids[:, first_slot + 1 :]], dim=1)  # drop one placeholder
    with pytest.raises(ShapeError, match=r"35 image placeholder tokens .* give 36"):
        model(ids, pixel_values=batch["pixel_values"])
    with pytest.raises(ShapeError, match="no pixel_values"):
        model(batch["input_ids"])


def test_processor_counts_markers_against_images():
    proc = tiny_model().processor()
    with pytest.raises(DataError, match="1 <image> marker"):
        proc("<image> x", [])


def test_dv_mismatch_between_tower_and_projector():
    model = tiny_model()
    from deco.model.multimodal import DecoModel
    from deco.projectors import build_projector

    wrong = build_projector("mlp", 31, 64)
    with pytest.raises(ShapeError, match="vision width 31"):
        DecoModel(model.vision_tower, wrong, model.llm, model.tokenizer, model.image_token_id)


@pytest.mark.parametrize("projector,options", [("deco", {"grid": "3x3"}), ("mlp", {}), ("qformer",
                         {"num_queries": 4, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32})])
def test_save_load_round_trip_is_exact(tmp_path, projector, options):
    model = tiny_model(projector, options)
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m").eval()
    proc = model.processor()
    batch = proc(["<image> what is it", "plain text"], [Image.new("RGB", (48, 48), (9, 99, 199))])
    torch.testing.assert_close(model(**batch).logits, loaded(**batch).logits, rtol=0, atol=0)
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert n1 == n2 and torch.equal(p1, p2)


def test_loading_a_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(ConfigError, match="deco_model.json is missing"):
        load_model(tmp_path)


def test_generate_returns_new_tokens_with_kv_cache():
    model = tiny_model()
    proc = model.processor()
    batch = proc(["<image> q", "<image> a longer question"], [Image.new("RGB", (48, 48))] * 2)
    out = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert out.shape[0] == 2 and 1 <= out.shape[1] <= 4
    # Greedy generation matches repeated full forwards (the cache changes speed, not results).
    first = model(**batch).logits[:, -1].argmax(-1)
    assert torch.equal(out[:, 0], first)
