"""Whole training runs on the tiny config, in-process: run dir, stages, loss normalisation, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from deco.config import load_config
from deco.data import ConversationDataset
from deco.errors import ConfigError, DecoError
from deco.model import build_model, load_model
from deco.train import run_training
from deco.train.report.metrics import read_metrics
from deco.train.rundir.checkpoint import list_checkpoints
from deco.train.setup import build_dataset, model_for_stage

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def make_config(data, out, *extra):
    train_file, images = data
    return load_config("configs/tiny.yaml", [
        f"data.train_file={train_file}", f"data.image_folder={images}", f"train.output_dir={out}",
        "train.max_steps=4", "train.save_every=2", "train.keep_last=1", "train.quiet=true", *extra,
    ])


def losses(run_dir):
    return [r["loss"] for r in read_metrics(run_dir / "metrics.jsonl")]


@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory):
    """One stage-1 run shared by several tests (4 steps, global batch 4 = 2 x 2 accumulation)."""
    from conftest import write_llava_dataset

    root = tmp_path_factory.mktemp("stage1")
    data = write_llava_dataset(root / "data")
    out = root / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the torch_one_thread fixture (module scope runs before it)
    try:
        summary = run_training(make_config(data, out))
    finally:
        torch.set_num_threads(threads)
    return data, out, summary


def test_stage1_run_directory_holds_config_versions_metrics_checkpoints_and_final(stage1_run):
    data, out, summary = stage1_run
    assert summary["steps"] == 4 and summary["accum"] == 2 and summary["skipped_steps"] == 0
    assert load_config(out / "config.yaml").train.output_dir == str(out)
    versions = json.loads((out / "versions.json").read_text())
    assert {"torch", "transformers", "accelerate"} <= set(versions["libraries"]) and versions["python"]
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "samples_per_s", "skipped_steps"} <= set(records[0])
    assert records[0]["lr"] == 0.0 and records[1]["lr"] == pytest.approx(1e-3)  # warmup, then cosine
    assert [s for s, _ in list_checkpoints(out)] == [4]  # keep_last=1 pruned checkpoint-2
    ckpt = out / "checkpoint-4"
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "optimizer.safetensors", "projector.safetensors", "train_state.json", "trainable.safetensors"]
    assert all(k.startswith("projector.") for k in load_file(str(ckpt / "trainable.safetensors")))


def test_stage1_final_model_loads_with_trained_projector_and_untouched_llm(stage1_run):
    data, out, _ = stage1_run
    final = load_model(out / "final")
    from_run = load_model(out)  # the run folder stands for its final/, as on the command line
    assert all(torch.equal(a, b) for a, b in zip(from_run.state_dict().values(), final.state_dict().values(), strict=True))
    with pytest.raises(ConfigError, match="is not a saved deco model"):
        load_model(out / "checkpoint-4")
    projector = load_file(str(out / "checkpoint-4" / "projector.safetensors"))
    for k, v in final.projector.state_dict().items():
        assert torch.equal(v, projector[k])
    torch.manual_seed(42)  # the run's seed: the frozen parts must be exactly the initial ones
    fresh = build_model(make_config(data, out))
    for (k, a), b in zip(final.llm.state_dict().items(), fresh.llm.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert not all(torch.equal(a, b) for a, b in zip(final.projector.parameters(), fresh.projector.parameters(),
                                                     strict=True))


def test_loss_is_the_same_for_any_accumulation_split(stage1_run, tmp_path):
    data, out, _ = stage1_run
    reference = losses(out)
    for per_device in (4,):  # accumulation 1 against the run's 2 (DDP test: 2 processes)
        run = tmp_path / f"pd{per_device}"
        run_training(make_config(data, run, f"train.per_device_batch_size={per_device}"))
        assert losses(run) == pytest.approx(reference, abs=1e-6)


def test_stage2_starts_from_the_stage1_projector_and_trains_the_llm(stage1_run, tmp_path):
    data, out, _ = stage1_run
    cfg = make_config(data, tmp_path / "s2", "train.stage=2", "train.lr=2e-5", "data.template=vicuna_v1",
                      f"train.stage1_checkpoint={out / 'checkpoint-4'}", "train.max_steps=2")
    summary = run_training(cfg)
    assert summary["steps"] == 2
    trainable = load_file(str(tmp_path / "s2" / "checkpoint-2" / "trainable.safetensors"))
    assert any(k.startswith("llm.") for k in trainable) and any(k.startswith("projector.") for k in trainable)
    assert not any(k.startswith("vision_tower.") for k in trainable)
    final = load_model(tmp_path / "s2" / "final")
    torch.testing.assert_close(final.llm.state_dict()["lm_head.weight"], trainable["llm.lm_head.weight"])


def test_stage1_checkpoint_may_name_the_run_folder_its_final_or_a_checkpoint(stage1_run, tmp_path):
    from deco.train.setup import stage1_projector_file

    out = stage1_run[1]
    assert stage1_projector_file(str(out)) == out / "final" / "projector.safetensors"  # the run: its final/
    assert stage1_projector_file(str(out / "checkpoint-4")) == out / "checkpoint-4" / "projector.safetensors"
    unfinished = tmp_path / "unfinished"
    (unfinished / "checkpoint-2").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no final/: name one of its checkpoint-N/ folders"):
        stage1_projector_file(str(unfinished))


def test_stage2_without_a_stage1_checkpoint_is_config_error(stage1_run, tmp_path):
    with pytest.raises(ConfigError, match="stage1_checkpoint"):
        run_training(make_config(stage1_run[0], tmp_path / "x", "train.stage=2"))


def test_stage1_checkpoint_from_another_projector_or_shape_names_the_tensors(stage1_run, tmp_path):
    data, out, _ = stage1_run
    cfg = make_config(data, tmp_path / "x", "train.stage=2", f"train.stage1_checkpoint={out / 'final'}",
                      "projector.name=linear", "projector.options={}")
    with pytest.raises(ConfigError, match=r"does not fit projector 'linear': missing \['linear.bias'.*unexpected \['mlp.0.bias'"):
        run_training(cfg)
    state = load_file(str(out / "checkpoint-4" / "projector.safetensors"))
    name = sorted(state)[0]
    state[name] = torch.zeros(3, *state[name].shape[1:])
    save_file(state, str(tmp_path / "wrong.safetensors"))
    cfg = make_config(data, tmp_path / "y", "train.stage=2", f"train.stage1_checkpoint={tmp_path / 'wrong.safetensors'}")
    with pytest.raises(ConfigError, match=rf"shape mismatch.*{name}: file \(3,"):
        run_training(cfg)


def test_resume_refuses_a_changed_setting_and_a_fresh_run_refuses_a_used_directory(stage1_run):
    data, out, _ = stage1_run
    with pytest.raises(ConfigError, match="  train.global_batch_size: 4 -> 8"):
        run_training(make_config(data, out, "train.global_batch_size=8"), resume=True)
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        run_training(make_config(data, out))


class NaNImage(torch.utils.data.Dataset):
    """Wraps a dataset and poisons one sample's pixels with NaN."""

    def __init__(self, inner: ConversationDataset, bad_id: str) -> None:
        self.inner, self.bad_id = inner, bad_id

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i):
        sample = self.inner[i]
        if sample["sample_id"] == self.bad_id:
            sample["pixel_values"] = torch.full_like(sample["pixel_values"], float("nan"))
        return sample


def _poisoned(cfg, bad_id="img-5"):
    torch.manual_seed(0)
    return NaNImage(build_dataset(cfg, build_model(cfg)), bad_id)


def test_non_finite_loss_stops_naming_step_and_sample_and_writes_no_checkpoint(stage1_run, tmp_path):
    cfg = make_config(stage1_run[0], tmp_path / "nan", "train.max_steps=3", "train.save_every=1", "train.keep_last=10")
    with pytest.raises(DecoError, match=r"non-finite loss nan at step (\d+) .*'img-5'") as info:
        run_training(cfg, dataset=_poisoned(cfg))
    step = int(info.value.args[0].split("at step ")[1].split()[0])
    saved = [s for s, _ in list_checkpoints(tmp_path / "nan")]
    assert saved == list(range(1, step))  # every step before the bad one, nothing after
    for _, path in list_checkpoints(tmp_path / "nan"):
        assert all(torch.isfinite(t).all() for t in load_file(str(path / "trainable.safetensors")).values())


def test_non_finite_loss_can_be_skipped_and_counted(stage1_run, tmp_path):
    cfg = make_config(stage1_run[0], tmp_path / "skip", "train.max_steps=3", "train.on_nonfinite=skip")
    summary = run_training(cfg, dataset=_poisoned(cfg))
    assert summary["skipped_steps"] == 1 and summary["steps"] == 3
    assert read_metrics(tmp_path / "skip" / "metrics.jsonl")[-1]["skipped_steps"] == summary["skipped_steps"]
    final = load_file(str(tmp_path / "skip" / "final" / "projector.safetensors"))
    assert all(torch.isfinite(t).all() for t in final.values())


def test_bf16_model_trains_with_float32_master_weights_and_saves_in_bf16(stage1_run, tmp_path):
    cfg = make_config(stage1_run[0], tmp_path / "bf16", "model.dtype=bfloat16", "train.precision=bf16",
                      "train.max_steps=2")
    summary = run_training(cfg)
    assert summary["steps"] == 2
    trainable = load_file(str(tmp_path / "bf16" / "checkpoint-2" / "trainable.safetensors"))
    assert {t.dtype for t in trainable.values()} == {torch.float32}  # exact resume needs the masters
    final = load_model(tmp_path / "bf16" / "final")
    assert {p.dtype for p in final.parameters()} == {torch.bfloat16}
    torch.testing.assert_close(final.projector.state_dict()["mlp.0.weight"],
                               trainable["projector.mlp.0.weight"].bfloat16())


def test_gradient_checkpointing_gives_the_same_losses(stage1_run, tmp_path):
    data, out, _ = stage1_run
    cfg = make_config(data, tmp_path / "gc", "train.gradient_checkpointing=true")
    model, _ = model_for_stage(cfg)
    assert model.llm.model.gradient_checkpointing  # the flag reached the HF model
    run_training(cfg)
    assert losses(tmp_path / "gc") == pytest.approx(losses(out), abs=1e-6)


def test_progress_bar_shows_loss_and_lr(stage1_run, tmp_path, capsys):
    run_training(make_config(stage1_run[0], tmp_path / "bar", "train.quiet=false", "train.max_steps=2"))
    err = capsys.readouterr().err
    assert "train" in err and "loss" in err and "lr" in err and "2/2" in err


def test_stage2_lora_trains_adapters_only_and_saves_a_merged_model(stage1_run, tmp_path):
    pytest.importorskip("peft")
    data, out, _ = stage1_run
    cfg = make_config(data, tmp_path / "lora", "train.stage=2", "train.lr=1e-2", "data.template=vicuna_v1",
                      f"train.stage1_checkpoint={out / 'final'}", "train.max_steps=2",
                      "train.lora.enabled=true", "train.lora.rank=4", "train.lora.alpha=8",
                      "train.lora.target_modules=[q_proj, v_proj]")
    run_training(cfg)
    trainable = load_file(str(tmp_path / "lora" / "checkpoint-2" / "trainable.safetensors"))
    llm_keys = [k for k in trainable if k.startswith("llm.")]
    assert llm_keys and all(".lora_" in k for k in llm_keys)
    final = load_model(tmp_path / "lora" / "final")
    assert not any("lora" in n for n, _ in final.llm.named_parameters())
    torch.manual_seed(42)
    fresh = build_model(cfg)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(final.llm.state_dict()[q], fresh.llm.state_dict()[q])  # adapters merged in
    k = "model.layers.0.self_attn.k_proj.weight"
    assert torch.equal(final.llm.state_dict()[k], fresh.llm.state_dict()[k])  # not a LoRA target


def test_resume_from_a_named_checkpoint_and_a_missing_one(stage1_run):
    data, out, _ = stage1_run
    summary = run_training(make_config(data, out), resume=str(out / "checkpoint-4"))
    assert summary["resumed_from"] == str(out / "checkpoint-4") and summary["steps"] == 4
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3, 4]  # nothing re-logged
    with pytest.raises(ConfigError, match="resume checkpoint not found"):
        run_training(make_config(data, out), resume=str(out / "checkpoint-99"))
