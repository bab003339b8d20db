"""Q-Former projector initialised from a saved HF Blip2Model: what loads, what is re-initialised, errors."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import Blip2Config, Blip2Model

from deco.errors import ConfigError, ShapeError
from deco.interop import init_qformer_from_blip2
from deco.projectors import build_projector

EVA_WIDTH = 40  # stands in for EVA-g's 1408
QFORMER = {"hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64}


@pytest.fixture(scope="module")
def blip2_dir(tmp_path_factory):
    """A tiny Blip2Model (4 Q-Former layers, cross-attention every 2nd, 8 queries) saved by save_pretrained."""
    root = tmp_path_factory.mktemp("blip2")
    config = Blip2Config(
        vision_config={"hidden_size": EVA_WIDTH, "intermediate_size": 64, "num_hidden_layers": 1,
                       "num_attention_heads": 4, "image_size": 16, "patch_size": 8},
        qformer_config={**QFORMER, "num_hidden_layers": 4, "encoder_hidden_size": EVA_WIDTH,
                        "cross_attention_frequency": 2},
        text_config={"model_type": "opt", "hidden_size": 24, "ffn_dim": 48, "num_hidden_layers": 1,
                     "num_attention_heads": 4, "vocab_size": 100, "word_embed_proj_dim": 24},
        num_query_tokens=8,
    )
    torch.manual_seed(0)
    model = Blip2Model(config).eval()
    with torch.no_grad():
        model.query_tokens.normal_()  # HF initialises them to zeros; make them worth checking
    model.save_pretrained(root)
    return root


def qformer(vision_width, llm_width=24, **options):
    torch.manual_seed(1)
    return build_projector("qformer", vision_width, llm_width, {**QFORMER, "num_queries": 8, **options}).eval()


def test_same_architecture_reproduces_hf_qformer(blip2_dir):
    projector = qformer(EVA_WIDTH, num_hidden_layers=4, cross_attention_frequency=2)
    report = init_qformer_from_blip2(projector, blip2_dir, load_language_projection=True)
    assert report.reinitialised == {} and report.ignored == []
    hf = Blip2Model.from_pretrained(blip2_dir).eval()
    features = torch.randn(2, 16, EVA_WIDTH)
    with torch.no_grad():
        expected = hf.language_projection(hf.qformer(query_embeds=hf.query_tokens.expand(2, -1, -1),
                                                     encoder_hidden_states=features).last_hidden_state)
        torch.testing.assert_close(projector(features, (4, 4)), expected, atol=1e-5, rtol=0)


def test_deco_comparison_qformer_reinitialises_what_cannot_load(blip2_dir, caplog):
    # DeCo's baseline: 2 layers, cross-attention in every layer, a CLIP-width (here 24) vision tower.
    projector = qformer(24, llm_width=64, num_hidden_layers=2, cross_attention_frequency=1)
    before = {k: v.clone() for k, v in projector.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="deco.interop.blip2"):
        report = init_qformer_from_blip2(projector, blip2_dir)
    ckpt = load_file(blip2_dir / "model.safetensors")
    after = projector.state_dict()
    kv = [f"qformer.encoder.layer.0.crossattention.attention.{n}.{p}" for n in ("key", "value")
          for p in ("weight", "bias")]
    for key in kv:
        assert key in report.reinitialised and torch.equal(after[key], before[key])
    assert "vision width 40 in the checkpoint, 24 here" in report.reinitialised[kv[0]]
    # Layer 1 cross-attends here but not in BLIP-2 (frequency 2): all of it stays fresh.
    layer1 = [k for k in after if k.startswith("qformer.encoder.layer.1.crossattention.")]
    assert layer1 and all("cross_attention_frequency" in report.reinitialised[k] for k in layer1)
    assert "language_projection.weight" in report.reinitialised
    for key in ("query_tokens", "qformer.layernorm.weight", "qformer.encoder.layer.0.crossattention.attention.query.weight",
                "qformer.encoder.layer.1.output_query.dense.weight"):
        assert key in report.loaded and torch.equal(after[key], ckpt[key])
    assert set(report.loaded).isdisjoint(report.reinitialised)
    assert set(report.loaded) | set(report.reinitialised) == set(after)
    assert any(k.startswith("qformer.encoder.layer.3.") for k in report.ignored)
    assert "re-initialised qformer.encoder.layer.0.crossattention.attention.key.weight" in caplog.text


def test_choose_which_layers_to_keep(blip2_dir):
    projector = qformer(EVA_WIDTH, num_hidden_layers=2, cross_attention_frequency=2)
    init_qformer_from_blip2(projector, blip2_dir, layers=[2, 3])
    ckpt = load_file(blip2_dir / "model.safetensors")
    state = projector.state_dict()
    for name in ("attention.attention.query.weight", "crossattention.attention.key.weight",
                 "output_query.LayerNorm.bias"):
        torch.testing.assert_close(state[f"qformer.encoder.layer.0.{name}"], ckpt[f"qformer.encoder.layer.2.{name}"])
    torch.testing.assert_close(state["qformer.encoder.layer.1.intermediate_query.dense.weight"],
                               ckpt["qformer.encoder.layer.3.intermediate_query.dense.weight"])


def test_more_queries_keep_fresh_query_tokens(blip2_dir):
    projector = qformer(EVA_WIDTH, num_hidden_layers=2, num_queries=16)
    report = init_qformer_from_blip2(projector, blip2_dir)
    assert report.reinitialised["query_tokens"] == "8 queries in the checkpoint, 16 here"


def test_bad_checkpoints(tmp_path, blip2_dir):
    with pytest.raises(ConfigError, match="has 4 Q-Former layers .* layers \\[5\\] do not exist"):
        init_qformer_from_blip2(qformer(EVA_WIDTH, num_hidden_layers=2), blip2_dir, layers=[0, 5])
    wide = build_projector("qformer", EVA_WIDTH, 24, {"hidden_size": 48, "num_attention_heads": 4,
                                                      "intermediate_size": 64, "num_hidden_layers": 1})
    with pytest.raises(ShapeError, match=r"qformer\.layernorm\.weight: checkpoint \(32,\) vs projector \(48,\)"):
        init_qformer_from_blip2(wide, blip2_dir)
    (tmp_path / "llava").mkdir()
    (tmp_path / "llava" / "config.json").write_text(
        '{"model_type": "llava", "architectures": ["LlavaForConditionalGeneration"]}')
    with pytest.raises(ConfigError, match=r"'llava' checkpoint \(LlavaForConditionalGeneration\); expected a BLIP-2"):
        init_qformer_from_blip2(qformer(EVA_WIDTH), tmp_path / "llava")


def test_pickle_only_blip2_refused_unless_allowed(tmp_path, blip2_dir):
    shutil.copytree(blip2_dir, tmp_path, dirs_exist_ok=True)
    torch.save(load_file(tmp_path / "model.safetensors"), tmp_path / "pytorch_model.bin")
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="only pickle weights.*--allow-pickle"):
        init_qformer_from_blip2(qformer(EVA_WIDTH, num_hidden_layers=2), tmp_path)
    report = init_qformer_from_blip2(qformer(EVA_WIDTH, num_hidden_layers=2), tmp_path, allow_pickle=True)
    assert "query_tokens" in report.loaded


def test_trainer_initialises_a_fresh_qformer_run_from_blip2(blip2_dir):
    from deco.config import load_config
    from deco.train.setup import model_for_stage

    options = {**QFORMER, "num_queries": 8, "num_hidden_layers": 2, "cross_attention_frequency": 2,
               "blip2_checkpoint": str(blip2_dir), "blip2_layers": [2, 3]}
    config = load_config("configs/tiny.yaml", ["projector.name=qformer", f"projector.options={options}"])
    model, _ = model_for_stage(config)
    blip2 = load_file(str(next(blip2_dir.glob("*.safetensors"))))
    ours = model.projector.state_dict()
    # Layer 2 of the checkpoint became layer 0; its self-attention (width-independent) loaded as is.
    torch.testing.assert_close(ours["qformer.encoder.layer.0.attention.attention.query.weight"],
                               blip2["qformer.encoder.layer.2.attention.attention.query.weight"])
    torch.testing.assert_close(ours["query_tokens"], blip2["query_tokens"])
