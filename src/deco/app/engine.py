"""One model behind the page: loaded once, used by one request at a time, answering and explaining.

Every model call runs in a worker thread that holds the model's lock, so requests from several tabs are
queued rather than interleaved, even if a browser goes away mid-answer (the page stops reading, the
call still finishes before the next one starts). The maps come from `deco.analysis.explain`; the
redundancy, coverage and spatial-fidelity figures from `deco.analysis.metrics`, on this image's tokens.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from deco.app.sources import ModelChoice
from deco.errors import DataError, DecoError

_DONE = object()


class ModelLoadError(DecoError):
    """A model the page offers could not be loaded; the message says which and why."""


@dataclass
class Reply:
    """A finished answer: its text, the conversation after it, and seconds to the first piece and in all."""

    answer: str
    history: list[tuple[str, str]]
    first_piece_s: float | None
    total_s: float


@dataclass
class Analysis:
    """The maps of one answer (a deco.analysis Explanation) and the metrics of the image's visual tokens."""

    explanation: Any
    metrics: dict[str, float | None]
    seconds: float
    notes: list[str] = field(default_factory=list)
    label: str = ""  # the model's label on the page, for the maps' captions


class Engine:
    """A lazily loaded model with a lock; `stream` answers, `analyse` explains the last answer."""

    def __init__(self, choice: ModelChoice) -> None:
        self.choice = choice
        self.lock = threading.Lock()
        self._model: Any = None
        self._style: Any = None

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory."""
        return self._model is not None

    def load(self) -> Any:
        """The model in eval mode (loaded on first use); ModelLoadError names the folder and the cause."""
        with self.lock:
            if self._model is None:
                from deco.interop.resolve import load_any_model, prompt_style

                try:
                    model = load_any_model(self.choice.path)
                    if self.choice.reduce:
                        from deco.reducers.apply import apply_reducer

                        apply_reducer(model, self.choice.reduce)
                    self._style = prompt_style(model, self.choice.path)
                except Exception as exc:  # corrupt weights raise anything; the page must keep serving
                    raise ModelLoadError(f"model '{self.choice.label}' failed to load from {self.choice.path}: "
                                         f"{type(exc).__name__}: {exc}") from exc
                self._model = model
            return self._model

    def describe(self) -> str:
        """One line: projector, visual tokens, prompt template."""
        model = self.load()
        reduced = f" (reduced by `{self.choice.reduce}`)" if self.choice.reduce else ""
        return (f"projector `{model.projector.name}`, {model.num_image_tokens} visual tokens per image{reduced}, "
                f"prompts: {self._style.describe()}")

    def stream(self, image: Image.Image, question: str, history: list[tuple[str, str]],
               options: Any) -> Iterator[str | Reply]:
        """Yield the answer text so far after each new piece, then the finished Reply."""
        from deco.interop.chat import ChatSession

        model = self.load()
        pieces: queue.Queue[Any] = queue.Queue()
        start = time.perf_counter()

        def work() -> Reply:
            session = ChatSession(model, self._style, options)
            session.image, session.history = image, list(history)
            answer = session.ask(question, stream=lambda text: pieces.put(text) if text else None)
            return Reply(answer, session.history, None, 0.0)

        worker = self._run_locked(work, pieces)
        text, first = "", None
        while (item := pieces.get()) is not _DONE:
            if first is None:
                first = time.perf_counter() - start
            text += item
            yield text
        reply = worker.result()
        reply.first_piece_s = first
        reply.total_s = time.perf_counter() - start
        yield reply

    def analyse(self, image: Image.Image, question: str, answer: str) -> Analysis:
        """Text-to-Patch, Query-to-Patch and Text-to-Query for `answer`, and the tokens' metrics."""
        model = self.load()
        if not answer.strip():
            raise DataError(f"model '{self.choice.label}' gave an empty answer: there is no word to explain")
        template = self._style.template or "vicuna_v1"
        analysis = self._run_locked(lambda: _analyse(model, image, question, answer, template)).result()
        analysis.label = self.choice.label
        return analysis

    def _run_locked(self, fn: Callable[[], Any], pieces: queue.Queue[Any] | None = None) -> _Call:
        call = _Call()

        def target() -> None:
            try:
                with self.lock:
                    call.value = fn()
            except BaseException as exc:  # handed to the request thread, which reports it on the page
                call.error = exc
            finally:
                call.done.set()
                if pieces is not None:
                    pieces.put(_DONE)

        threading.Thread(target=target, name=f"deco-app-{self.choice.label}", daemon=True).start()
        return call


class _Call:
    """The outcome of a call made on a worker thread."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def result(self) -> Any:
        """Wait for the call; re-raise its error in the caller's thread."""
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.value


def _analyse(model: Any, image: Image.Image, question: str, answer: str, template: str) -> Analysis:
    import torch

    from deco.analysis import coverage, explain, redundancy, spatial_fidelity
    from deco.analysis.explanation import pixel_values
    from deco.analysis.query_patch import eval_mode

    start = time.perf_counter()
    exp = explain(model, image, question, answer=answer, template=template)
    pixels = pixel_values(model, [image]).to(next(model.projector.parameters()).device)
    with torch.no_grad(), eval_mode(model):
        tokens = model.encode_images(pixels)  # [1, M, Dl]: the visual tokens the LLM read
    q2p = exp.q2p
    grid = tuple(q2p.grid[-2:])  # image projectors: (h, w); a one-frame video grid: (1, h, w)
    metrics: dict[str, float | None] = {}
    metrics.update(redundancy(tokens))
    metrics.update(coverage(q2p.maps))
    metrics.update(spatial_fidelity(q2p.maps, grid, q2p.out_grid))
    notes = []
    if q2p.zero_rows:
        notes.append(f"{q2p.zero_rows} visual tokens have zero relevance everywhere")
    return Analysis(exp, {k: v for k, v in metrics.items() if not k.startswith("across") and k != "same_index_cos"},
                    time.perf_counter() - start, notes)
