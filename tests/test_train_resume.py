"""Exact resume: a real `deco train` process killed with SIGKILL in the middle of writing a checkpoint,
then resumed with `--resume`, logs the same per-step losses, bit for bit, as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from deco.config import load_config
from deco.train import run_training
from deco.train.report.metrics import read_metrics
from deco.train.rundir.checkpoint import latest_checkpoint
from trust_helpers import assert_resumed_like_reference

# Runs `deco train` with one change: when it writes checkpoint-PAUSE_STEP's optimizer file (the
# checkpoint is then half-written, in its temp folder), it touches FLAG and sleeps until killed.
PAUSING_CLI = """
import os, sys, time
from pathlib import Path
import deco.train.rundir.snapshot as snapshot
flag, pause_step = Path(sys.argv[1]), sys.argv[2]
real_save = snapshot.save_tensors
def save_and_pause(tensors, path):
    real_save(tensors, path)
    if path.name == "optimizer.safetensors" and path.parent.name.startswith(f".tmp-checkpoint-{pause_step}-"):
        flag.write_text("paused")
        time.sleep(600)
snapshot.save_tensors = save_and_pause
from deco.cli import main
sys.argv = ["deco", *sys.argv[3:]]
main()
"""

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _children(pid: int) -> list[int]:
    """Live child processes of `pid` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()  # noqa: SIM115
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]  # noqa: SIM115
    except OSError:
        return False
    return state != "Z"


def _overrides(data, out):
    train_file, images = data
    return [f"data.train_file={train_file}", f"data.image_folder={images}", f"train.output_dir={out}",
            "train.max_steps=6", "train.save_every=2", "train.keep_last=2", "train.quiet=true",
            "train.per_device_batch_size=2"]  # 2 accumulation steps


def test_sigkill_during_a_checkpoint_save_then_resume_gives_identical_losses(llava_data, tmp_path):
    reference = tmp_path / "reference"
    run_training(load_config("configs/tiny.yaml", _overrides(llava_data, reference)))

    run = tmp_path / "killed"
    script, flag = tmp_path / "pausing_cli.py", tmp_path / "paused.flag"
    script.write_text(PAUSING_CLI)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}  # as torch_one_thread
    args = ["train", "configs/tiny.yaml", *_overrides(llava_data, run), "data.num_workers=1"]
    proc = subprocess.Popen([sys.executable, str(script), str(flag), "4", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not flag.exists():
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.monotonic() < deadline, "the run never reached the checkpoint at step 4"
        time.sleep(0.05)
    workers = _children(proc.pid)
    assert workers, "the run should load with its worker process"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    # Its loader workers die with it, rather than linger holding the run's files (lock, stdout).
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers)

    # Killed half-way through writing checkpoint-4: the latest checkpoint is still the complete step 2.
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2, 3, 4]
    assert latest_checkpoint(run) == run / "checkpoint-2"
    assert not (run / "checkpoint-4").exists() and list(run.glob(".tmp-checkpoint-4-*"))

    done = subprocess.run([sys.executable, "-m", "deco.cli", *args, "--resume"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming at step 2" in done.stderr

    assert_resumed_like_reference(run, reference)  # bit for bit
    assert not list(run.glob(".tmp-*"))  # the stale temp folder was cleaned up
