"""Commands import only what they use: config errors and `deco config` / `deco data check` load no torch.

Each command runs in a fresh interpreter that writes `sys.modules` to a file when it exits, and the test
reads that list (a module list, not a timing: timings are for benchmarks/startup/startup_times.py).
`python -X importtime` would miss modules loaded through importlib.import_module, as lazy exports are.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
# Modules whose import costs seconds: torch itself, and transformers' modelling code (which pulls torch).
MODELLING = ("torch", "transformers.modeling_utils", "transformers.models.")
# Runs `python -m deco ARGS` in-process and records every module imported, however the command exits.
_RUNNER = """
import atexit, json, runpy, sys
out, sys.argv = sys.argv[1], ["deco", *sys.argv[2:]]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
runpy.run_module("deco", run_name="__main__", alter_sys=True)
"""


def run_deco(*args: str, cwd: Path) -> tuple[int, str, set[str]]:
    """Run `python -m deco ARGS` in `cwd`; return (exit code, stderr, the modules it imported)."""
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    listing = cwd / "modules.json"
    proc = subprocess.run([sys.executable, "-c", _RUNNER, str(listing), *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)
    return proc.returncode, proc.stderr, set(json.loads(listing.read_text(encoding="utf-8")))


def heavy(modules: set[str], prefixes: tuple[str, ...] = MODELLING) -> list[str]:
    """The imported modules that are, or are under, one of `prefixes`."""
    return sorted(m for m in modules if any(m == p.rstrip(".") or m.startswith(p.rstrip(".") + ".") for p in prefixes))


def test_help_imports_neither_torch_nor_transformers(tmp_path: Path) -> None:
    code, _, modules = run_deco("--help", cwd=tmp_path)
    assert code == 0
    assert heavy(modules, ("torch", "transformers", "accelerate")) == []


def test_config_validates_a_recipe_without_torch_or_transformers(tmp_path: Path) -> None:
    code, err, modules = run_deco("config", "tiny", cwd=tmp_path)
    assert code == 0, err
    assert "deco.projectors.options.pooling" in modules  # the tiny recipe's projector options were checked
    assert heavy(modules, ("torch", "transformers")) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["config", "tiny", "train.lrr=1"], "did you mean 'train.lr'"),
        (["train", "tiny", "train.lrr=1"], "did you mean 'train.lr'"),
        (["train", "tiny", "projector.name=decoo"], "Did you mean 'deco'"),
        (["train", "tiny", "projector.options.grid=0"], "'grid' must be two positive ints"),
        (["train", "tiny", "train.global_batch_size=5"], "not divisible by per_device_batch_size"),
        (["train", "no-such-recipe"], "no-such-recipe"),
        (["info", "tiny", "vision.anyres.enabled=true", "vision.anyres.layouts=[2x9]"], "more than"),
        (["info", "tiny", "projector.name=deco3d", "vision.anyres.enabled=true"], "takes videos"),
        # TokenPacker reads 4 layers; the tiny encoder has 2: the depth is known without building it.
        (["config", "tiny", "projector.name=tokenpacker"], "out of range"),
        (["eval", "--model", "nowhere", "--out", "x.jsonl", "--config", "bad.yaml"], "did you mean 'eval.batch_size'"),
    ],
)
def test_config_errors_are_reported_before_torch_is_imported(args: list[str], message: str,
                                                             tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("base: tiny\neval: {batch_sizee: 4}\n", encoding="utf-8")
    code, err, modules = run_deco(*args, cwd=tmp_path)
    assert code == 2, err
    assert message in err
    assert heavy(modules) == [], err


def test_data_check_imports_no_modelling_code_and_no_transformers(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8), "red").save(tmp_path / "a.png")
    records = [{"id": str(i), "image": "a.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "Red."}]} for i in range(3)]
    (tmp_path / "train.json").write_text(json.dumps(records), encoding="utf-8")
    code, err, modules = run_deco("data", "check", "train.json", "--images", ".", "--workers", "1", cwd=tmp_path)
    assert code == 0, err
    assert "deco.data.check" in modules
    # It needs no tokenizer: `<image>` is a constant (deco.model.tokens), so not even transformers loads.
    assert heavy(modules, ("torch", "transformers", "tokenizers")) == []


# --- the torch-free layer tells the same story as the torch modules --------------------------------


def test_every_projector_module_takes_the_options_class_the_registry_names() -> None:
    from deco.projectors.registry import get_options_class, get_projector_class, projector_names

    for name in projector_names():
        options, module = get_options_class(name), get_projector_class(name)
        assert module.config_class is options, name
        assert module.supports_time == options.takes_video, name
        assert module.wants_multi_level == options.multi_level, name
        assert module.reference_layers == options.reference_layers, name
        assert dataclasses.is_dataclass(options)


def test_activation_names_match_the_torch_modules() -> None:
    from deco.projectors.mlp import _ACTIVATIONS
    from deco.projectors.options.base import ACTIVATIONS

    assert tuple(_ACTIVATIONS) == ACTIVATIONS


def test_default_encoder_depths_are_transformers_own() -> None:
    from transformers import CLIPVisionConfig, SiglipVisionConfig

    from deco.model.arch import DEFAULT_ENCODER_DEPTH, hf_encoder_depth

    expected = {"clip": CLIPVisionConfig().num_hidden_layers, "siglip": SiglipVisionConfig().num_hidden_layers}
    assert expected == DEFAULT_ENCODER_DEPTH
    assert hf_encoder_depth("clip", {"num_hidden_layers": 3}) == 3
