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
            f"error: refused to unpickle weights from '{pickled_model / 'llm' / 'pytorch_model.bin'}': Unsupported "
            "global: GLOBAL exec was "
            "not an allowed global by default; only plain tensors are unpickled, even with --allow-pickle (convert "
            "the weights to safetensors)"
        )
        assert "Traceback" not in err
    assert not marker.exists()


@pytest.mark.parametrize("steer", [{"use_safetensors": False}, {"transformers_weights": "adapter_model.bin"}])
def test_a_folder_config_json_cannot_turn_unpickling_on(pickled_model, capsys, steer):
    """HF lets a folder's own config.json take `use_safetensors` (or name a pickle as its weights file):
    deco still unpickles only with the caller's --allow-pickle, and then says which file it unpickles."""
    llm = pickled_model / "llm"
    if "transformers_weights" in steer:
        (llm / "pytorch_model.bin").rename(llm / "adapter_model.bin")
    config = json.loads((llm / "config.json").read_text())
    (llm / "config.json").write_text(json.dumps({**config, **steer}))
    ask = ["chat", "--model", pickled_model, "--prompt", "hi", "--max-new-tokens", "2", "--template", "plain"]
    code, _, err = run_deco(ask, capsys)
    assert code == 2, err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and "--allow-pickle" in line
    code, _, err = run_deco([*ask, "--allow-pickle"], capsys)
    assert code == 0, err
    weights = llm / ("adapter_model.bin" if "transformers_weights" in steer else "pytorch_model.bin")
    assert f"unpickling '{weights}' (--allow-pickle: plain tensors only)" in err


def test_an_hf_format_folder_with_a_bad_pickle_is_one_line(saved_tiny_model, tmp_path, capsys):
    from deco.interop.export import export_model

    out = tmp_path / "hf"
    export_model(saved_tiny_model, out, "hf", template="plain")
    (weights,) = out.glob("*.safetensors")
    torch.save({"x": _Payload(str(tmp_path / "ran"))}, out / "pytorch_model.bin")
    weights.unlink()
    ask = ["chat", "--model", out, "--prompt", "hi", "--max-new-tokens", "2", "--template", "plain"]
    code, _, err = run_deco(ask, capsys)
    assert code == 2 and "Traceback" not in err
    code, _, err = run_deco([*ask, "--allow-pickle"], capsys)
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"error: refused to unpickle weights from '{out / 'pytorch_model.bin'}'")
    assert f"unpickling '{out / 'pytorch_model.bin'}'" in err
    assert not (tmp_path / "ran").exists()
