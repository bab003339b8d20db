"""Config: YAML + dotted overrides, typed, with errors that name the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deco.config import dump_config, load_config
from deco.errors import ConfigError

# Run configs (the Config schema). demo.yaml and demo-video.yaml hold `deco demo` settings, another schema, checked
# against the demo's built-in defaults in tests/test_demo_parts.py and tests/test_video_demo.py.
CONFIGS = sorted(p for p in Path("configs").glob("*.yaml") if not p.name.startswith("demo"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_bundled_config_loads(path):
    load_config(path)


def test_named_recipes_match_the_llava15_setting():
    for name, projector in [("mlp-576", "mlp"), ("deco-144", "deco"), ("qformer-144", "qformer"),
                            ("cabs-144", "cabstractor"), ("dabs-144", "dabstractor")]:
        stage1 = load_config(f"configs/llava15-{name}.yaml")
        stage2 = load_config(f"configs/llava15-{name}-stage2.yaml")
        assert stage1.projector.name == stage2.projector.name == projector
        assert (stage1.train.stage, stage1.train.lr, stage1.train.global_batch_size) == (1, 1e-3, 256)
        assert (stage2.train.stage, stage2.train.lr, stage2.train.global_batch_size) == (2, 2e-5, 128)
        assert stage1.data.template == "plain" and stage2.data.template == "vicuna_v1"
        assert stage2.train.stage1_checkpoint
        assert stage1.vision.feature_layer == -2 and stage1.train.warmup_ratio == 0.03


def test_overrides_are_typed():
    cfg = load_config("configs/tiny.yaml", ["train.lr=1e-3", "train.max_steps=7", "vision.freeze=false",
                                            "projector.options.grid=2x2"])
    assert cfg.train.lr == 1e-3 and cfg.train.max_steps == 7 and cfg.vision.freeze is False
    assert cfg.projector.options["grid"] == "2x2"


def test_switching_projector_drops_the_old_projectors_options():
    cfg = load_config("configs/tiny.yaml", ["projector.name=mlp", "projector.options.depth=3"])
    assert cfg.projector.options == {"depth": 3}


@pytest.mark.parametrize("override,message", [
    ("train.lrr=1", "unknown key 'train.lrr'"),
    ("trian.lr=1", "unknown key 'trian'"),
    ("train.lr=fast", "'train.lr' must be float"),
    ("train.max_steps=1.5", "'train.max_steps' must be int"),
    ("train.stage=3", "'train.stage' must be one of"),
    ("vision.freeze=maybe", "'vision.freeze' must be bool"),
    ("projector.name=qformr", "Did you mean 'qformer'"),
    ("projector.options.gird=3", "no option(s) 'gird'"),
    ("train.lr", "must look like section.key=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        load_config("configs/tiny.yaml", [override])
    assert message in str(info.value)


def test_bad_yaml_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml: invalid YAML"):
        load_config(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("train:\n  batch: 3\n")
    with pytest.raises(ConfigError, match=r"wrong.yaml.*unknown key 'train.batch'"):
        load_config(wrong)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_base_chain_and_loops(tmp_path):
    (tmp_path / "a.yaml").write_text("train: {lr: 0.5, seed: 3}\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\ntrain: {lr: 0.25}\n")
    cfg = load_config(tmp_path / "b.yaml")
    assert (cfg.train.lr, cfg.train.seed) == (0.25, 3)
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_config(tmp_path / "loop.yaml")


def test_dumped_config_reloads_identically(tmp_path):
    cfg = load_config("configs/llava15-deco-144-stage2.yaml", ["train.seed=7"])
    dump_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(tmp_path / "resolved.yaml")
    assert again == cfg
    assert yaml.safe_load((tmp_path / "resolved.yaml").read_text())["train"]["seed"] == 7
