"""One writer per run: a second `deco train` on a run directory in use fails at once naming the first;
after the first is killed, its stale lock is named and taken over; `deco eval --out` likewise."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from deco.runlock import LOCK_NAME, FileLock, RunLocked, locked
from trust_helpers import run_deco, train_args

pytestmark = pytest.mark.usefixtures("torch_one_thread")

# `deco train` that, once its training loop starts (lock held, checkpoints none), touches FLAG and waits.
HOLDING_CLI = """
import sys, time
from pathlib import Path
import deco.train.step.loop as loop
flag = Path(sys.argv[1])
def hold(self):
    flag.write_text("holding")
    time.sleep(600)
loop.Loop.run = hold
from deco.cli import main
sys.argv = ["deco", *sys.argv[2:]]
main()
"""


def test_second_train_fails_at_once_and_a_killed_holder_is_named(llava_data, tmp_path, capsys):
    run, flag, script = tmp_path / "run", tmp_path / "holding.flag", tmp_path / "holding_cli.py"
    script.write_text(HOLDING_CLI)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(flag), *train_args(llava_data, run)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not flag.exists():
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the first run never started its loop"
            time.sleep(0.05)
        started = time.monotonic()
        code, _, err = run_deco(train_args(llava_data, run, "train.seed=1"), capsys)
        assert code == 2
        assert f"error: train.output_dir {run} is in use by another process: pid {proc.pid} on host" in err
        assert "stage 1: trainable" not in err  # refused before building anything
        assert time.monotonic() - started < 10
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()

    assert (run / LOCK_NAME).is_file()  # SIGKILL: no clean-up, the file stays, but the OS lock is gone
    code, _, err = run_deco(train_args(llava_data, run), capsys)
    assert code == 0, err
    assert f"had a stale lock from a process that is gone: pid {proc.pid} on host" in err
    assert not (run / LOCK_NAME).exists()  # a clean exit removes it


def test_eval_out_is_locked(saved_tiny_model, tmp_path, capsys):
    out = tmp_path / "preds.jsonl"
    out.touch()
    with locked(out.with_name("preds.jsonl.lock"), "--out", "test holder"):
        code, _, err = run_deco(["eval", "--model", saved_tiny_model, "--benchmark", "gqa", "--data",
                                 tmp_path / "missing.json", "--out", out], capsys)
    assert code == 2
    assert f"error: --out {out} is in use by another process: pid {os.getpid()}" in err and "(test holder)" in err


def test_lock_is_exclusive_and_released(tmp_path):
    path = tmp_path / "x.lock"
    first = FileLock(path, "thing").acquire()
    with pytest.raises(RunLocked, match="thing is in use"):
        FileLock(path, "thing").acquire()
    first.release()
    again = FileLock(path, "thing").acquire()
    assert again.stale is None  # released cleanly: nothing stale
    again.release()
    assert not path.exists()


def test_a_forked_child_that_outlives_the_holder_does_not_keep_the_lock(tmp_path):
    # A DataLoader worker is a forked child: if the training process is killed, the worker may live on
    # for seconds. Its inherited copy of the lock must not keep the run locked.
    path = tmp_path / LOCK_NAME
    holder = subprocess.Popen([sys.executable, "-c", f"""
import os, sys, time
from deco.runlock import FileLock
lock = FileLock({str(path)!r}, "run").acquire()
if os.fork() == 0:  # the child: stays alive after the parent dies, as an orphaned worker would
    time.sleep(30)
    os._exit(0)
print("locked", flush=True)
time.sleep(30)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLocked):
            FileLock(path, "run").acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        lock = FileLock(path, "run").acquire()  # the child is still alive; the lock is free
        assert lock.stale is not None and lock.stale["pid"] == holder.pid
        lock.release()
    finally:
        holder.kill()
        subprocess.run(["pkill", "-f", str(path)], check=False)
