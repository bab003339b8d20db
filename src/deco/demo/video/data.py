"""Writes the video demo's data like real data, and caches it with the pretrained frame encoder.

    images/train/NNNNNN.npy, images/test/NNNNNN.npy   frames [F, S, S, 3] uint8 (a video "file")
    stage1.json   one caption conversation per training video (template `plain`)
    stage2.json   several questions of distinct families per training video, some closed by a caption
    test.json     one question per (test video, family), with an extra "family" key
    tokenizer/    the word-level tokenizer of this vocabulary

The encoder is the image demo's tiny ViT, pretrained the same way on single frames plus the frame's
clock (`deco.demo.video.encoder`). Both assets are cached with the demo's cache helpers (a folder per
settings hash, built under a temp name); `prepare_video_assets` is the video kind's `prepare_assets`
(deco.demo.video.kind).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from deco.demo.core.cache import Assets, _key, cached_assets, data_builder
from deco.demo.core.settings import DemoSettings, VideoSceneSettings
from deco.demo.images.dataset import caption_record, one_question_per_family, qa_record, write_splits
from deco.demo.video.questions import DESCRIBE, FAMILIES, ask, caption, conversation_questions, vocabulary
from deco.demo.video.scenes import Video, render_video, sample_video

TRAIN, TEST = "train", "test"
# Bump when the videos, questions, captions or frame encoder code change what they produce (cache keys).
VIDEO_ASSET_VERSION = 2
# The image kind's ASSET_VERSION when the video keys were last written; kept so the keys (and caches) stay the
# same when the image kind bumps its own version. The video kind bumps VIDEO_ASSET_VERSION instead.
_KEY_VERSION = 2
_STREAMS = {TRAIN: 0, TEST: 1}


def split_videos(settings: VideoSceneSettings, split: str) -> list[Video]:
    """The videos of a split, regenerated deterministically from the data seed."""
    rng = np.random.default_rng([settings.seed, _STREAMS[split]])
    n = settings.train_videos if split == TRAIN else settings.test_videos
    return [sample_video(rng, settings.frames, settings.image_size, settings.max_objects, settings.still_prob,
                         settings.clock) for _ in range(n)]


def _path(split: str, index: int) -> str:
    return f"{split}/{index:06d}.npy"


def stage1_records(videos: list[Video]) -> list[dict[str, Any]]:
    """Caption records (stage 1, template `plain`)."""
    return [caption_record(i, _path(TRAIN, i), caption(v), DESCRIBE) for i, v in enumerate(videos)]


def stage2_records(videos: list[Video], settings: VideoSceneSettings) -> list[dict[str, Any]]:
    """Multi-turn question records; a caption turn closes `caption_fraction` of them."""
    rng = np.random.default_rng([settings.seed, 2])
    return [
        qa_record(i, _path(TRAIN, i), conversation_questions(video, rng, settings.questions_per_video),
                  rng, settings.caption_fraction, caption(video), DESCRIBE)
        for i, video in enumerate(videos)
    ]


def test_records(videos: list[Video], settings: VideoSceneSettings) -> list[dict[str, Any]]:
    """One question per (test video, family) where the video can pose it."""
    return one_question_per_family(videos, FAMILIES, ask, lambda i: _path(TEST, i),
                                   np.random.default_rng([settings.seed, 3]))


def write_video_dataset(directory: str | Path, settings: VideoSceneSettings) -> dict[str, Any]:
    """Render every video to .npy and write the three JSON files; returns counts and baselines."""
    return write_splits(
        directory, lambda split: split_videos(settings, split),
        lambda video, path: np.save(path, render_video(video)), _path,
        lambda split, videos: ({"stage1.json": stage1_records(videos), "stage2.json": stage2_records(videos, settings)}
                               if split == TRAIN else {"test.json": test_records(videos, settings)}),
    )


def build_video_tokenizer(directory: Path) -> None:
    """Word-level tokenizer over the video vocabulary and the templates' words, saved to `directory`."""
    from deco.demo.images.vocab import TEMPLATES, template_words
    from deco.model.tokenizer import build_word_tokenizer

    words = set(vocabulary())
    for name in TEMPLATES:
        words |= template_words(name)
    build_word_tokenizer(sorted(words), style="llama").save_pretrained(str(directory))


def prepare_video_assets(
    settings: DemoSettings, cache_dir: str | Path, rebuild: bool = False,
    status: Callable[[str], None] = lambda _: None, progress: Callable[[int, int], None] | None = None,
    lm_progress: Callable[[int, int], None] | None = None, parallel: bool = True,
) -> Assets:
    """Videos, tokenizer and frame encoder for video settings, from the cache or built now (the keys hold what
    they held before the two kinds shared one schema, so caches stay valid). `lm_progress` and `parallel` are
    unused: the video kind pretrains no LM, and builds its two assets one after another."""
    from deco.demo.images.encoder import save_encoder
    from deco.demo.video.encoder import pretrain_frame_encoder

    root = Path(cache_dir)
    root.mkdir(parents=True, exist_ok=True)

    build_data = data_builder(
        f"rendering {settings.videos.train_videos} training and {settings.videos.test_videos} test videos",
        lambda folder: write_video_dataset(folder, settings.videos), build_video_tokenizer, status)

    def build_encoder(folder: Path) -> dict[str, Any]:
        status(f"pretraining the tiny ViT on single frames ({settings.encoder.pretrain_steps} steps)")
        rng = np.random.default_rng(settings.encoder.seed)
        n, frames = settings.encoder.pretrain_images, settings.videos.frames
        train_videos = split_videos(settings.videos, TRAIN)
        picks = [(train_videos[i % len(train_videos)], int(t)) for i, t in enumerate(rng.integers(frames, size=n))]
        held_out = [(v, int(rng.integers(frames))) for v in split_videos(settings.videos, TEST)[:100]]
        tower, report = pretrain_frame_encoder(picks, held_out, settings.videos.image_size, frames, settings.encoder,
                                               progress)
        save_encoder(tower, report, folder)
        return report

    data_key, encoder_key = video_keys(settings)
    return cached_assets(root, rebuild, data_key, build_data, encoder_key, build_encoder)


def video_keys(settings: DemoSettings) -> tuple[str, str]:
    """Cache folder names of the videos and of the frame encoder for these settings."""
    videos = {**asdict(settings.videos), "video_asset_version": VIDEO_ASSET_VERSION}
    return (_key("video-data", {"videos": videos}, _KEY_VERSION),
            _key("video-encoder", {"videos": videos, "encoder": asdict(settings.encoder)}, _KEY_VERSION))
