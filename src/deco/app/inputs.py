"""Checking what a visitor sends before any model sees it: the uploaded file and the question.

Every failure is a DataError whose message the page shows as it is; nothing here raises anything else.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from deco.errors import DataError

MAX_UPLOAD_MB = 10.0
MAX_PIXELS = 40_000_000  # a 40-megapixel photo is fine; larger files are refused before decoding
MAX_QUESTION_CHARS = 2000


def check_upload(path: str | Path | None, max_mb: float = MAX_UPLOAD_MB) -> Image.Image:
    """The uploaded file as an RGB image, or a DataError saying why it is not accepted."""
    from deco.data.images import load_image

    if path is None:
        raise DataError("no image: upload one or pick a demo scene first")
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise DataError(f"the upload '{name}' did not arrive; try again")
    size_mb = path.stat().st_size / 1e6
    if size_mb > max_mb:
        raise DataError(f"'{name}' is {size_mb:.1f} MB; uploads up to {max_mb:g} MB are accepted")
    try:
        return load_image(path, max_pixels=MAX_PIXELS)
    except DataError as exc:
        # The loader names the server-side temporary path; the visitor knows the file by its name.
        raise DataError(str(exc).replace(str(path), f"'{name}'")) from None


def check_question(question: str | None) -> str:
    """The question stripped, or a DataError for an empty or overlong one."""
    text = (question or "").strip()
    if not text:
        raise DataError("the question is empty: type what you want to ask about the image")
    if len(text) > MAX_QUESTION_CHARS:
        raise DataError(f"the question has {len(text)} characters; at most {MAX_QUESTION_CHARS} are accepted")
    if "<image>" in text:
        raise DataError("type the question without <image>: the image is placed by the prompt template")
    return text
