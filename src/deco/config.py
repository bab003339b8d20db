"""Typed, nested run configuration: YAML files plus dotted command-line overrides.

One config system for every command. Sections: model, vision, projector, llm, data, train, eval.
Unknown keys and wrong types are ConfigErrors that name the key and where it came from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from deco.errors import ConfigError
from deco.recipe_index import resolve_config_file


@dataclass
class ModelSection:
    """The multimodal model as a whole."""

    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    # A saved deco model (directory written by save_pretrained) to start from instead of building.
    load_from: str | None = None
    # Refuse pickle-only (.bin/.pt) HF checkpoints unless the files are trusted.
    allow_pickle: bool = False


@dataclass
class AnyResSection:
    """LLaVA-NeXT-style high resolution: each image as a global view plus tiles (deco.model.anyres)."""

    enabled: bool = False
    # Tile layouts an image may get, as "RxC" (rows x cols) or [rows, cols]; LLaVA-NeXT's pinpoints.
    layouts: list[Any] = field(default_factory=lambda: ["1x2", "2x1", "2x2", "1x3", "3x1"])
    # The most tiles one image may take (every layout must fit); bounds the tokens per image.
    max_tiles: int = 4
    # How the LLM tells tiles apart: a newline token after each row of the joined tile grid
    # (LLaVA-NeXT; grid-shaped projectors), or a separator token before each tile (any projector).
    layout_tokens: Literal["newline", "separator"] = "newline"


@dataclass
class VisionSection:
    """Vision encoder: an HF id/path, or an architecture plus config overrides (random init)."""

    pretrained: str | None = None
    arch: Literal["clip", "siglip"] = "clip"
    hf_config: dict[str, Any] = field(default_factory=dict)
    # LLaVA takes the penultimate layer's hidden states.
    feature_layer: int = -2
    # Hidden states concatenated (in this order, prefix tokens dropped like the main layer's) for
    # projectors that read several layers (TokenPacker); taken in the same encoder pass. None = the
    # projector's reference choice (TokenPacker: [12, 16, 22, 23] of CLIP-L). Must be unset otherwise.
    multi_level_layers: list[int] | None = None
    # LLaVA-1.5 pads images to a square with the mean colour before resizing ("pad" aspect mode).
    pad_to_square: bool = True
    freeze: bool = True
    anyres: AnyResSection = field(default_factory=AnyResSection)


@dataclass
class ProjectorSection:
    """Which projector (exact registry name) and its options (checked against its config class)."""

    name: str = "mlp"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class LLMSection:
    """Causal LM: an HF id/path, or an architecture plus config overrides (random init)."""

    pretrained: str | None = None
    arch: Literal["llama", "qwen2"] = "llama"
    hf_config: dict[str, Any] = field(default_factory=dict)
    # HF id/path of the tokenizer; defaults to `pretrained`. "byte-llama" / "byte-qwen" build a
    # byte-level tokenizer in-process (tests, offline runs).
    tokenizer: str | None = None
    attn_implementation: Literal["eager", "sdpa"] = "sdpa"


@dataclass
class DataSection:
    """Training data in LLaVA format."""

    train_file: str | None = None
    image_folder: str | None = None
    template: str = "plain"
    max_length: int = 2048
    on_bad_sample: Literal["error", "skip"] = "error"
    # Before step 1: "exists" checks every image file is there; "decode" decodes every image in
    # parallel (the `deco data check` pass), so a corrupt file cannot stop a run hours in.
    check_images: Literal["exists", "decode"] = "exists"
    # Image paths that resolve (symlinks followed) outside image_folder are refused unless set.
    allow_outside_image_folder: bool = False
    # What a resume compares images by (deco.train.rundir.fingerprint): "stat" (size + modification time, cheap)
    # or "content" (SHA-256 of every image: catches a file replaced with its time restored; costs a read
    # of every image at each start, benchmarks/data/fingerprint_cost.json).
    fingerprint: Literal["stat", "content"] = "stat"
    allow_multi_image: bool = False
    group_by_modality_length: bool = False
    # Where the tokenized index is cached (deco.data.index_cache): "auto" ($DECO_DATA_CACHE, else $DECO_CACHE/data,
    # else ~/.cache/deco/data), a folder, or null to tokenize at every start. Keyed by the data file's hash,
    # the image manifest, tokenizer, template, max_length and processor geometry, so it is never stale.
    cache_dir: str | None = "auto"
    # DataLoader worker processes; "auto": from the cores this process may use and its torch threads
    # (deco.train.loading.loader.auto_workers: on a CPU, the cores the threads leave free).
    num_workers: int | Literal["auto"] = "auto"
    # With 0 workers: read the next two optimizer steps' micro-batches on a background thread while
    # the step computes (deco.train.loading.prefetch); false loads each micro-batch on the training thread;
    # "auto": the thread on CUDA only (on a CPU it slowed the step: deco.train.loading.loader.use_thread).
    prefetch_thread: bool | Literal["auto"] = "auto"


@dataclass
class LoRASection:
    """LoRA on the LLM in stage 2 (PEFT). Off unless enabled; rank/alpha as LLaVA-1.5's LoRA recipe."""

    enabled: bool = False
    rank: int = 128
    alpha: int = 256
    dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    # QLoRA: load the LLM in 4 bit (needs bitsandbytes and a CUDA GPU).
    quantize_4bit: bool = False


@dataclass
class TrainSection:
    """The LLaVA-1.5 recipe (stage 1 defaults); stage 2 overrides lr, batch size and template."""

    stage: Literal[1, 2] = 1
    # Stage 2 starts from a stage-1 checkpoint named by path (never parsed from a directory name).
    stage1_checkpoint: str | None = None
    output_dir: str = "runs/default"
    seed: int = 42
    epochs: float = 1.0
    max_steps: int | None = None
    global_batch_size: int = 256
    per_device_batch_size: int = 16
    lr: float = 1e-3
    projector_lr: float | None = None
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    lr_schedule: Literal["cosine", "constant", "linear"] = "cosine"
    max_grad_norm: float = 1.0
    precision: Literal["fp32", "bf16", "fp16"] = "bf16"
    gradient_checkpointing: bool = False
    train_vision: bool = False
    log_every: int = 1
    # Every N optimizer steps, per-block gradient norms and weight/activation scales of the projector to
    # diagnostics.jsonl (deco.train.report.diagnostics); 0 = off. Reads only: the trajectory is unchanged.
    diagnostics_every: int = 0
    # Experiment trackers that get metrics.jsonl's records and the config (accelerate's: tensorboard,
    # wandb, mlflow, ...); offline unless configured otherwise (deco.train.report.tracking).
    report_to: list[str] = field(default_factory=list)
    tracker_project: str = "deco"
    save_every: int = 500
    keep_last: int = 2
    on_nonfinite: Literal["error", "skip"] = "error"
    # AdamW implementation: "auto" = fused where torch has it (CUDA, CPU), else foreach (multi-tensor).
    optimizer: Literal["auto", "fused", "foreach", "for_loop"] = "auto"
    # torch.compile the LLM and the projector (first steps slower while it compiles).
    compile: bool = False
    lora: LoRASection = field(default_factory=LoRASection)
    quiet: bool = False


@dataclass
class EvalSection:
    """Benchmark evaluation with greedy decoding."""

    benchmark: str | None = None
    data: str | None = None
    images: str | None = None
    batch_size: int = 8
    max_new_tokens: int = 128
    template: str = "vicuna_v1"
    # TextVQA: the "Reference OCR token:" line LLaVA-1.5's reported numbers were produced with.
    ocr: bool = True
    # Test splits without answers: where the evaluation server's submission file goes (None: beside
    # the predictions).
    submission: str | None = None
    # A training-free token reducer applied at inference, NAME:TOKENS per image (deco.reducers), e.g.
    # "visionzip:64"; None: the model as trained.
    reduce: str | None = None


@dataclass
class Config:
    """A whole run."""

    model: ModelSection = field(default_factory=ModelSection)
    vision: VisionSection = field(default_factory=VisionSection)
    projector: ProjectorSection = field(default_factory=ProjectorSection)
    llm: LLMSection = field(default_factory=LLMSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON friendly)."""
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Cross-field checks: projector options against its config class; AnyRes layouts against limits."""
        # Torch-free on purpose: every command validates its config before loading a model (seconds).
        from deco.projectors.registry import get_options_class, make_projector_config

        make_projector_config(self.projector.name, self.projector.options)
        from deco.reducers.registry import parse_reduce

        parse_reduce(self.eval.reduce, "'eval.reduce'")  # a bad reducer name or budget fails here
        anyres = self.vision.anyres
        if anyres.enabled and get_options_class(self.projector.name).takes_video:
            raise ConfigError(
                f"'vision.anyres.enabled': high-resolution tiles are for images, but projector "
                f"'{self.projector.name}' takes videos; turn AnyRes off or pick an image projector"
            )
        anyres.layouts = check_anyres_section(anyres)
        layers = resolve_multi_level_layers(self)
        if layers is not None and self.vision.pretrained is None:
            # A randomly initialised HF tower: its depth is known now, so a bad index names the file.
            from deco.model.arch import hf_encoder_depth

            where = f"the {self.vision.arch} encoder of 'vision.hf_config'"
            check_layer_indices(layers, hf_encoder_depth(self.vision.arch, self.vision.hf_config), where,
                                defaulted=self.vision.multi_level_layers is None)


def resolve_multi_level_layers(config: Config) -> list[int] | None:
    """The hidden states the projector reads besides the main layer, or None for single-level projectors.

    `vision.multi_level_layers`, else the projector's `reference_layers`; their count must equal the
    projector's `levels`. ConfigErrors name the key.
    """
    from deco.projectors.registry import get_options_class, make_projector_config

    key = "'vision.multi_level_layers'"
    cls = get_options_class(config.projector.name)
    layers = config.vision.multi_level_layers
    if not cls.multi_level:
        if layers is not None:
            raise ConfigError(
                f"{key} = {layers} is set but projector '{config.projector.name}' reads one feature layer "
                f"('vision.feature_layer'); remove it, or pick a multi-level projector such as tokenpacker"
            )
        return None
    levels = getattr(make_projector_config(config.projector.name, config.projector.options), "levels", 1)
    if layers is None:
        if cls.reference_layers is None or len(cls.reference_layers) != levels:
            raise ConfigError(
                f"{key} is unset and projector '{config.projector.name}' takes levels={levels} layers "
                f"(its reference layers are {list(cls.reference_layers or [])}); list {levels} hidden-state "
                f"indices, e.g. {[config.vision.feature_layer] * levels} to repeat the main layer"
            )
        return list(cls.reference_layers)
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in layers):
        raise ConfigError(f"{key} must be a list of hidden-state indices (ints), got {layers!r}")
    if len(layers) != levels:
        raise ConfigError(
            f"{key} lists {len(layers)} layer(s) {layers} but projector '{config.projector.name}' takes "
            f"'projector.options.levels' = {levels}; make the two agree"
        )
    return list(layers)


def check_layer_indices(layers: list[int], num_layers: int, where: str = "", defaulted: bool = False) -> None:
    """ConfigError naming 'vision.multi_level_layers' when an index is not a hidden state of the encoder."""
    n_states = num_layers + 1
    bad = [x for x in layers if not -n_states <= x < n_states]
    if bad:
        value = f"unset, so the projector's reference layers {layers}" if defaulted else f"{layers}"
        raise ConfigError(
            f"'vision.multi_level_layers' ({value}): {bad} out of range for {where or 'a vision encoder'} "
            f"with {num_layers} layers (hidden states: valid indices {-n_states}..{n_states - 1}, "
            f"0 = the embeddings); list {len(layers)} layers this encoder has"
        )


def check_anyres_section(section: AnyResSection) -> list[str]:
    """The section's layouts as canonical 'RxC' strings, or a ConfigError naming the key at fault."""
    from deco.model.layout import parse_layout

    if isinstance(section.max_tiles, bool) or section.max_tiles < 1:
        raise ConfigError(f"'vision.anyres.max_tiles' must be a positive int, got {section.max_tiles!r}")
    if not section.layouts:
        raise ConfigError("'vision.anyres.layouts' is empty: give at least one tile layout such as '2x2'")
    out = []
    for i, value in enumerate(section.layouts):
        rows, cols = parse_layout(value, f"'vision.anyres.layouts[{i}]'")
        if rows * cols > section.max_tiles:
            raise ConfigError(
                f"'vision.anyres.layouts[{i}]' = {rows}x{cols} has {rows * cols} tiles, more than "
                f"'vision.anyres.max_tiles' = {section.max_tiles}; drop the layout or raise max_tiles"
            )
        if f"{rows}x{cols}" in out:
            raise ConfigError(f"'vision.anyres.layouts[{i}]' = {rows}x{cols} is listed twice")
        out.append(f"{rows}x{cols}")
    return out


T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check `value` against annotation `tp`; returns the value (ints widen to floats)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: report X's own error
            return _coerce(value, options[0], key, source)
        for arg in options:
            try:
                return _coerce(value, arg, key, source)
            except ConfigError:
                continue
        raise ConfigError(f"{source}: '{key}' = {value!r} does not match {_type_name(tp)}")
    if origin is Literal:
        if value in args and type(value) is type(next(a for a in args if a == value)):
            return value
        raise ConfigError(f"{source}: '{key}' must be one of {list(args)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping, got {value!r}")
        return dataclass_from_dict(tp, value, source, prefix=f"{key}.")
    if origin in (dict,):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping, got {value!r}")
        return dict(value)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{key}' must be a list, got {value!r}")
        return list(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - annotation we do not use
        raise ConfigError(f"{source}: '{key}' has unsupported type {_type_name(tp)}")
    raise ConfigError(f"{source}: '{key}' must be {_type_name(tp)}, got {type(value).__name__} {value!r}")


def dataclass_from_dict(cls: type[T], data: dict[str, Any], source: str, prefix: str = "") -> T:
    """A config dataclass from a (nested) dict: unknown keys are errors with a did-you-mean, values are
    checked against the field types; `source` and `prefix` name where the dict came from in messages."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(names), n=1)
        hint = f"did you mean '{prefix}{close[0]}'? " if close else ""
        raise ConfigError(
            f"{source}: unknown key '{prefix}{unknown[0]}'; {hint}valid keys under "
            f"'{prefix.rstrip('.') or 'top level'}': {', '.join(sorted(names))}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{prefix}{k}", source) for k, v in data.items()}
    defaults = cls()  # type: ignore[call-arg]
    for k, v in kwargs.items():
        setattr(defaults, k, v)
    return defaults


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`update` over `base`, nested dicts merged key by key (neither input changes)."""
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.lr=1e-3' -> (['train', 'lr'], 0.001). Values are parsed as YAML scalars/lists."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override '{text}' has an empty key part")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': value is not valid YAML ({exc})") from None
    # YAML reads 1e-3 as a string (it wants 1.0e-3); numbers written either way are numbers here.
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value) if any(c in value for c in ".eE") else value
    return parts, value


def _nest(parts: list[str], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {parts[-1]: value}
    for p in reversed(parts[:-1]):
        out = {p: out}
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> Config:
    """Build and validate a Config from a nested dict."""
    config = dataclass_from_dict(Config, data, source)
    try:
        config.validate()
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return config


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (optional `base:` key naming a parent file), then apply overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_with_base(resolve_config_file(path), seen=set())  # a file, or a shipped recipe by name
    source = str(path) if path is not None else "<defaults>"
    for text in overrides or []:
        parts, value = parse_override(text)
        old_name = data.get("projector", {}).get("name", ProjectorSection.name)
        if parts == ["projector", "name"] and value != old_name:
            # Options belong to one projector; switching projectors starts from the new one's defaults.
            data = deep_merge(data, {"projector": {"options": None}})
            data["projector"]["options"] = {}
        data = deep_merge(data, _nest(parts, value))
    if overrides:
        source = f"{source} + overrides"
    return config_from_dict(data, source)


def _read_with_base(path: Path, seen: set[Path]) -> dict[str, Any]:
    """Read a YAML file whose optional `base` (a path or list of paths, relative to the file)
    names parent configs merged first, in order; the file's own keys win."""
    resolved = path.resolve()
    if resolved in seen:
        raise ConfigError(f"{path}: 'base' chain loops back to itself")
    data = read_yaml(path)
    bases = data.pop("base", None)
    if bases is None:
        return data
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: 'base' must be a path or a list of paths, got {bases!r}")
    merged: dict[str, Any] = {}
    for base in bases:
        # A base next to the file wins; otherwise a shipped recipe of that name (`base: llava15-base.yaml`).
        beside = path.parent / base
        parent = beside if beside.is_file() else resolve_config_file(base)
        merged = deep_merge(merged, _read_with_base(parent, seen | {resolved}))
    return deep_merge(merged, data)


def dump_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (every run directory gets one)."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
