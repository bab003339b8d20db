"""deco models as transformers models: Auto-class registration, save/from_pretrained round trips with
identical logits for every projector, generation, push_to_hub's folder (offline), model cards."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import deco  # noqa: F401  (registers model_type "deco")
from deco.config import load_config
from deco.interop.export import probe_inputs
from deco.interop.hf_model import DecoForConditionalGeneration, to_hf
from deco.model import build_model
from deco.projectors.registry import projector_names

pytestmark = pytest.mark.usefixtures("torch_one_thread")

# Overrides a projector needs on the tiny 2-layer encoder.
EXTRA = {"tokenpacker": ["vision.multi_level_layers=[1, 2, -2, -1]"]}


def tiny(name: str = "deco") -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(load_config("configs/tiny.yaml", [f"projector.name={name}", *EXTRA.get(name, [])])).eval()


def probe(model) -> dict[str, torch.Tensor]:
    batch = probe_inputs(model)
    if model.num_frames is not None:  # a video projector: one clip of its frame count
        size = model.vision_tower.image_size
        batch["pixel_values"] = torch.randn(1, model.num_frames, 3, size, size, generator=torch.Generator().manual_seed(1))
    return batch


@pytest.mark.parametrize("name", projector_names())
def test_every_projector_round_trips_through_auto_class_with_identical_logits(name: str, tmp_path: Path) -> None:
    from transformers import AutoModelForImageTextToText

    model = tiny(name)
    to_hf(model).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "deco" and config["deco"]["projector"]["name"] == name
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, DecoForConditionalGeneration) and loaded.deco.num_image_tokens == model.num_image_tokens
    batch = probe(model)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)


def test_generation_and_processor_come_back_with_the_tokenizer(tmp_path: Path) -> None:
    from transformers import AutoModel

    model = tiny()
    to_hf(model).save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    image = Image.new("RGB", (40, 30), (200, 30, 30))
    batch = model.processor()("USER: <image>\nWhat colour? ASSISTANT:", [image])
    again = loaded.processor()("USER: <image>\nWhat colour? ASSISTANT:", [image])
    assert torch.equal(batch["input_ids"], again["input_ids"])
    assert torch.equal(model.generate(**batch, max_new_tokens=5, do_sample=False),
                       loaded.generate(**again, max_new_tokens=5, do_sample=False))


def test_push_to_hub_uploads_the_save_pretrained_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No network: the Hub client is replaced by one that keeps a copy of the folder it is given."""
    from huggingface_hub import HfApi
    from transformers import AutoModelForImageTextToText

    uploaded = tmp_path / "uploaded"

    class Repo:
        repo_id = "someone/deco-tiny"

    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: Repo())

    def upload_folder(self, *, repo_id: str, folder_path: str, **kw):
        assert repo_id == "someone/deco-tiny"
        shutil.copytree(folder_path, uploaded)
        return "commit"

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    model = tiny("qformer")
    assert to_hf(model).push_to_hub("someone/deco-tiny") == "commit"
    files = {p.name for p in uploaded.iterdir()}
    assert {"config.json", "model.safetensors", "README.md", "tokenizer.json"} <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl"))]
    card = (uploaded / "README.md").read_text()
    assert "`qformer` projector" in card and "pipeline_tag: image-text-to-text" in card
    loaded = AutoModelForImageTextToText.from_pretrained(uploaded).eval()
    batch = probe(model)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)


@pytest.mark.parametrize("order", ["deco first", "transformers first"])
def test_import_deco_registers_the_auto_classes_in_either_order(order: str) -> None:
    imports = "import deco; import transformers" if order == "deco first" else "import transformers; import deco"
    code = (f"{imports}\nfrom transformers import AutoConfig, AutoModelForImageTextToText\n"
            "from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING as M\n"
            "c = AutoConfig.for_model('deco'); print(type(c).__name__, M[type(c)].__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["DecoVLMConfig", "DecoForConditionalGeneration"], out.stderr[-2000:]


def test_in_process_towers_are_refused_with_a_clear_error() -> None:
    from deco.errors import ConfigError

    model = tiny()
    model.vision_tower = torch.nn.Identity()  # stands in for an encoder transformers cannot rebuild
    with pytest.raises(ConfigError, match="--format deco"):
        to_hf(model)


def test_export_hf_from_a_run_writes_a_card_with_training_record_and_scores(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from deco.cli import app
    from deco.config import dump_config
    from deco.model import save_model

    run = tmp_path / "runs" / "tiny-qformer"
    model = tiny("qformer")
    save_model(model, run / "final")
    dump_config(load_config("configs/tiny.yaml", ["projector.name=qformer", "data.train_file=toy/train.json",
                                                  "data.template=vicuna_v1", "train.stage=2"]), run / "config.yaml")
    (run / "summary.json").write_text(json.dumps({"steps": 1500, "samples_seen": 6000, "tokens_seen": 123456}))
    (run / "results").mkdir()
    (run / "results" / "gqa.json").write_text(json.dumps({  # as `deco score --out` writes it
        "benchmark": "gqa", "scored": True, "main": {"metric": "accuracy", "value": 0.4321},
        "metrics": {"accuracy": 0.4321}, "counts": {"questions": 10, "scored": 10}}))
    (run / "results" / "notes.json").write_text("[1, 2]")  # not a score file: ignored
    out = tmp_path / "hf"
    result = CliRunner().invoke(app, ["export", "--model", str(run), "--format", "hf", "--out", str(out), "--verify"])
    assert result.exit_code == 0, result.output
    assert "at most 0" in result.output  # identical logits after reloading through transformers
    card = (out / "README.md").read_text()
    for fact in ("`qformer` projector", f"{model.num_image_tokens} visual tokens per image", "data `toy/train.json`",
                 "Steps: 1500", "| gqa | accuracy | 0.4321 | 10 | gqa.json |", "AutoModelForImageTextToText",
                 "Vision tower: clip built from a config with random weights"):
        assert fact in card, fact
    # the deco format gets the same card; hf-llava keeps refusing compressing projectors
    deco_out = tmp_path / "deco-folder"
    assert CliRunner().invoke(app, ["export", "--model", str(run), "--format", "deco", "--out", str(deco_out)]).exit_code == 0
    assert (deco_out / "README.md").read_text() == card
    refused = CliRunner().invoke(app, ["export", "--model", str(run), "--format", "hf-llava", "--out", str(tmp_path / "x")])
    assert refused.exit_code != 0
    # an HF deco folder is itself a --model for deco's commands
    from deco.interop.resolve import load_any_model

    again = load_any_model(out)
    batch = probe(model)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, again(**batch).logits)
