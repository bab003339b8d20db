"""TokenPacker with real multi-level features: tower layers, config key, model wiring, training, save/load."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from deco.config import Config, load_config, resolve_multi_level_layers
from deco.errors import ConfigError
from deco.model import DecoModel, build_model, load_model, load_vision_tower, save_model
from deco.model.tiny_vit import TinyViTConfig, TinyViTTower
from deco.projectors import build_projector

pytestmark = pytest.mark.usefixtures("torch_one_thread")

VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4,
          "image_size": 16, "patch_size": 4}
# configs/tiny.yaml's CLIP has 2 layers: hidden states 0 (embeddings), 1, 2.
LAYERS = "vision.multi_level_layers=[0, 1, 2, -1]"
TOKENPACKER = ["projector.name=tokenpacker", "projector.options={num_heads: 4}"]


def tiny_config(*extra: str) -> Config:
    return load_config("configs/tiny.yaml", [*TOKENPACKER, *extra])


def tiny_model(*extra: str) -> DecoModel:
    torch.manual_seed(0)
    return build_model(tiny_config(*extra)).eval()


def batch(model: DecoModel, images: int = 1) -> dict[str, torch.Tensor]:
    ids = torch.tensor([[1] + [model.image_token_id] * model.num_image_tokens + [65, 66, 67]] * images)
    return {"input_ids": ids, "pixel_values": torch.randn(images, 3, 48, 48, generator=torch.Generator().manual_seed(3))}


# --- the tower ---------------------------------------------------------------------------------


@pytest.mark.parametrize("arch,prefix", [("clip", 1), ("siglip", 0)])
def test_tower_returns_the_requested_hidden_states_in_one_pass(arch: str, prefix: int) -> None:
    torch.manual_seed(0)
    tower = load_vision_tower(None, arch, VISION, feature_layer=-2).eval()
    pixels = torch.randn(2, 3, 16, 16)
    calls = []
    hook = tower.model.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        got = tower.forward_layers(pixels, [3, 0, -2, 1])
        want = tower.model(pixel_values=pixels, output_hidden_states=True).hidden_states
    hook.remove()
    assert len(calls) == 2  # one pass for all four layers, one for the reference
    assert len(got) == 4
    for out, index in zip(got, [3, 0, -2, 1], strict=True):
        assert out.shape == (2, 16, 32)
        assert torch.equal(out, want[index][:, prefix:])  # CLIP drops CLS; SigLIP has none to drop
    with torch.no_grad():
        assert torch.equal(tower(pixels), want[-2][:, prefix:])  # the main layer, same handling


def test_tiny_vit_tower_returns_its_block_outputs() -> None:
    torch.manual_seed(0)
    tower = TinyViTTower(TinyViTConfig(image_size=16, patch_size=4, hidden_size=32, num_layers=3), -1).eval()
    pixels = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        states = tower.model(pixels)
        got = tower.forward_layers(pixels, [1, -1])
        main = tower(pixels)
    assert torch.equal(got[0], states[1]) and torch.equal(got[1], states[3]) and torch.equal(main, states[3])
    assert not torch.equal(got[0], got[1])
    assert tower.geometry()["num_layers"] == 3


def test_tower_layer_out_of_range_names_the_key() -> None:
    tower = load_vision_tower(None, "clip", VISION)
    assert tower.check_layer(-4, "vision.multi_level_layers") == -4
    with pytest.raises(ConfigError, match=r"vision.multi_level_layers=4 .*3 layers"):
        tower.check_layer(4, "vision.multi_level_layers")


# --- the model ---------------------------------------------------------------------------------


def test_reference_layers_are_the_default_for_tokenpacker() -> None:
    config = load_config(None, ["projector.name=tokenpacker", "vision.hf_config={num_hidden_layers: 24}"])
    assert config.vision.multi_level_layers is None
    assert resolve_multi_level_layers(config) == [12, 16, 22, 23]  # CircleRadon/TokenPacker clip_encoder.py
    assert resolve_multi_level_layers(load_config(None)) is None  # mlp: single level


def test_projector_gets_the_tower_layers_concatenated() -> None:
    model = tiny_model(LAYERS)
    seen = {}

    def grab(_module, args, kwargs):
        seen["features"], seen["multi"] = args[0], kwargs["multi_level"]

    hook = model.projector.register_forward_pre_hook(grab, with_kwargs=True)
    pixels = batch(model, images=2)["pixel_values"]
    with torch.no_grad():
        model.encode_images(pixels)
        states = model.vision_tower.model(pixel_values=pixels, output_hidden_states=True).hidden_states
    hook.remove()
    want = torch.cat([states[i][:, 1:] for i in (0, 1, 2, -1)], dim=-1)  # [2, 144, 4*32], CLS dropped
    assert seen["multi"].shape == (2, 144, 128)
    assert torch.equal(seen["multi"], want)
    assert torch.equal(seen["features"], states[-2][:, 1:])  # queries: the main layer


def test_real_levels_change_the_output_and_repeated_main_layer_equals_the_fallback() -> None:
    real = tiny_model(LAYERS)
    repeated = tiny_model("vision.multi_level_layers=[-2, -2, -2, -2]")
    assert torch.equal(real.projector.k_proj[0].weight, repeated.projector.k_proj[0].weight)  # same seed
    fallback = DecoModel(repeated.vision_tower, repeated.projector, repeated.llm, repeated.tokenizer,
                         repeated.image_token_id)  # built directly, as the bench does: no layers given
    assert fallback.multi_level_layers is None
    inputs = batch(real)
    with torch.no_grad():
        a = real(**inputs).logits
        b = repeated(**inputs).logits
        c = fallback(**inputs).logits
    assert torch.equal(b, c)  # listing the main layer 4 times is what the single-level fallback does
    assert (a - b).abs().max() > 1e-4


def test_anyres_views_take_the_multi_level_path() -> None:
    model = tiny_model(LAYERS, "vision.anyres.enabled=true", "vision.anyres.layouts=[1x2]",
                       "vision.anyres.max_tiles=2", "vision.anyres.layout_tokens=separator")
    inputs = model.processor()("USER: <image>\nWhat? ASSISTANT:", [Image.new("RGB", (96, 48), (200, 30, 30))])
    seen = []
    hook = model.projector.register_forward_pre_hook(
        lambda _m, _a, kwargs: seen.append(kwargs["multi_level"].shape), with_kwargs=True)
    with torch.no_grad():
        out = model(**inputs).logits
    hook.remove()
    assert seen == [(3, 144, 128)]  # global view + 2 tiles, 4 levels of width 32 each
    assert torch.isfinite(out).all()


# --- save / load and training -------------------------------------------------------------------


def test_save_load_round_trip_keeps_the_layers(tmp_path) -> None:
    model = tiny_model(LAYERS)
    save_model(model, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "deco_model.json").read_text())
    assert meta["sections"]["vision"]["multi_level_layers"] == [0, 1, 2, -1]
    reloaded = load_model(tmp_path / "m").eval()
    assert reloaded.multi_level_layers == [0, 1, 2, -1]
    inputs = batch(model)
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, reloaded(**inputs).logits)


def test_a_model_saved_before_multi_level_reloads_as_it_ran(tmp_path) -> None:
    model = tiny_model("vision.multi_level_layers=[-2, -2, -2, -2]")
    save_model(model, tmp_path / "old")
    file = tmp_path / "old" / "deco_model.json"
    meta = json.loads(file.read_text())
    del meta["sections"]["vision"]["multi_level_layers"]  # what the earlier format wrote
    file.write_text(json.dumps(meta))
    reloaded = load_model(tmp_path / "old").eval()
    assert reloaded.multi_level_layers == [-2, -2, -2, -2]  # the main layer `levels` times, as it was trained
    inputs = batch(model)
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, reloaded(**inputs).logits)


def test_tiny_training_run_with_multi_level_tokenpacker(tmp_path) -> None:
    from conftest import write_llava_dataset
    from deco.train import run_training
    from deco.train.report.metrics import read_metrics

    train_file, images = write_llava_dataset(tmp_path / "data")
    out = tmp_path / "run"
    config = tiny_config(LAYERS, f"data.train_file={train_file}", f"data.image_folder={images}",
                         f"train.output_dir={out}", "train.max_steps=2", "train.save_every=2", "train.quiet=true")
    before = build_model(config).projector.k_proj[0].weight.detach().clone()  # same seed as the run's model
    summary = run_training(config)
    assert summary["steps"] == 2
    losses = [r["loss"] for r in read_metrics(out / "metrics.jsonl")]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    final = load_model(out / "final")
    assert final.multi_level_layers == [0, 1, 2, -1]
    assert not torch.equal(final.projector.k_proj[0].weight, before)  # the key MLP on 4 levels trained


# --- config errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("extra,match", [
    ([], r"tiny.yaml.*'vision.multi_level_layers' \(unset, so the projector's reference layers "
         r"\[12, 16, 22, 23\]\).*2 layers"),
    (["vision.multi_level_layers=[0, 1, 2]"], r"tiny.yaml.*lists 3 layer.*'projector.options.levels' = 4"),
    (["vision.multi_level_layers=[0, 1, 2, 3]"], r"tiny.yaml.*'vision.multi_level_layers' \(\[0, 1, 2, 3\]\): \[3\]"),
    (["vision.multi_level_layers=[0, 1, 2, -4]"], r"\[-4\] out of range"),
    (["vision.multi_level_layers=[0, 1, true, 2]"], r"'vision.multi_level_layers' must be a list of hidden-state"),
    (["projector.options={num_heads: 4, levels: 2}"], r"unset.*levels=2.*e.g. \[-2, -2\]"),
])
def test_config_errors_name_the_key_and_file(extra: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        tiny_config(*extra)


def test_layers_for_a_single_level_projector_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"tiny.yaml.*'vision.multi_level_layers'.*projector 'deco' reads one"):
        load_config("configs/tiny.yaml", ["vision.multi_level_layers=[1]"])


def test_a_tower_loaded_by_path_is_checked_when_the_model_is_built(tmp_path) -> None:
    tower = load_vision_tower(None, "clip", {**VISION, "image_size": 48})
    tower.save(tmp_path / "vision")
    with pytest.raises(ConfigError, match=r"unset, so the projector's reference layers.*HFVisionTower with 3 layers"):
        build_model(tiny_config(f"vision.pretrained={tmp_path / 'vision'}"))
    model = build_model(tiny_config(f"vision.pretrained={tmp_path / 'vision'}", "vision.multi_level_layers=[1, 2, 3, 3]"))
    assert model.multi_level_layers == [1, 2, 3, 3]


def test_model_checks_layers_against_the_tower_it_gets() -> None:
    model = tiny_model(LAYERS)
    parts = (model.vision_tower, model.projector, model.llm, model.tokenizer, model.image_token_id)
    with pytest.raises(ConfigError, match=r"\[5\] out of range for vision tower HFVisionTower with 2 layers"):
        DecoModel(*parts, multi_level_layers=[0, 1, 2, 5])
    with pytest.raises(ConfigError, match="lists 2 layer.*levels=4"):
        DecoModel(*parts, multi_level_layers=[0, 1])
    mlp = build_projector("mlp", 32, 64)
    with pytest.raises(ConfigError, match="projector 'mlp' reads one feature layer"):
        DecoModel(model.vision_tower, mlp, *parts[2:], multi_level_layers=[1])


def test_multi_level_is_refused_for_video_projectors() -> None:
    model = tiny_model(LAYERS)
    video = build_projector("deco3d", 32, 64, {"target": "1x3x3", "num_frames": 1})
    type(video).wants_multi_level = True  # a hypothetical multi-level video projector
    try:
        with pytest.raises(ConfigError, match="multi-level features are for images"):
            DecoModel(model.vision_tower, video, model.llm, model.tokenizer, model.image_token_id,
                      multi_level_layers=[1])
    finally:
        del type(video).wants_multi_level


# --- the analysis sees the model as it runs ----------------------------------------------------


def test_query_to_patch_of_a_multi_level_model_reads_its_real_layers() -> None:
    from deco.analysis.explanation import model_query_to_patch
    from deco.analysis.query_patch import query_to_patch

    model = tiny_model(LAYERS)
    pixels = batch(model)["pixel_values"]
    got = model_query_to_patch(model, pixels, route="gradient")
    with torch.no_grad():
        main, levels = model.vision_features(pixels)
    assert levels is not None
    want = query_to_patch(model.projector, main, model.vision_tower.grid, "gradient", multi_level=levels)
    repeated = query_to_patch(model.projector, main, model.vision_tower.grid, "gradient")
    assert torch.allclose(got.raw, want.raw)
    assert not torch.allclose(got.raw, repeated.raw)  # the fallback would explain another model
