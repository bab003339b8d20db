"""The image kind's cached assets: the dataset (images + LLaVA JSON + tokenizer), the tiny ViT encoder
pretrained on per-patch labels, and the LM pretrained on the scenes' text (deco.demo.core.cache keeps each
in a folder named by a hash of the settings that produce it).

The encoder does not depend on the dataset or the text-pretrained LM, and each pretraining runs on one
thread: on a cold cache the encoder is built in a second process while this one writes the dataset and
pretrains the LM, so two cores work instead of one (`parallel=False` builds them one after another, for
comparison: benchmarks/app/cold_assets.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from deco.demo.core.cache import Assets, _cached, _key, data_builder, is_cached
from deco.demo.core.settings import DemoSettings
from deco.demo.core.spawned import SpawnedBuild

# Bump when scenes, questions, tokenizer or encoder code change what they produce.
ASSET_VERSION = 3
# Bump when questions or answers change (dataset and text-pretrained LM), not the scenes' pixels: the
# encoder keeps its key.
QUESTION_VERSION = 4


def encoder_builder(settings: DemoSettings, status: Callable[[str], None],
                    progress: Callable[[int, int], None] | None) -> Callable[[Path], dict[str, Any]]:
    """The encoder's build: pretrain the tiny ViT on per-patch scene labels and save it (module-level, so it
    can be handed to a spawned process)."""
    from deco.demo.images.dataset import TEST, TRAIN, split_scenes
    from deco.demo.images.encoder import pretrain_encoder, save_encoder

    def build(folder: Path) -> dict[str, Any]:
        status(f"pretraining the tiny ViT encoder ({settings.encoder.pretrain_steps} steps)")
        train = split_scenes(settings.scenes, TRAIN)[: settings.encoder.pretrain_images]
        test = split_scenes(settings.scenes, TEST)[:100]
        tower, report = pretrain_encoder(train, test, settings.scenes.image_size, settings.encoder, progress)
        save_encoder(tower, report, folder)
        return report

    return build


def encoder_inputs(settings: DemoSettings) -> dict[str, Any]:
    """What the encoder's pretraining reads: the training scenes it sees and its own settings. Questions,
    families and split sizes beyond those scenes do not change it, so changing them keeps the cached encoder
    (scenes are drawn in order from one stream: the first N are the same whatever train_images is)."""
    s = settings.scenes
    seen = {"image_size": s.image_size, "min_objects": s.min_objects, "max_objects": s.max_objects, "seed": s.seed,
            "images": min(s.train_images, settings.encoder.pretrain_images), "test_images": min(s.test_images, 100)}
    return {"scenes": seen, "encoder": asdict(settings.encoder)}


def image_keys(settings: DemoSettings) -> tuple[str, str, str]:
    """Cache folder names of the dataset, the encoder and the text-pretrained LM for these settings."""
    scenes = asdict(settings.scenes)
    return (_key("data", {"scenes": scenes, "questions": QUESTION_VERSION}, ASSET_VERSION),
            _key("encoder", encoder_inputs(settings), ASSET_VERSION),
            _key("lm", {"scenes": scenes, "lm": asdict(settings.lm), "questions": QUESTION_VERSION}, ASSET_VERSION))


def prepare_image_assets(
    settings: DemoSettings,
    cache_dir: str | Path,
    rebuild: bool = False,
    status: Callable[[str], None] = lambda _: None,
    progress: Callable[[int, int], None] | None = None,
    lm_progress: Callable[[int, int], None] | None = None,
    parallel: bool = True,
) -> Assets:
    """The dataset, encoder and text-pretrained LM (none when lm.pretrain_steps is 0), from the cache or built
    now; on a cold cache with `parallel`, the encoder in a second process."""
    from deco.demo.images.dataset import TEST, TRAIN, split_scenes, write_dataset
    from deco.demo.images.vocab import build_demo_tokenizer

    root = Path(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    data_key, encoder_key, lm_key = image_keys(settings)
    with_lm = settings.lm.pretrain_steps > 0  # else the LM starts from random weights

    build_data = data_builder(
        f"rendering {settings.scenes.train_images} training and {settings.scenes.test_images} test images",
        lambda folder: write_dataset(folder, settings.scenes), build_demo_tokenizer, status)
    build_encoder = encoder_builder(settings, status, progress)
    others_to_build = rebuild or not is_cached(root, data_key) or (with_lm and not is_cached(root, lm_key))
    encoder: SpawnedBuild | None = None
    if parallel and others_to_build and (rebuild or not is_cached(root, encoder_key)):
        status(f"pretraining the tiny ViT encoder ({settings.encoder.pretrain_steps} steps) in a second process, "
               "alongside the dataset and the LM")
        encoder = SpawnedBuild(encoder_builder, (settings,), root, encoder_key, rebuild, progress)
    try:
        data_dir, summary, fresh_data = _cached(root, data_key, rebuild, build_data)
        assets = Assets(data_dir, Path(), data_dir / "tokenizer", summary, {}, ["dataset"] * fresh_data)
        if with_lm:
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

            assets.lm_dir, assets.lm_report, fresh_lm = _cached(root, lm_key, rebuild, build_lm)
        else:
            fresh_lm = False
        if encoder is not None:
            assets.encoder_dir, assets.encoder_report, fresh_encoder = encoder.result()
            encoder = None
        else:
            assets.encoder_dir, assets.encoder_report, fresh_encoder = _cached(root, encoder_key, rebuild,
                                                                               build_encoder)
    finally:
        if encoder is not None:  # the dataset or the LM failed: no use finishing the encoder
            encoder.cancel()
    # The order `built` had when the steps ran one after another (dataset, encoder, LM).
    assets.built = ["dataset"] * fresh_data + ["encoder"] * fresh_encoder + ["language model"] * fresh_lm
    return assets
