"""The demo's cached assets: dataset (images + LLaVA JSON + tokenizer) and the pretrained encoder.

Each lives in a folder named by a hash of the settings that produce it, so a second run with the same
settings starts at once and a changed setting builds a new folder. A folder is built under a temp
name and renamed when complete: an interrupted build is never mistaken for a cached one.

The image demo's encoder does not depend on the dataset or the text-pretrained LM, and each
pretraining runs on one thread: on a cold cache the encoder is built in a second process while this one
writes the dataset and pretrains the LM, so two cores work instead of one (`parallel=False` builds them
one after another, for comparison: benchmarks/app/cold_assets.py).
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


def _encoder_builder(settings: DemoSettings, status: Callable[[str], None],
                     progress: Callable[[int, int], None] | None) -> Callable[[Path], dict[str, Any]]:
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


def _encoder_child(settings: dict[str, Any], root: str, name: str, rebuild: bool, queue: Any) -> None:
    """The encoder step in a spawned process: ("step", done, total) while it trains, then ("done", folder,
    report, fresh) or ("error", exception)."""
    from deco.demo.core.settings import settings_from_dict

    try:
        build = _encoder_builder(settings_from_dict(settings), lambda _: None,
                                 lambda done, total: queue.put(("step", done, total)))
        folder, report, fresh = _cached(Path(root), name, rebuild, build)
        queue.put(("done", str(folder), report, fresh))
    except BaseException as exc:  # handed to the parent, which raises it
        queue.put(("error", exc if isinstance(exc, Exception) else RuntimeError(repr(exc))))


class _EncoderProcess:
    """The encoder built in a spawned process; its steps reach `progress` when the parent collects them."""

    def __init__(self, settings: DemoSettings, root: Path, name: str, rebuild: bool,
                 progress: Callable[[int, int], None] | None) -> None:
        import multiprocessing
        import threading

        context = multiprocessing.get_context("spawn")  # a clean interpreter: no forked torch thread pools
        self._queue = context.Queue()
        self._process = context.Process(target=_encoder_child, name="deco-demo-encoder", daemon=True,
                                        args=(settings.to_dict(), str(root), name, rebuild, self._queue))
        self._process.start()
        self._progress = progress
        self._outcome: tuple[Any, ...] | None = None
        # A thread relays the steps as they come, so bars move while this process builds the dataset and LM.
        self._relay = threading.Thread(target=self._forward, name="deco-encoder-progress", daemon=True)
        self._relay.start()

    def _forward(self) -> None:
        import queue

        while self._outcome is None:
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                if not self._process.is_alive():  # died without a word (killed, out of memory)
                    self._outcome = ("error", RuntimeError(
                        f"the encoder process ended with exit code {self._process.exitcode} before finishing"))
                continue
            if item[0] == "step":
                if self._progress is not None:
                    self._progress(item[1], item[2])
            else:
                self._outcome = item

    def result(self) -> tuple[Path, dict[str, Any], bool]:
        """Wait for the encoder; its error is raised here."""
        self._relay.join()
        self._process.join(30)
        assert self._outcome is not None
        if self._outcome[0] == "error":
            raise self._outcome[1]
        _, folder, report, fresh = self._outcome
        return Path(folder), report, fresh

    def cancel(self) -> None:
        """Stop the encoder process (this process failed; its temp folder is removed by the next build)."""
        self._process.terminate()
        self._process.join(10)
        self._relay.join(5)


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
    parallel: bool = True,
) -> Assets:
    """The assets of either kind, from the cache or built now: images get the dataset, encoder and
    text-pretrained LM (none when lm.pretrain_steps is 0), videos their dataset and frame encoder
    (deco.demo.video.data)."""
    if settings.kind == "video":
        from deco.demo.video.data import prepare_video_assets

        return prepare_video_assets(settings, cache_dir, rebuild, status, progress)
    from deco.demo.images.dataset import TEST, TRAIN, split_scenes, write_dataset
    from deco.demo.images.vocab import build_demo_tokenizer

    root = Path(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    scenes = asdict(settings.scenes)
    data_key = _key("data", {"scenes": scenes, "questions": QUESTION_VERSION})
    encoder_key = _key("encoder", encoder_inputs(settings))
    lm_key = _key("lm", {"scenes": scenes, "lm": asdict(settings.lm), "questions": QUESTION_VERSION})
    with_lm = settings.lm.pretrain_steps > 0  # else the LM starts from random weights

    build_data = data_builder(
        f"rendering {settings.scenes.train_images} training and {settings.scenes.test_images} test images",
        lambda folder: write_dataset(folder, settings.scenes), build_demo_tokenizer, status)
    build_encoder = _encoder_builder(settings, status, progress)
    others_to_build = rebuild or not _done(root, data_key) or (with_lm and not _done(root, lm_key))
    encoder: _EncoderProcess | None = None
    if parallel and others_to_build and (rebuild or not _done(root, encoder_key)):
        status(f"pretraining the tiny ViT encoder ({settings.encoder.pretrain_steps} steps) in a second process, "
               "alongside the dataset and the LM")
        encoder = _EncoderProcess(settings, root, encoder_key, rebuild, progress)
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


def _done(root: Path, name: str) -> bool:
    return (root / name / DONE).is_file()
