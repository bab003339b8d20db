"""One thread rule for every command: --threads, then DECO_THREADS, then OMP_NUM_THREADS, then 1."""

from __future__ import annotations

import subprocess
import sys

import pytest

from deco.errors import ConfigError
from deco.threads import DEFAULT_THREADS, thread_count


def test_order_of_sources(monkeypatch):
    monkeypatch.delenv("DECO_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert thread_count() == (DEFAULT_THREADS, "default")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert thread_count() == (3, "OMP_NUM_THREADS")
    monkeypatch.setenv("DECO_THREADS", "2")
    assert thread_count() == (2, "DECO_THREADS")
    assert thread_count(5) == (5, "--threads")


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5"])
def test_bad_counts_are_config_errors(monkeypatch, bad):
    monkeypatch.setenv("DECO_THREADS", bad)
    with pytest.raises(ConfigError, match="DECO_THREADS must be a whole number"):
        thread_count()


@pytest.mark.parametrize(("env", "expected"), [({}, DEFAULT_THREADS), ({"DECO_THREADS": "2"}, 2),
                                               ({"OMP_NUM_THREADS": "2"}, 2)])
def test_deco_commands_run_torch_with_the_rule(env, expected):
    # The entry point sets the rule before torch is imported, so torch itself starts with that count.
    code = ("import sys; sys.argv = ['deco', 'sample', '--help']\n"
            "from deco.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "import torch; print('threads', torch.get_num_threads())")
    clean = {k: v for k, v in __import__("os").environ.items() if k not in ("DECO_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                         check=True).stdout
    assert f"threads {expected}" in out


def test_bad_env_is_one_line_error():
    import os

    env = {**os.environ, "DECO_THREADS": "lots"}
    proc = subprocess.run([sys.executable, "-m", "deco.cli", "sample", "--help"], env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "DECO_THREADS must be a whole number" in proc.stderr
    assert "Traceback" not in proc.stderr
