"""Finding what to analyse: a saved model or a training run's final model, and a folder of images."""

from __future__ import annotations

from pathlib import Path

from deco.errors import ConfigError, DataError
from deco.model import DecoModel, load_model
from deco.model.builder import CONFIG_FILE

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def resolve_model_dir(path: str | Path) -> Path:
    """A saved model folder as is; a run directory -> its `final/` model (what `deco train` writes)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"model path not found: {path}")
    if (path / CONFIG_FILE).is_file():
        return path
    if (path / "final" / CONFIG_FILE).is_file():
        return path / "final"
    if any(path.glob("checkpoint-*")):
        raise ConfigError(
            f"'{path}' is a run directory without a final model (final/{CONFIG_FILE}); its checkpoint-* "
            "folders hold trainable weights only. Let the run finish, or analyse a saved model folder"
        )
    raise ConfigError(f"'{path}' is neither a saved deco model ({CONFIG_FILE}) nor a run directory with final/")


def load_for_analysis(path: str | Path, allow_pickle: bool = False) -> DecoModel:
    """Load a saved model (or a run's final model) in eval mode (pickle weights only if the caller allows)."""
    return load_model(resolve_model_dir(path), allow_pickle=allow_pickle).eval()


def images_in(directory: str | Path, max_images: int | None = None) -> list[Path]:
    """Image files directly inside a folder, sorted by name (at most `max_images`)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"image folder not found: {directory}")
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {directory}")
    return files[:max_images] if max_images else files
