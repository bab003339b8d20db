"""Model cards (README.md) for exported folders: what the model is, how it was trained, how it scored.

Facts come from the model itself (projector, tokens per image, vision tower, LLM), from its training run
when the export starts from one (`config.yaml` and `summary.json` of `runs/NAME`), and from `deco score
--out` result files that sit beside the model or run (in it, or in a `results/` or `eval/` folder there).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

SCORE_FOLDERS = ("", "results", "eval")


def run_dir_of(source: str | Path | None) -> Path | None:
    """The training run a model folder came from: `runs/x` for `runs/x` or `runs/x/final`, else None."""
    if source is None:
        return None
    path = Path(source)
    for candidate in (path, path.parent):
        if (candidate / "config.yaml").is_file() and (candidate / "final").is_dir():
            return candidate
    return None


def find_scores(folders: list[Path]) -> list[dict[str, Any]]:
    """`deco score` results (JSON with benchmark, scored, main) in the given folders and their results/, eval/."""
    found, seen = [], set()
    for folder in folders:
        for sub in SCORE_FOLDERS:
            place = folder / sub if sub else folder
            for file in sorted(place.glob("*.json")) if place.is_dir() else []:
                if file.resolve() in seen:
                    continue
                seen.add(file.resolve())
                try:
                    data = json.loads(file.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                if isinstance(data, dict) and data.get("scored") is True and isinstance(data.get("main"), dict):
                    found.append({"file": file.name, **data})
    return found


def _run_facts(run: Path | None) -> list[str]:
    if run is None:
        return ["- Not exported from a `deco train` run folder: no training record."]
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
    data, train = config.get("data", {}), config.get("train", {})
    summary_file = run / "summary.json"
    summary = json.loads(summary_file.read_text(encoding="utf-8")) if summary_file.is_file() else {}
    lines = [
        f"- Stage {train.get('stage')} (`deco train`), data `{data.get('train_file')}` "
        f"(template `{data.get('template')}`, max length {data.get('max_length')})",
        f"- Steps: {summary.get('steps', '?')} of global batch {train.get('global_batch_size')} "
        f"({summary.get('samples_seen', '?')} samples, {summary.get('tokens_seen', '?')} tokens), "
        f"lr {train.get('lr')} ({train.get('lr_schedule')}), precision {train.get('precision')}",
    ]
    if train.get("stage1_checkpoint"):
        lines.append(f"- Stage-1 projector from `{train['stage1_checkpoint']}`")
    if (train.get("lora") or {}).get("enabled"):
        lora = train["lora"]
        lines.append(f"- LoRA r={lora.get('rank')} alpha={lora.get('alpha')} on {lora.get('target_modules')}, "
                     "merged into these weights")
    return lines


def _component(section: dict[str, Any], kind: str) -> str:
    name = section.get("pretrained")
    return f"`{name}`" if name else f"{section.get('arch')} built from a config with random weights ({kind})"


def render_card(model: Any, source: str | Path | None = None) -> str:
    """README.md text for `model` (a DecoModel), exported from `source` (a run or model folder) if given."""
    sections = model.config or {}
    vision, projector, llm = (sections.get(k, {}) for k in ("vision", "projector", "llm"))
    geometry = model.vision_tower.geometry()
    counts = model.component_parameters()
    run = run_dir_of(source)
    if run is not None:  # a loaded model names its own vision/ and llm/ folders; the run names the originals
        recipe = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
        vision, llm = recipe.get("vision", vision), recipe.get("llm", llm)
    folders = [p for p in (Path(source) if source else None, run) if p is not None]
    scores = find_scores(folders)
    name = projector.get("name", model.projector.name)
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: image-text-to-text",
        f"tags: [deco, multimodal, {name}]",
        "---",
        "",
        f"# deco model: `{name}` projector, {model.num_image_tokens} visual tokens per image",
        "",
        "Trained and exported with deco (`pip install deco-vlm`), which implements DeCo (arXiv 2405.20985: "
        "adaptive average pooling of the visual tokens before an MLP) and the projectors it is compared with.",
        "",
        "## Model",
        "",
        f"- Projector: `{name}` with options {json.dumps(projector.get('options') or {})}, "
        f"{counts['projector'][0]:,} parameters",
        f"- Tokens per image: {model.num_image_tokens} (from a {geometry['grid'][0]}x{geometry['grid'][1]} patch grid"
        + (", AnyRes tiles add more per layout" if model.anyres is not None else "") + ")",
        f"- Vision tower: {_component(vision, 'vision')}, {geometry['image_size']} px, patch {geometry['patch_size']}, "
        f"hidden state {geometry['feature_layer']}, {counts['vision_tower'][0]:,} parameters",
        f"- LLM: {_component(llm, 'LLM')}, {counts['llm'][0]:,} parameters",
        "",
        "## Training",
        "",
        *_run_facts(run),
        "",
        "## Scores",
        "",
    ]
    if scores:
        lines += ["| benchmark | metric | value | questions scored | file |", "|---|---|---:|---:|---|"]
        for s in scores:
            main = s["main"]
            lines.append(f"| {s.get('benchmark')} | {main.get('metric')} | {main.get('value')} | "
                         f"{(s.get('counts') or {}).get('scored', '?')} | {s['file']} |")
    else:
        lines.append("No `deco score` results were found beside this model.")
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "import deco  # registers the model type with transformers' Auto classes",
        "from transformers import AutoModelForImageTextToText",
        "",
        'model = AutoModelForImageTextToText.from_pretrained("PATH_OR_REPO")',
        'batch = model.processor()("USER: <image>\\nWhat is shown? ASSISTANT:", [image])',
        "ids = model.generate(**batch, max_new_tokens=32)",
        "```",
        "",
    ]
    return "\n".join(lines)
