"""Ctrl-C during `deco demo`: one line saying what stopped and how to start again, exit status 130, no traceback,
no queued job started afterwards, and no `--resume` advice (the demo has none)."""

from __future__ import annotations

import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from deco.train.rundir.stopping import TrainingStopped
from test_demo import TINY


def _nested(dotted: dict[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in dotted.items():
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})  # type: ignore[assignment]
        node[last] = value  # type: ignore[index]
    return out


def test_a_stopped_training_run_survives_the_trip_to_its_parent_process():
    stopped = pickle.loads(pickle.dumps(TrainingStopped(signal.SIGTERM, 5, 10, Path("run/checkpoint-5"))))
    assert (stopped.signum, stopped.step, stopped.total, stopped.checkpoint) == (15, 5, 10, Path("run/checkpoint-5"))
    assert stopped.status == 143 and "after step 5 of 10" in str(stopped)


def test_ctrl_c_stops_the_demo_with_one_line_and_starts_no_queued_job(tmp_path):
    settings = _nested({**TINY, "train.stage2_steps": 400})  # long enough to be interrupted mid-training
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    out, log = tmp_path / "out", tmp_path / "log.txt"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w", encoding="utf-8") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "deco", "demo", "--config", str(tmp_path / "demo.yaml"), "--projectors",
             "mlp,deco,qformer", "--workers", "1", "--out", str(out), "--cache-dir", str(tmp_path / "cache")],
            stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)  # its own group, like a terminal
        try:
            deadline = time.monotonic() + 600
            while not re.search(r"mlp \(seed 0\): .*stage 2", log.read_text(encoding="utf-8")):  # training
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text(encoding="utf-8")
                time.sleep(0.5)
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends: every process of the group
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text(encoding="utf-8")
    assert proc.returncode == 130, text
    assert "deco demo stopped by SIGINT after 0 of 3 jobs" in text and "run the same command again" in text, text
    assert "Traceback" not in text and "continue with the same command and --resume" not in text, text
    runs = out / "runs" / "seed0"
    assert sorted(p.name for p in runs.iterdir()) == ["mlp"], "a queued job started after the stop"
