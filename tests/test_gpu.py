"""GPU-only checks: the same code on CUDA gives CPU's answers, and training runs there in bf16.

CI has no GPU, so the whole module is skipped there; run it on a GPU machine with
`pytest tests/test_gpu.py -m gpu`. Results of the last run are recorded in benchmarks/gpu/.
"""

from __future__ import annotations

import pytest
import torch

from deco.config import load_config
from deco.model import build_model, load_model
from deco.projectors import build_projector, projector_names

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

# The contract test's tiny options (3x3 output on a 6x6 grid); imported, not copied.
from test_projectors_contract import DL, DV, TINY  # noqa: E402


@pytest.mark.parametrize("name", projector_names())
def test_projector_on_cuda_matches_cpu(name):
    torch.manual_seed(0)
    cpu = build_projector(name, DV, DL, TINY[name]).eval()
    gpu = build_projector(name, DV, DL, TINY[name]).eval()
    gpu.load_state_dict(cpu.state_dict())
    gpu.cuda()
    x = torch.randn(2, 36, DV)
    with torch.no_grad():
        want = cpu(x, (6, 6))
        got_fp32 = gpu(x.cuda(), (6, 6)).cpu()
        # bf16 weights (fp32 where the projector asks for it) and bf16 inputs, as training in bf16 runs them.
        gpu.to(torch.float32 if gpu.keeps_fp32 else torch.bfloat16)
        got_bf16 = gpu(x.cuda().to(next(gpu.parameters()).dtype), (6, 6)).float().cpu()
    # TF32 may be on for CUDA matmuls: fp32 agrees to ~1e-3 relative, bf16 to its 8 mantissa bits.
    scale = want.abs().max().item() + 1e-6
    assert (got_fp32 - want).abs().max().item() / scale < 5e-3, name
    assert (got_bf16 - want).abs().max().item() / scale < 6e-2, name


def test_tiny_model_forward_and_greedy_generation_match_cpu():
    cfg = load_config("configs/tiny.yaml")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    ids = torch.tensor([[1] + [model.image_token_id] * model.num_image_tokens + [65, 66, 67]])
    pixels = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        want = model(input_ids=ids, pixel_values=pixels).logits
        want_gen = model.generate(ids, pixel_values=pixels, max_new_tokens=8, do_sample=False)
        model.cuda()
        got = model(input_ids=ids.cuda(), pixel_values=pixels.cuda()).logits.cpu()
        got_gen = model.generate(ids.cuda(), pixel_values=pixels.cuda(), max_new_tokens=8, do_sample=False).cpu()
    assert (got - want).abs().max().item() < 1e-3 * (want.abs().max().item() + 1)
    assert torch.equal(got_gen, want_gen)


def test_training_in_bf16_on_cuda_runs_and_saves_a_cpu_loadable_model(tmp_path):
    from conftest import write_llava_dataset
    from deco.train import run_training
    from deco.train.report.metrics import read_metrics

    train_file, images = write_llava_dataset(tmp_path / "data")
    out = tmp_path / "run"
    cfg = load_config("configs/tiny.yaml", [
        f"data.train_file={train_file}", f"data.image_folder={images}", f"train.output_dir={out}",
        "train.max_steps=6", "train.save_every=3", "train.quiet=true", "train.precision=bf16",
    ])
    summary = run_training(cfg)
    assert summary["steps"] == 6
    losses = [r["loss"] for r in read_metrics(out / "metrics.jsonl")]
    assert len(losses) == 6 and all(torch.isfinite(torch.tensor(losses)))
    assert torch.cuda.max_memory_allocated() > 0  # the run used the GPU, not the CPU
    reloaded = load_model(out / "final")
    assert next(reloaded.parameters()).device.type == "cpu"
