"""`--model RUN_OR_PATH`: find and load a model from a run folder, a saved deco folder or an HF LLaVA folder,
and find the conversation template it was trained with."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import yaml

from deco.data.templates import get_template
from deco.errors import ConfigError
from deco.interop.chat_template import match_template
from deco.interop.checkpoint import describe_architecture, read_hf_config
from deco.model import DecoModel, load_model
from deco.model.builder import CONFIG_FILE
from deco.pickles import pickle_policy

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "vicuna_v1"


def locate_model(path: str | Path) -> tuple[Path, str]:
    """(folder, kind) for a saved deco model ('deco'), an HF LLaVA checkpoint ('hf-llava'), a transformers
    deco folder ('hf-deco'), or a run
    folder's `final/` model; a ConfigError says what was found instead."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"model not found: {path}")
    if (path / CONFIG_FILE).is_file():
        return path, "deco"
    if (path / "final" / CONFIG_FILE).is_file():  # a run folder (deco train writes final/)
        return path / "final", "deco"
    if (path / "config.json").is_file():
        config = read_hf_config(path)
        if config.get("model_type") == "llava":
            return path, "hf-llava"
        if config.get("model_type") == "deco":  # `deco export --format hf` / save_pretrained
            return path, "hf-deco"
        raise ConfigError(
            f"'{path}' is a {describe_architecture(config)} checkpoint; expected a saved deco model "
            f"({CONFIG_FILE}), a run folder with final/, or an HF LLaVA checkpoint (model_type 'llava')"
        )
    hint = ""
    if any(path.glob("checkpoint-*")):
        hint = " (its checkpoint-N/ folders hold training state, not a full model: finish the run to get final/)"
    raise ConfigError(
        f"'{path}' holds no model: expected {CONFIG_FILE} (a saved deco model), final/{CONFIG_FILE} "
        f"(a run folder) or config.json of an HF LLaVA checkpoint{hint}"
    )


def load_any_model(path: str | Path, allow_pickle: bool = False, dtype: str | None = None) -> DecoModel:
    """Load whatever `locate_model` finds, in eval mode (`dtype` applies to HF LLaVA folders; deco
    folders load in the dtype they were saved with)."""
    folder, kind = locate_model(path)
    with pickle_policy(allow_pickle):  # the caller's decision on every file read, whatever the folder says
        return _load(folder, kind, allow_pickle, dtype)


def _load(folder: Path, kind: str, allow_pickle: bool, dtype: str | None) -> DecoModel:
    if kind == "hf-llava":
        from deco.interop.llava_hf import import_llava_hf

        return import_llava_hf(folder, dtype=dtype, allow_pickle=allow_pickle)
    if kind == "hf-deco":
        from deco.interop.hf_model import DecoForConditionalGeneration

        return DecoForConditionalGeneration.from_pretrained(folder, use_safetensors=None if allow_pickle else True,
                                                            **({"dtype": dtype} if dtype else {})).deco.eval()
    return load_model(folder, allow_pickle=allow_pickle).eval()


@dataclass
class PromptStyle:
    """How prompts are written for a model: a deco template by name, or (failing that) its own Jinja template."""

    template: str | None
    jinja: str | None
    source: str

    def describe(self) -> str:
        """One line for the user: which template and where it came from."""
        what = f"template '{self.template}'" if self.template else "the model's own Jinja chat template"
        return f"{what} ({self.source})"


def _run_template(folder: Path) -> str | None:
    """data.template of the run that wrote `folder` (config.yaml beside or above it)."""
    for directory in (folder, folder.parent):
        file = directory / "config.yaml"
        if file.is_file():
            try:
                data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError:
                return None
            template = (data.get("data") or {}).get("template") if isinstance(data, dict) else None
            if isinstance(template, str):
                return template
    return None


def prompt_style(model: DecoModel, path: str | Path | None = None, override: str | None = None) -> PromptStyle:
    """The model's own template: `override`, else the tokenizer's chat template when it is a deco one,
    else the training run's data.template, else the tokenizer's Jinja template, else vicuna_v1."""
    if override:
        return PromptStyle(get_template(override).name, None, "chosen with --template")
    jinja = getattr(model.tokenizer, "chat_template", None)
    name = match_template(jinja)
    if name:
        return PromptStyle(name, None, "the tokenizer's chat template")
    if path is not None:
        folder = locate_model(path)[0]
        run = _run_template(folder)
        if run:
            return PromptStyle(get_template(run).name, None, f"data.template of the run in {folder.parent}")
    if jinja:
        return PromptStyle(None, jinja, "the tokenizer's chat template")
    log.warning("no template recorded with the model; using %s (choose one with --template)", DEFAULT_TEMPLATE)
    return PromptStyle(DEFAULT_TEMPLATE, None, "default: none recorded with the model")
