"""The caller decides about unpickling, never the model folder: `--allow-pickle` on the command, a folder's
own `allow_pickle` ignored, and a refused pickle is one clear line with exit status 2."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from trust_helpers import run_deco

pytestmark = pytest.mark.usefixtures("torch_one_thread")


class _Payload:
    """Unpickling this runs code (writes a marker file), which weights-only loading must refuse."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


@pytest.fixture
def pickled_model(saved_tiny_model, tmp_path):
    """The tiny saved model with its LLM weights as pytorch_model.bin and `allow_pickle: true` in its JSON."""
    folder = tmp_path / "model"
    shutil.copytree(saved_tiny_model, folder)
    weights = folder / "llm" / "model.safetensors"
    torch.save(load_file(str(weights)), folder / "llm" / "pytorch_model.bin")
    weights.unlink()
    meta = json.loads((folder / "deco_model.json").read_text())
    meta["sections"]["model"]["allow_pickle"] = True  # what a downloaded folder might say about itself
    (folder / "deco_model.json").write_text(json.dumps(meta))
    return folder


def test_folder_cannot_allow_pickle_the_caller_can(pickled_model, capsys):
    ask = ["chat", "--model", pickled_model, "--prompt", "hi", "--max-new-tokens", "2", "--template", "plain"]
    code, _, err = run_deco(ask, capsys)
    assert code == 2
    assert "pickle-only weights are refused; for trusted files pass --allow-pickle" in err
    code, out, err = run_deco([*ask, "--allow-pickle"], capsys)
    assert code == 0, err


def test_a_malicious_pickle_is_refused_in_one_line(pickled_model, tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    torch.save({"model.embed_tokens.weight": _Payload(str(marker))}, pickled_model / "llm" / "pytorch_model.bin")
    image = tmp_path / "x.png"
    Image.new("RGB", (16, 16)).save(image)
    for command in (["chat", "--prompt", "hi"], ["analyze", "--image", image, "--question", "q", "--out", tmp_path]):
        code, _, err = run_deco([command[0], "--model", pickled_model, *command[1:], "--allow-pickle"], capsys)
        assert code == 2, err
        assert err.strip().splitlines()[-1] == (
            f"error: refused to unpickle weights from '{pickled_model / 'llm'}': Unsupported global: GLOBAL exec was "
            "not an allowed global by default; only plain tensors are unpickled, even with --allow-pickle (convert "
            "the weights to safetensors)"
        )
        assert "Traceback" not in err
    assert not marker.exists()
