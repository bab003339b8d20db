"""Preemption (issue 26): a real `deco train` process sent SIGTERM mid-step (as SLURM, Kubernetes and spot
instances do) finishes the step, writes a checkpoint, releases its lock, says so in one line and exits
143; `--resume` then logs the same losses, bit for bit, as an uninterrupted run. A second signal exits
at once with the last checkpoint intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from deco.config import load_config
from deco.runlock import LOCK_NAME
from deco.train import run_training
from deco.train.report.metrics import read_metrics
from deco.train.rundir.checkpoint import latest_checkpoint
from trust_helpers import assert_resumed_like_reference

# `deco train` that, when step STEP starts, touches FLAG and then takes 3 s longer (so a signal sent on
# seeing the flag lands in the middle of that step).
SLOW_STEP_CLI = """
import sys, time
from pathlib import Path
import deco.train.step.loop as loop
flag, slow = Path(sys.argv[1]), int(sys.argv[2])
real_step = loop.Loop.step
def step(self, micro, start):
    if self.state.step + 1 == slow:
        flag.write_text("in step")
        time.sleep(3)
    return real_step(self, micro, start)
loop.Loop.step = step
from deco.cli import main
sys.argv = ["deco", *sys.argv[3:]]
main()
"""

pytestmark = pytest.mark.usefixtures("torch_one_thread")
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}  # as torch_one_thread


def _overrides(data, out):
    train_file, images = data
    return [f"data.train_file={train_file}", f"data.image_folder={images}", f"train.output_dir={out}",
            "train.max_steps=6", "train.save_every=2", "train.quiet=true",
            "train.per_device_batch_size=2"]  # 2 accumulation steps


def _start_slow_run(tmp_path, args, slow_step):
    script, flag = tmp_path / "slow_cli.py", tmp_path / "in-step.flag"
    script.write_text(SLOW_STEP_CLI)
    # Its own session: a signal to its process group reaches its loader worker too, as `scancel` or Ctrl-C does.
    proc = subprocess.Popen([sys.executable, str(script), str(flag), str(slow_step), *args], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 180
    while not flag.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the run never reached the slow step"
        time.sleep(0.02)
    return proc


def test_sigterm_mid_step_checkpoints_that_step_and_resume_is_bitwise(llava_data, tmp_path):
    reference = tmp_path / "reference"
    run_training(load_config("configs/tiny.yaml", _overrides(llava_data, reference)))

    run = tmp_path / "preempted"
    args = ["train", "configs/tiny.yaml", *_overrides(llava_data, run), "data.num_workers=1"]
    proc = _start_slow_run(tmp_path, args, slow_step=3)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM received: finishing the current step, then writing a checkpoint" in err
    assert err.strip().splitlines()[-1] == (
        f"stopped by SIGTERM after step 3 of 6: checkpoint written to {run / 'checkpoint-3'}, run lock released; "
        "continue with the same command and --resume")
    assert "Traceback" not in err
    assert latest_checkpoint(run) == run / "checkpoint-3"  # the step in progress was finished and saved
    assert not (run / LOCK_NAME).exists() and not (run / "final").exists()
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2, 3]

    done = subprocess.run([sys.executable, "-m", "deco.cli", *args, "--resume"], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming at step 3" in done.stderr
    assert_resumed_like_reference(run, reference)  # bit for bit


def test_a_second_sigint_stops_at_once_and_the_last_checkpoint_stays(llava_data, tmp_path):
    run = tmp_path / "run"
    args = ["train", "configs/tiny.yaml", *_overrides(llava_data, run)]
    proc = _start_slow_run(tmp_path, args, slow_step=3)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.3)
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT, err
    assert time.monotonic() - started < 2.5  # did not wait for the slow step to finish
    assert "second SIGINT: stopping now" in err and "Traceback" not in err
    assert latest_checkpoint(run) == run / "checkpoint-2"
    assert not (run / LOCK_NAME).exists() and not list(run.glob(".tmp-*"))


def _worker_body() -> None:
    import time as _time

    from deco.train.rundir.stopping import ignore_stop_signals

    ignore_stop_signals()
    _time.sleep(60)


def test_a_loader_worker_ignores_others_sigterm_but_ends_on_its_parents():
    """Workers survive a SIGTERM to the whole group (the training process stops them), but the parent's own
    Process.terminate() at exit must end them: a worker deaf to it held the interpreter at exit forever."""
    import multiprocessing
    import subprocess
    import time as _time

    worker = multiprocessing.get_context("fork").Process(target=_worker_body, daemon=True)
    worker.start()
    _time.sleep(1.0)  # let it install its handling
    subprocess.run(["kill", "-TERM", str(worker.pid)], check=True)  # sent by another process
    _time.sleep(0.5)
    assert worker.is_alive()
    worker.terminate()  # sent by the parent
    worker.join(10)
    assert not worker.is_alive() and worker.exitcode == -15
