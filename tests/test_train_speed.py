"""The fast paths of the training step: chunked cross-entropy, AdamW implementations (and exact resume
with each), the data loader's worker rule, the data-wait metric, and train.compile."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from deco.config import DataSection, load_config
from deco.data import IGNORE_INDEX
from deco.errors import ConfigError
from deco.train import run_training
from deco.train.loading.loader import auto_workers, loader_settings
from deco.train.report.metrics import read_metrics
from deco.train.step.loss import summed_token_loss
from deco.train.step.optim import adamw, adamw_kind

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _reference_loss(logits, labels):
    return F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")


@pytest.mark.parametrize("chunk", [1, 5, 4096])
def test_chunked_cross_entropy_equals_the_plain_one_with_gradients(chunk):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 11, (3, 7), generator=g)
    labels[0, :4] = IGNORE_INDEX
    labels[2, -1] = IGNORE_INDEX
    ref = _reference_loss(logits, labels)
    (ref_grad,) = torch.autograd.grad(ref * 0.7, logits)
    got = summed_token_loss(logits, labels, chunk=chunk)
    (got_grad,) = torch.autograd.grad(got * 0.7, logits)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    assert torch.allclose(got_grad, ref_grad, atol=1e-6)


def test_chunked_cross_entropy_on_bf16_logits_computes_in_float32_and_returns_bf16_gradients():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 9, 300, generator=g).to(torch.bfloat16).requires_grad_(True)
    labels = torch.randint(0, 300, (2, 9), generator=g)
    got = summed_token_loss(logits, labels, chunk=4)
    got.backward()
    ref = _reference_loss(logits.detach().float(), labels)
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)
    assert logits.grad.dtype == torch.bfloat16 and torch.isfinite(logits.grad).all()


def test_auto_workers_rule():
    # GPU: the host's cores decode, one stays with the training process, split between local ranks.
    assert auto_workers("cuda", cores=16, threads=16) == 8
    assert auto_workers("cuda", cores=16, threads=16, processes=4) == 3
    assert auto_workers("cuda", cores=2, threads=2) == 1
    # CPU: the cores the compute threads leave free (deco's commands default to one thread).
    assert auto_workers("cpu", cores=2, threads=2) == 0
    assert auto_workers("cpu", cores=2, threads=1) == 1
    assert auto_workers("cpu", cores=16, threads=8) == 8
    assert auto_workers("cpu", cores=8, threads=4, processes=2) == 0
    assert auto_workers("cpu", cores=64, threads=1) == 8


def test_loader_settings_pin_on_cuda_prefetch_two_steps_and_refuse_bad_counts():
    cuda = loader_settings(DataSection(num_workers=2), torch.device("cuda"), accum=8)
    assert cuda.pin_memory and cuda.persistent_workers and cuda.prefetch_factor == 8
    cpu = loader_settings(DataSection(num_workers=0), torch.device("cpu"), accum=8)
    assert not cpu.pin_memory and cpu.prefetch_factor is None and "in-process" in cpu.describe()
    with pytest.raises(ConfigError, match="data.num_workers must be 'auto' or a whole number >= 0, got -1"):
        loader_settings(DataSection(num_workers=-1), torch.device("cpu"), accum=1)
    with pytest.raises(ConfigError, match="'data.num_workers' = 'many' does not match"):
        load_config("configs/tiny.yaml", ["data.num_workers=many"])


def test_optimizer_choice_and_all_implementations_make_the_same_update():
    assert adamw_kind("auto", [torch.zeros(2)]) == "fused"
    with torch.device("meta"):
        meta = [torch.nn.Parameter(torch.zeros(2))]
    assert adamw_kind("auto", meta) == "foreach"
    with pytest.raises(ConfigError, match="no fused AdamW for parameters on \\['meta'\\]"):
        adamw_kind("fused", meta)
    with pytest.raises(ConfigError, match="train.optimizer must be one of"):
        adamw_kind("adam8bit", [torch.zeros(2)])
    results = []
    for kind in ("fused", "foreach", "for_loop"):
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(3))]
        opt = adamw([{"params": params, "weight_decay": 0.1}], 1e-2, kind)
        for step in range(3):
            for p in params:
                p.grad = torch.full_like(p, 0.5 + step)
            opt.step()
        results.append(torch.cat([p.detach().flatten() for p in params]))
    assert torch.allclose(results[0], results[1], atol=1e-6) and torch.allclose(results[1], results[2], atol=1e-6)


def _config(data, out, *extra):
    train_file, images = data
    return load_config("configs/tiny.yaml", [
        f"data.train_file={train_file}", f"data.image_folder={images}", f"train.output_dir={out}",
        "train.max_steps=4", "train.save_every=2", "train.keep_last=2", "train.quiet=true", *extra,
    ])


@pytest.mark.parametrize("optimizer", ["fused", "foreach"])
def test_resume_is_exact_with_each_adamw_implementation(llava_data, tmp_path, optimizer):
    # Stage 2 so the LLM's many tensors go through the multi-tensor / fused paths too.
    stage1 = tmp_path / "s1"
    run_training(_config(llava_data, stage1, "train.max_steps=1"))
    args = ["train.stage=2", f"train.stage1_checkpoint={stage1 / 'final'}", f"train.optimizer={optimizer}"]
    full = run_training(_config(llava_data, tmp_path / "full", *args))
    assert full["steps"] == 4
    # A second run picks up the full run's step-2 checkpoint (weights, AdamW moments, RNG, data position).
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-2", cut / "checkpoint-2")
    resumed = run_training(_config(llava_data, cut, *args), resume=True)
    assert resumed["resumed_from"] == str(cut / "checkpoint-2")
    want = [r["loss"] for r in read_metrics(tmp_path / "full" / "metrics.jsonl") if "loss" in r]
    got = [r["loss"] for r in read_metrics(cut / "metrics.jsonl") if "loss" in r]
    assert got == want[2:]  # bit for bit


def test_metrics_log_the_fraction_of_step_time_spent_waiting_for_data(llava_data, tmp_path):
    run_training(_config(llava_data, tmp_path / "run", "train.max_steps=2", "data.num_workers=1"))
    records = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert len(records) == 2 and all(0.0 <= r["data_wait_fraction"] < 1.0 for r in records)


# Inductor generates and compiles C++ for the tiny model: ~1 minute on 2 cores.
@pytest.mark.slow
def test_compile_gives_the_same_losses_within_1e_4(llava_data, tmp_path):
    plain = run_training(_config(llava_data, tmp_path / "plain", "train.max_steps=3"))
    compiled = run_training(_config(llava_data, tmp_path / "compiled", "train.max_steps=3", "train.compile=true"))
    assert plain["steps"] == compiled["steps"] == 3
    want = [r["loss"] for r in read_metrics(tmp_path / "plain" / "metrics.jsonl") if "loss" in r]
    got = [r["loss"] for r in read_metrics(tmp_path / "compiled" / "metrics.jsonl") if "loss" in r]
    assert got == pytest.approx(want, abs=1e-4)
