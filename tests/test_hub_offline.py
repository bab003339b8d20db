"""Without a network, loading by Hub id fails at once in one line (deco.hub)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from deco import hub
from deco.errors import ConfigError


@pytest.fixture(autouse=True)
def fresh_probe():
    hub.hub_reachable.cache_clear()
    yield
    hub.hub_reachable.cache_clear()


def test_hf_hub_offline_skips_the_probe_and_local_files_only_is_asked(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_connection(*args, **kwargs):
        raise AssertionError("probed the network although HF_HUB_OFFLINE is set")

    monkeypatch.setattr(socket, "create_connection", no_connection)
    assert not hub.hub_reachable()
    assert hub.hub_kwargs("someone/some-model") == {"local_files_only": True}
    assert hub.hub_kwargs(tmp_path) == {}  # a local folder is never a Hub lookup


def test_an_unreachable_hub_is_probed_once(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls = []

    def refused(*args, **kwargs):
        calls.append(args)
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refused)
    assert hub.hub_kwargs("a/b") == {"local_files_only": True} and hub.hub_kwargs("c/d") == {"local_files_only": True}
    assert len(calls) == 1


def test_a_tokenizer_by_hub_id_offline_is_one_line(monkeypatch):
    from deco.model.tokenizer import load_tokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as info:
        load_tokenizer("no-such-org/no-such-tokenizer")
    message = str(info.value)
    assert "\n" not in message and "HF_HUB_OFFLINE is set" in message
    assert message.startswith("cannot load a tokenizer from 'no-such-org/no-such-tokenizer': it is not in the local")


def test_deco_info_on_a_hub_recipe_offline_is_one_line_and_fast():
    env_cmd = [sys.executable, "-m", "deco", "info", "llava15-deco-144"]
    proc = subprocess.run(env_cmd, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: cannot load a vision encoder config from 'openai/clip-vit-large-patch14-336'")
    assert "Traceback" not in proc.stderr and "Check your internet connection" not in proc.stderr
