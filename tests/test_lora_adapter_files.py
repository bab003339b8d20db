"""LoRA training runs write their adapters in PEFT's own format, and PEFT loads them."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from deco.config import load_config
from deco.model import build_model, load_model
from deco.train import run_training
from deco.train.rundir.state import seed_everything

peft = pytest.importorskip("peft")
pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_lora_checkpoint_and_final_hold_peft_adapters_that_peft_loads(tmp_path, llava_data):
    train_file, images = llava_data
    torch.manual_seed(0)
    stage1 = build_model(load_config("configs/tiny.yaml"))
    save_file({k: v.contiguous() for k, v in stage1.projector.state_dict().items()}, str(tmp_path / "proj.safetensors"))
    out = tmp_path / "run"
    config = load_config("configs/tiny.yaml", [
        f"data.train_file={train_file}", f"data.image_folder={images}", f"train.output_dir={out}",
        "train.stage=2", f"train.stage1_checkpoint={tmp_path / 'proj.safetensors'}", "data.template=vicuna_v1",
        "train.max_steps=2", "train.save_every=2", "train.lr=1e-2", "train.quiet=true",
        "train.lora.enabled=true", "train.lora.rank=4", "train.lora.alpha=8",
        "train.lora.target_modules=[q_proj, v_proj]",
    ])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # PEFT calls a renamed transformers method
        run_training(config)

        checkpoint = out / "checkpoint-2"
        adapter = load_file(str(checkpoint / "adapter_model.safetensors"))
        trainable = load_file(str(checkpoint / "trainable.safetensors"))
        assert adapter and all(".lora_A." in k or ".lora_B." in k for k in adapter)
        for key, value in adapter.items():  # PEFT's names drop the adapter name ("default")
            own = "llm." + key.replace(".lora_A.", ".lora_A.default.").replace(".lora_B.", ".lora_B.default.")
            assert torch.equal(value, trainable[own])
        settings = json.loads((checkpoint / "adapter_config.json").read_text())
        assert settings["peft_type"] == "LORA" and settings["r"] == 4
        assert sorted(settings["target_modules"]) == ["q_proj", "v_proj"]

        # final/ holds the merged model and the adapters from before the merge: PEFT on the run's base LLM
        # (rebuilt with the run's seed) merged gives final/llm exactly.
        seed_everything(config.train.seed)
        base = build_model(config).llm
        before = {k: v.clone() for k, v in base.state_dict().items()}
        merged = peft.PeftModel.from_pretrained(base, str(out / "final")).merge_and_unload()
        final = load_model(out / "final").llm.state_dict()
        got = merged.state_dict()
        assert any(not torch.equal(final[k], before[k]) for k in final if "q_proj" in k)  # training moved it
        for key, value in final.items():
            torch.testing.assert_close(got[key], value)


def test_a_lora_run_names_its_true_base_and_peft_follows_it(tmp_path, llava_data):
    """Issue 26: the adapters name the LLM they apply to (here one built from a config, so the run keeps it),
    PEFT loads them right by following only that, and loading them onto the merged LLM is refused."""
    from deco.errors import ConfigError
    from deco.interop import apply_lora, load_lora

    train_file, images = llava_data
    torch.manual_seed(0)
    stage1 = build_model(load_config("configs/tiny.yaml"))
    save_file({k: v.contiguous() for k, v in stage1.projector.state_dict().items()}, str(tmp_path / "proj.safetensors"))
    out = tmp_path / "run"
    lora = ["train.lora.enabled=true", "train.lora.rank=4", "train.lora.alpha=8", "train.lora.target_modules=[q_proj]"]
    config = load_config("configs/tiny.yaml", [
        f"data.train_file={train_file}", f"data.image_folder={images}", f"train.output_dir={out}",
        "train.stage=2", f"train.stage1_checkpoint={tmp_path / 'proj.safetensors'}", "data.template=vicuna_v1",
        "train.max_steps=2", "train.save_every=2", "train.lr=1e-2", "train.quiet=true", *lora,
    ])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # PEFT calls a renamed transformers method
        run_training(config)
        base = str((out / "base_llm").resolve())
        for folder in (out / "checkpoint-2", out / "final"):
            assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == base
        assert base in (out / "final" / "README.md").read_text()

        ids = torch.randint(3, 200, (2, 12), generator=torch.Generator().manual_seed(1))
        final = load_model(out / "final")
        want = final.llm(input_ids=ids).logits
        got = peft.AutoPeftModelForCausalLM.from_pretrained(str(out / "final")).eval()(input_ids=ids).logits
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)

        apply_lora(final, config.train.lora)  # the obvious mistake: the adapters onto the merged LLM
        with pytest.raises(ConfigError, match=f"already has LoRA adapters merged into it .*load them onto their base LLM, {base}"):
            load_lora(final, out / "final")
