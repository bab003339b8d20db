"""Training building blocks: stage freezing, optimizer groups and schedule, batch layout, checkpoint
files, RNG state, metrics file, summed loss."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from transformers import (
    get_constant_schedule_with_warmup,
    get_cosine_schedule_with_warmup,
    get_linear_schedule_with_warmup,
)

from deco.config import TrainSection, load_config
from deco.errors import ConfigError, DataError, DecoError
from deco.model import build_model
from deco.train.loading.batches import BatchPlan, StepBatchSampler
from deco.train.report.metrics import MetricsWriter, read_metrics
from deco.train.rundir.checkpoint import (
    STATE_FILE,
    atomic_directory,
    flatten_optimizer_state,
    latest_checkpoint,
    list_checkpoints,
    prune_checkpoints,
    save_tensors,
    unflatten_optimizer_state,
)
from deco.train.rundir.state import capture_rng, restore_rng
from deco.train.step.freeze import apply_stage, describe_trainable
from deco.train.step.loss import count_loss_tokens, summed_token_loss
from deco.train.step.optim import build_optimizer, build_scheduler, param_groups


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model(load_config("configs/tiny.yaml"))


# ---- stage -> trainable --------------------------------------------------------------------------

def test_stage1_trains_projector_only_and_logs_counts(tiny):
    counts = apply_stage(tiny, TrainSection(stage=1))
    assert counts["projector"][1] == counts["projector"][0] > 0
    assert counts["llm"][1] == 0 and counts["vision_tower"][1] == 0
    lines = "\n".join(describe_trainable(counts, 1))
    assert f"{counts['llm'][0]:,}" in lines and "frozen" in lines and "stage 1" in lines


def test_stage2_trains_projector_and_llm_vision_only_if_asked(tiny):
    counts = apply_stage(tiny, TrainSection(stage=2))
    assert counts["llm"][1] == counts["llm"][0] and counts["projector"][1] == counts["projector"][0]
    assert counts["vision_tower"][1] == 0
    counts = apply_stage(tiny, TrainSection(stage=2, train_vision=True))
    assert counts["vision_tower"][1] == counts["vision_tower"][0] > 0
    apply_stage(tiny, TrainSection(stage=1))  # back to stage 1 for the other tests


# ---- optimizer and schedule ----------------------------------------------------------------------

def test_param_groups_split_decay_and_projector_lr(tiny):
    train = TrainSection(stage=2, lr=2e-5, projector_lr=1e-3, weight_decay=0.1)
    apply_stage(tiny, train)
    groups = {g["name"]: g for g in param_groups(tiny, train)}
    assert set(groups) == {"projector", "projector.no_decay", "llm", "llm.no_decay"}
    assert groups["projector"]["lr"] == 1e-3 and groups["llm"]["lr"] == 2e-5
    assert groups["llm.no_decay"]["weight_decay"] == 0.0 and groups["llm"]["weight_decay"] == 0.1
    assert all(p.ndim < 2 for g in groups.values() if g["name"].endswith("no_decay") for p in g["params"])
    assert all(p.ndim >= 2 for g in groups.values() if not g["name"].endswith("no_decay") for p in g["params"])
    n_trainable = sum(p.numel() for p in tiny.parameters() if p.requires_grad)
    assert sum(p.numel() for g in groups.values() for p in g["params"]) == n_trainable
    apply_stage(tiny, TrainSection(stage=1))


@pytest.mark.parametrize("kind,hf", [("cosine", get_cosine_schedule_with_warmup),
                                     ("linear", get_linear_schedule_with_warmup),
                                     ("constant", get_constant_schedule_with_warmup)])
def test_schedule_matches_hf(kind, hf):
    total, ratio = 37, 0.1
    p = torch.nn.Parameter(torch.zeros(2))
    mine = build_scheduler(torch.optim.AdamW([p], lr=1.0), total, TrainSection(warmup_ratio=ratio, lr_schedule=kind))
    opt = torch.optim.AdamW([p], lr=1.0)
    args = (opt, 4) if kind == "constant" else (opt, 4, total)  # HF: ceil(0.1 * 37) = 4 warmup steps
    ref = hf(*args)
    for _ in range(total):
        assert mine.get_last_lr()[0] == pytest.approx(ref.get_last_lr()[0], abs=1e-12)
        mine.optimizer.step()
        opt.step()
        mine.step()
        ref.step()


def test_no_trainable_parameters_is_config_error(tiny):
    for p in tiny.parameters():
        p.requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        build_optimizer(tiny, TrainSection())
    apply_stage(tiny, TrainSection(stage=1))


# ---- batch layout / data position ----------------------------------------------------------------

def _step_samples(plan: BatchPlan, epoch: int, step: int) -> list[int]:
    return sorted(i for r in range(plan.world_size) for mb in plan.micro_batches(epoch, step, r) for i in mb)


@pytest.mark.parametrize("lengths", [None, [5, -3, 7, 2, -9, 4, 6, -2, 8, 3, 1, -4, 9, 2, 5, 7, 3]])
def test_each_step_holds_the_same_samples_for_any_process_and_accumulation_split(lengths):
    n = 17
    plans = [BatchPlan(n, 8, p, w, seed=3, modality_lengths=lengths) for p, w in [(8, 1), (2, 1), (1, 2), (2, 2), (4, 2)]]
    assert [p.accum for p in plans] == [1, 4, 4, 2, 1]
    for epoch in range(2):
        for step in range(plans[0].steps_per_epoch):
            ref = sorted(plans[0].epoch_batches(epoch)[step])
            assert len(set(ref)) == 8
            for plan in plans[1:]:
                assert _step_samples(plan, epoch, step) == ref
    assert plans[0].epoch_batches(0) != plans[0].epoch_batches(1)  # reshuffled per epoch
    assert BatchPlan(n, 8, 8, 1, seed=3, modality_lengths=lengths).epoch_batches(1) == plans[0].epoch_batches(1)


def test_sampler_resumes_mid_epoch_at_the_same_micro_batches():
    plan = BatchPlan(20, 4, 1, 2, seed=0)  # 5 steps per epoch, accum 2
    full = list(StepBatchSampler(plan, rank=1, epoch=0, step_in_epoch=0, num_steps=8))
    assert len(full) == 16
    epoch, pos = 0, 0
    for _ in range(6):
        epoch, pos = plan.position_after(epoch, pos)
    assert (epoch, pos) == (1, 1)
    tail = list(StepBatchSampler(plan, rank=1, epoch=epoch, step_in_epoch=pos, num_steps=2))
    assert tail == full[12:]


def test_batch_plan_errors():
    with pytest.raises(ConfigError, match="not divisible"):
        BatchPlan(100, 10, 4, 1, seed=0)
    with pytest.raises(DataError, match="fewer than one global batch"):
        BatchPlan(3, 4, 2, 1, seed=0)


# ---- checkpoint files ------------------------------------------------------------------------------

def _fake_checkpoint(run, step):
    with atomic_directory(run / f"checkpoint-{step}") as tmp:
        (tmp / STATE_FILE).write_text(json.dumps({"state": {"step": step}}))
    return run / f"checkpoint-{step}"


def test_atomic_directory_leaves_nothing_when_interrupted(tmp_path):
    _fake_checkpoint(tmp_path, 2)
    with pytest.raises(KeyboardInterrupt), atomic_directory(tmp_path / "checkpoint-4") as tmp:
        (tmp / "trainable.safetensors").write_bytes(b"partial")
        raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-2"


def test_checkpoints_found_by_content_and_pruned_to_last_k(tmp_path):
    for step in (3, 10, 7):
        _fake_checkpoint(tmp_path, step)
    (tmp_path / "checkpoint-99").mkdir()  # no train_state.json: not a checkpoint
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3, 7, 10]
    assert [p.name for p in prune_checkpoints(tmp_path, 2)] == ["checkpoint-3"]
    assert [s for s, _ in list_checkpoints(tmp_path)] == [7, 10]
    _fake_checkpoint(tmp_path, 10)  # re-saving a step replaces it
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-10"


def test_non_finite_weights_are_never_written(tmp_path):
    with pytest.raises(DecoError, match="non-finite.*'b'"):
        save_tensors({"a": torch.ones(2), "b": torch.tensor([1.0, float("nan")])}, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_optimizer_state_round_trips_through_safetensors_and_json(tmp_path):
    from safetensors.torch import load_file, save_file

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    opt = torch.optim.AdamW([{"params": [model[0].weight], "name": "w"},
                             {"params": [model[0].bias, *model[1].parameters()], "name": "b", "weight_decay": 0.0}])
    model(torch.randn(5, 3)).pow(2).sum().backward()
    opt.step()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    tensors, meta = flatten_optimizer_state(get_optimizer_state_dict(model, opt))
    save_file(tensors, str(tmp_path / "o.safetensors"))
    meta = json.loads(json.dumps(meta))
    back = unflatten_optimizer_state(load_file(str(tmp_path / "o.safetensors")), meta)
    assert set(back["state"]) == {"0.weight", "0.bias", "1.weight", "1.bias"}
    torch.testing.assert_close(back["state"]["0.weight"]["exp_avg"], opt.state[model[0].weight]["exp_avg"])
    assert back["param_groups"][1]["name"] == "b" and back["param_groups"][0]["betas"] == (0.9, 0.999)


# ---- RNG state, metrics ----------------------------------------------------------------------------

def test_rng_state_round_trips_through_json():
    state = json.loads(json.dumps(capture_rng()))
    a = (random.random(), np.random.rand(), torch.rand(3))
    restore_rng(state)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_metrics_writer_drops_records_after_the_resumed_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    w = MetricsWriter(path)
    for step in range(1, 6):
        w.write({"step": step, "loss": float(step), "grad_norm": float("nan")})
    w.close()
    with path.open("a") as f:
        f.write('{"step": 6, "lo')  # torn line from a kill
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3, 4, 5]
    assert read_metrics(path)[0]["grad_norm"] == "nan"
    MetricsWriter(path, resume_step=3).close()
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]
    MetricsWriter(path).close()  # a fresh run starts a fresh file
    assert read_metrics(path) == []


# ---- loss normalisation ---------------------------------------------------------------------------

def test_summed_loss_divided_by_global_count_equals_one_big_batch():
    torch.manual_seed(0)
    logits = torch.randn(4, 9, 11)
    labels = torch.randint(0, 11, (4, 9))
    labels[0, 2:] = -100  # rows with very different numbers of loss tokens
    n = count_loss_tokens(labels)
    whole = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1))
    parts = [(0, 1), (1, 4)]  # micro-batches with 1 and 17 loss tokens
    split = sum(summed_token_loss(logits[a:b], labels[a:b]) for a, b in parts) / n
    torch.testing.assert_close(split, whole)
    # The per-micro-batch mean (what HF's loss gives each micro-batch), averaged, is not the same.
    means = [summed_token_loss(logits[a:b], labels[a:b]) / count_loss_tokens(labels[a:b]) for a, b in parts]
    assert abs(float(sum(means) / 2 - whole)) > 1e-2
