"""The demo's cached assets: dataset (images + LLaVA JSON + tokenizer) and the pretrained encoder.

Each lives in a folder named by a hash of the settings that produce it, so a second run with the same
settings starts at once and a changed setting builds a new folder. A folder is built under a temp
name and renamed when complete: an interrupted build is never mistaken for a cached one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from deco.demo.core.settings import DemoSettings

# Bump when scenes, questions, tokenizer or encoder code change what they produce.
ASSET_VERSION = 3
# Bump when questions or answers change (dataset and text-pretrained LM), not the scenes' pixels: the
# encoder keeps its key.
QUESTION_VERSION = 4
DONE = "asset.json"


def default_cache_dir() -> Path:
    """$DECO_CACHE/demo, else $XDG_CACHE_HOME/deco/demo, else ~/.cache/deco/demo."""
    if os.environ.get("DECO_CACHE"):
        return Path(os.environ["DECO_CACHE"]) / "demo"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "deco" / "demo"


def _key(kind: str, parts: dict[str, Any], version: int = ASSET_VERSION) -> str:
    blob = json.dumps({"kind": kind, "version": version, **parts}, sort_keys=True)
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


@dataclass
class Assets:
    """Paths of the cached assets and what their builders reported."""

    data_dir: Path
    encoder_dir: Path
    tokenizer_dir: Path
    data_summary: dict[str, Any]
    encoder_report: dict[str, Any]
    built: list[str]
    lm_dir: Path | None = None  # the text-pretrained LM (image demo); None: the LM starts from random weights
    lm_report: dict[str, Any] | None = None

    @property
    def images(self) -> Path:
        """Image folder the JSON files' paths are relative to."""
        return self.data_dir / "images"


def _cached(
    root: Path, name: str, rebuild: bool, build: Callable[[Path], dict[str, Any]]
) -> tuple[Path, dict[str, Any], bool]:
    """Return (folder, report, built_now); build into a temp folder and rename when complete."""
    target = root / name
    if target.is_dir() and (target / DONE).is_file() and not rebuild:
        return target, json.loads((target / DONE).read_text(encoding="utf-8")), False
    tmp = root / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        report = build(tmp)
        (tmp / DONE).write_text(json.dumps(report, indent=1), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target, report, True


def data_builder(
    message: str,
    write_data: Callable[[Path], dict[str, Any]],
    write_tokenizer: Callable[[Path], object],
    status: Callable[[str], None],
) -> Callable[[Path], dict[str, Any]]:
    """The dataset step of `cached_assets`: say `message`, write the data and its tokenizer/ folder, return
    the data summary."""

    def build(folder: Path) -> dict[str, Any]:
        status(message)
        summary = write_data(folder)
        write_tokenizer(folder / "tokenizer")
        return summary

    return build


def cached_assets(
    root: Path,
    rebuild: bool,
    data_key: str,
    build_data: Callable[[Path], dict[str, Any]],
    encoder_key: str,
    build_encoder: Callable[[Path], dict[str, Any]],
) -> Assets:
    """The dataset (with its tokenizer/ folder) and the encoder, each from the cache or built now, in that
    order; `built` names what was built. Shared by the image and video demos."""
    data_dir, summary, fresh_data = _cached(root, data_key, rebuild, build_data)
    encoder_dir, report, fresh_encoder = _cached(root, encoder_key, rebuild, build_encoder)
    built = ["dataset"] * fresh_data + ["encoder"] * fresh_encoder
    return Assets(data_dir, encoder_dir, data_dir / "tokenizer", summary, report, built)


def encoder_inputs(settings: DemoSettings) -> dict[str, Any]:
    """What the encoder's pretraining reads: the training scenes it sees and its own settings. Questions,
    families and split sizes beyond those scenes do not change it, so changing them keeps the cached encoder
    (scenes are drawn in order from one stream: the first N are the same whatever train_images is)."""
    s = settings.scenes
    seen = {"image_size": s.image_size, "min_objects": s.min_objects, "max_objects": s.max_objects, "seed": s.seed,
            "images": min(s.train_images, settings.encoder.pretrain_images), "test_images": min(s.test_images, 100)}
    return {"scenes": seen, "encoder": asdict(settings.encoder)}


def prepare_assets(
    settings: DemoSettings,
    cache_dir: str | Path,
    rebuild: bool = False,
    status: Callable[[str], None] = lambda _: None,
    progress: Callable[[int, int], None] | None = None,
    lm_progress: Callable[[int, int], None] | None = None,
) -> Assets:
    """The assets of either kind, from the cache or built now: images get the dataset, encoder and
    text-pretrained LM (none when lm.pretrain_steps is 0), videos their dataset and frame encoder
    (deco.demo.video.data)."""
    if settings.kind == "video":
        from deco.demo.video.data import prepare_video_assets

        return prepare_video_assets(settings, cache_dir, rebuild, status, progress)
    from deco.demo.images.dataset import TEST, TRAIN, split_scenes, write_dataset
    from deco.demo.images.encoder import pretrain_encoder, save_encoder
    from deco.demo.images.vocab import build_demo_tokenizer

    root = Path(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    scenes = asdict(settings.scenes)

    build_data = data_builder(
        f"rendering {settings.scenes.train_images} training and {settings.scenes.test_images} test images",
        lambda folder: write_dataset(folder, settings.scenes), build_demo_tokenizer, status)

    def build_encoder(folder: Path) -> dict[str, Any]:
        status(f"pretraining the tiny ViT encoder ({settings.encoder.pretrain_steps} steps)")
        train = split_scenes(settings.scenes, TRAIN)[: settings.encoder.pretrain_images]
        test = split_scenes(settings.scenes, TEST)[:100]
        tower, report = pretrain_encoder(train, test, settings.scenes.image_size, settings.encoder, progress)
        save_encoder(tower, report, folder)
        return report

    assets = cached_assets(root, rebuild, _key("data", {"scenes": scenes, "questions": QUESTION_VERSION}), build_data,
                           _key("encoder", encoder_inputs(settings)), build_encoder)
    if settings.lm.pretrain_steps < 1:  # the LM starts from random weights
        return assets

    def build_lm(folder: Path) -> dict[str, Any]:
        from deco.demo.images.language import pretrain_language_model, save_language_model
        from deco.model.tokenizer import load_tokenizer

        status(f"pretraining the LM on the scenes' language, text only ({settings.lm.pretrain_steps} steps)")
        tokenizer = load_tokenizer(assets.tokenizer_dir)
        model, report = pretrain_language_model(
            split_scenes(settings.scenes, TRAIN), split_scenes(settings.scenes, TEST), tokenizer, settings.lm,
            settings.scenes, lm_progress or progress)
        save_language_model(model, tokenizer, report, folder)
        return report

    lm_key = _key("lm", {"scenes": scenes, "lm": asdict(settings.lm), "questions": QUESTION_VERSION})
    assets.lm_dir, assets.lm_report, fresh = _cached(root, lm_key, rebuild, build_lm)
    assets.built += ["language model"] * fresh
    return assets
