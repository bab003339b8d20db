"""2-process CPU DDP (torchrun, gloo) trains on the same samples with the same losses as 1 process at
the same global batch: loss normalised by the step's global loss-token count, data laid out globally."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from deco.config import load_config
from deco.train import run_training
from deco.train.report.metrics import read_metrics

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_two_process_ddp_matches_one_process(tmp_path):
    from conftest import write_llava_dataset

    # Text-only samples leave the projector unused on a rank now and then (DDP must cope).
    train_file, images = write_llava_dataset(tmp_path / "data", n_images=12, n_text=4)
    common = [f"data.train_file={train_file}", f"data.image_folder={images}", "train.max_steps=4",
              "train.save_every=0", "train.quiet=true"]
    # Both runs on the CPU (gloo), also on a machine with a GPU: two processes cannot share one GPU
    # under NCCL, and CPU vs GPU arithmetic would differ by more than the 1e-6 compared here.
    cpu_only = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    one = tmp_path / "one"
    if torch.cuda.is_available():
        cmd = [sys.executable, "-m", "deco.cli", "train", "configs/tiny.yaml", *common, f"train.output_dir={one}",
               "train.per_device_batch_size=4"]
        assert subprocess.run(cmd, env=cpu_only, capture_output=True, timeout=300).returncode == 0
    else:
        run_training(load_config("configs/tiny.yaml", [*common, f"train.output_dir={one}",
                                                       "train.per_device_batch_size=4"]))  # 1 x 1 x 4
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "deco.cli", "train",
           "configs/tiny.yaml", *common, f"train.output_dir={two}", "train.per_device_batch_size=1"]  # 2 x 2 x 1
    done = subprocess.run(cmd, env=cpu_only, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 process(es) x 2 accumulation x 1" in done.stderr

    got, want = read_metrics(two / "metrics.jsonl"), read_metrics(one / "metrics.jsonl")
    assert [r["step"] for r in got] == [1, 2, 3, 4]
    assert [r["loss_tokens"] for r in got] == [r["loss_tokens"] for r in want]  # the same samples
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in want], abs=1e-6)
    a = load_file(str(two / "checkpoint-4" / "trainable.safetensors"))
    b = load_file(str(one / "checkpoint-4" / "trainable.safetensors"))
    for k in b:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)
