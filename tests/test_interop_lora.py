"""LoRA (PEFT) on the LLM in stage 2: what trains, adapter checkpoints, merge-and-save, resume, QLoRA checks."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from deco.config import LoRASection, load_config
from deco.errors import ConfigError
from deco.interop import apply_lora, export_hf_llava, has_lora, load_lora, merge_lora, save_lora
from deco.interop.lora import lora_state_dict, require_qlora_support
from deco.model import build_model, load_model, save_model
from deco.train.step.freeze import apply_stage

peft = pytest.importorskip("peft")

LORA = LoRASection(enabled=True, rank=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"])


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # PEFT calls a renamed transformers method
        yield


def stage2_model(lora=LORA, projector="mlp"):
    config = load_config("configs/tiny.yaml", ["train.stage=2", f"projector.name={projector}", "projector.options={}"])
    torch.manual_seed(0)
    model = build_model(config)
    apply_stage(model, config.train)
    return apply_lora(model, lora)


def batch(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    text = torch.randint(3, 200, (2, 8), generator=generator)
    ids = torch.cat([text[:, :2], torch.full((2, model.num_image_tokens), model.image_token_id), text[:, 2:]], 1)
    labels = ids.masked_fill(ids == model.image_token_id, -100)
    return {"input_ids": ids, "labels": labels, "pixel_values": torch.randn(2, 3, 48, 48, generator=generator)}


def train_step(model, optimizer, seed):
    model.train()
    loss = model(**batch(model, seed)).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return float(loss.detach())


def logits(model):
    model.eval()
    with torch.no_grad():
        b = batch(model, seed=99)
        return model(input_ids=b["input_ids"], pixel_values=b["pixel_values"]).logits


def test_only_adapters_and_projector_train():
    model = stage2_model()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n or n.startswith("projector.") for n in trainable)
    assert any(n.startswith("projector.") for n in trainable)
    lora_layers = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable if ".lora_" in n}
    assert lora_layers == {"q_proj", "v_proj", "down_proj"}
    counts = model.component_parameters()
    assert counts["vision_tower"][1] == 0 and 0 < counts["llm"][1] < counts["llm"][0] // 4


def test_adapters_change_outputs_and_round_trip_through_safetensors(tmp_path):
    model = stage2_model()
    start = logits(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    train_step(model, optimizer, 0)
    trained = logits(model)
    assert not torch.allclose(start, trained)
    save_lora(model, tmp_path / "lora")
    assert sorted(p.name for p in (tmp_path / "lora").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    other = stage2_model()
    other.projector.load_state_dict(model.projector.state_dict())
    load_lora(other, tmp_path / "lora")
    torch.testing.assert_close(logits(other), trained)
    # The folder is PEFT's own format: PeftModel.from_pretrained reads it onto a plain LLM.
    base = stage2_model().llm.merge_and_unload()  # a plain LLM (untrained adapters merge to nothing)
    wrapped = peft.PeftModel.from_pretrained(base, str(tmp_path / "lora"))
    loaded = peft.get_peft_model_state_dict(wrapped)
    for k, v in lora_state_dict(model).items():
        torch.testing.assert_close(loaded[k], v)


def test_merge_gives_plain_weights_that_save_and_export(tmp_path):
    model = stage2_model()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    train_step(model, optimizer, 0)
    expected = logits(model)
    with pytest.raises(ConfigError, match="merge_lora"):
        export_hf_llava(model, tmp_path / "hf")
    merge_lora(model)
    assert not has_lora(model) and type(model.llm).__name__ == "LlamaForCausalLM"
    assert not any("lora" in k for k in model.llm.state_dict())
    torch.testing.assert_close(logits(model), expected, atol=1e-5, rtol=0)
    save_model(model, tmp_path / "saved")
    torch.testing.assert_close(logits(load_model(tmp_path / "saved")), expected, atol=1e-5, rtol=0)
    export_hf_llava(model, tmp_path / "hf")
    assert merge_lora(model) is model  # merging twice is a no-op


def test_resume_continues_exactly(tmp_path):
    model = stage2_model()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    train_step(model, optimizer, 0)
    # Checkpoint: adapters + projector + optimizer state, as a training loop would write them.
    save_lora(model, tmp_path / "ckpt")
    projector_state = {k: v.clone() for k, v in model.projector.state_dict().items()}
    optimizer_state = copy.deepcopy(optimizer.state_dict())  # state_dict() shares the live tensors
    train_step(model, optimizer, 1)
    continuous = logits(model)

    resumed = stage2_model()  # same setup order: build, apply_stage, apply_lora, then load
    resumed.projector.load_state_dict(projector_state)
    load_lora(resumed, tmp_path / "ckpt")
    resumed_optimizer = torch.optim.AdamW([p for p in resumed.parameters() if p.requires_grad], lr=1e-2)
    resumed_optimizer.load_state_dict(optimizer_state)
    train_step(resumed, resumed_optimizer, 1)
    torch.testing.assert_close(logits(resumed), continuous)


def test_bad_lora_settings_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"target_modules \['qkv'\] match no linear layer.*q_proj"):
        stage2_model(LoRASection(target_modules=["q_proj", "qkv"]))
    with pytest.raises(ConfigError, match="rank and alpha must be positive"):
        stage2_model(LoRASection(rank=0))
    model = stage2_model()
    with pytest.raises(ConfigError, match="already has LoRA"):
        apply_lora(model, LORA)
    save_lora(model, tmp_path / "r4")
    other = stage2_model(LoRASection(rank=8, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"]))
    with pytest.raises(ConfigError, match=r"does not fit.*shape mismatch \[.*lora_A.weight: file \(4, 64\)"):
        load_lora(other, tmp_path / "r4")
    plain = build_model(load_config("configs/tiny.yaml"))
    with pytest.raises(ConfigError, match="call apply_lora"):
        load_lora(plain, tmp_path / "r4")


def test_qlora_needs_bitsandbytes_and_cuda():
    try:
        import bitsandbytes  # noqa: F401

        have_bnb = True
    except ImportError:
        have_bnb = False
    if have_bnb and torch.cuda.is_available():
        pytest.skip("QLoRA is available here; the refusal path cannot be exercised")
    with pytest.raises(ConfigError, match="bitsandbytes" if not have_bnb else "CUDA GPU"):
        require_qlora_support()
    with pytest.raises(ConfigError, match="quantize_4bit"):
        stage2_model(LoRASection(quantize_4bit=True, target_modules=["q_proj"]))


def test_qlora_request_without_gpu_or_bitsandbytes_is_a_clear_config_error():
    from deco.config import load_config
    from deco.errors import ConfigError
    from deco.model import build_model

    config = load_config("configs/tiny.yaml", ["train.lora.enabled=true", "train.lora.quantize_4bit=true"])
    with pytest.raises(ConfigError, match="QLoRA|4-bit"):
        build_model(config)
