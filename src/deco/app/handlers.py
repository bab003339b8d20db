"""What the page does when a visitor acts: the Gradio callbacks, one method each.

A `Controller` holds the server-wide parts (the models offered, their engines); everything per visitor
lives in Gradio State values passed in and out, so each browser tab keeps its own conversation.
Errors caused by the visitor or by a model that will not load come back as a message on the page.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from deco.app import views
from deco.app.engine import Analysis, Engine, Reply
from deco.app.inputs import MAX_UPLOAD_MB, check_question, check_upload
from deco.app.scenes import SCENES, scene_folder
from deco.app.sources import ModelChoice, demo_models, no_models_message
from deco.app.training import train_quick_pair
from deco.errors import DecoError

log = logging.getLogger(__name__)
NONE = "(none)"
SLOTS = ("A", "B")
# Gradio fills a parameter whose default is a Progress with the request's own progress tracker.
PROGRESS = gr.Progress()


def error_text(exc: BaseException) -> str:
    """The message a visitor sees for a failure: deco's own errors as they are, others with their type."""
    return str(exc) if isinstance(exc, DecoError) else f"{type(exc).__name__}: {exc}"


def new_conversations() -> dict[str, Any]:
    """Per-tab conversation state: each slot's model, prompt history and its last (question, answer)."""
    return {slot: {"model": None, "history": [], "last": None, "fresh": False} for slot in SLOTS}


class Controller:
    """The server-wide side of the page: the models on offer and one engine per model."""

    def __init__(self, choices: list[ModelChoice], demo_dir: Path, explicit: bool,
                 max_upload_mb: float = MAX_UPLOAD_MB) -> None:
        self.demo_dir = demo_dir
        self.explicit = explicit
        self.max_upload_mb = max_upload_mb
        self.engines: dict[str, Engine] = {}
        self._add(choices)

    def _add(self, choices: list[ModelChoice]) -> None:
        for choice in choices:
            self.engines.setdefault(choice.label, Engine(choice))

    def labels(self) -> list[str]:
        """Model labels in the order offered."""
        return list(self.engines)

    def defaults(self) -> tuple[str | None, str]:
        """(model A, model B) preselected: the first two models offered (B '(none)' with only one)."""
        labels = self.labels()
        return (labels[0] if labels else None, labels[1] if len(labels) > 1 else NONE)

    def intro(self) -> str:
        """The line under the title: what is offered, or how to make the demo models."""
        if not self.engines:
            return no_models_message(self.demo_dir)
        where = "given with --model" if self.explicit else f"trained by `deco demo` in `{self.demo_dir}`"
        return f"{len(self.engines)} model(s) {where}."

    # ---- models ---------------------------------------------------------------------------------
    def select_model(self, label: str | None, conversations: dict[str, Any], slot: str,
                     progress: gr.Progress = PROGRESS) -> tuple[Any, ...]:
        """Load the model chosen for a slot and start that slot's conversation afresh."""
        state = conversations[slot]
        state.update(model=label, history=[], last=None, fresh=False)
        visible = slot == "A" or (label not in (None, NONE))
        if label in (None, NONE):
            return conversations, gr.update(visible=visible), "", []
        try:
            progress(0.0, desc=f"loading {label}")
            heading = f"### {label}\n{self.engines[label].describe()}"
        except Exception as exc:
            log.exception("loading %s failed", label)
            heading = f"### {label}\n**Error:** {error_text(exc)}"
        return conversations, gr.update(visible=visible), heading, []

    def train_demo(self, progress: gr.Progress = PROGRESS) -> Iterator[tuple[Any, ...]]:
        """Train the quick demo pair into the demo folder, then offer its models."""
        message = ""
        for k, status in enumerate(train_quick_pair(self.demo_dir)):
            progress(status.fraction, desc=status.message)
            message = f"**Error:** {status.error}" if status.error else f"Training the quick demo pair: {status.message}"
            yield message, gr.update(), gr.update(), gr.update(), "" if k == 0 else gr.update()
        self._add(demo_models(self.demo_dir))
        a, b = self.defaults()
        if self.engines and not message.startswith("**Error"):
            message = f"Trained. {self.intro()}"
        yield (message, gr.update(choices=self.labels(), value=a), gr.update(choices=[NONE, *self.labels()], value=b),
               gr.update(visible=not self.engines), gr.update())

    # ---- the image ------------------------------------------------------------------------------
    def upload(self, path: str | None, conversations: dict[str, Any]) -> tuple[Any, ...]:
        """Check an uploaded file; a good image becomes the tab's image and starts new conversations."""
        # The drop zone is emptied every time (the last output), so the next file can go straight in.
        if path is None:
            return gr.update(), gr.update(), "", conversations, gr.update(), gr.update(), None
        try:
            check_upload(path, self.max_upload_mb)
        except DecoError as exc:
            return gr.update(), gr.update(), f"**Error:** {exc}", conversations, gr.update(), gr.update(), None
        return path, path, f"Image: `{Path(path).name}`. New conversation.", _restart(conversations), [], [], None

    def pick_scene(self, name: str | None, conversations: dict[str, Any]) -> tuple[Any, ...]:
        """A bundled demo scene becomes the tab's image, with a question the demo models were trained on."""
        scene = next((s for s in SCENES if s.name == name), None)
        if scene is None:
            return gr.update(), gr.update(), gr.update(), "", conversations, gr.update(), gr.update()
        path = str(scene_folder() / scene.file)
        tips = ", ".join(f"`{q}`" for q in scene.questions)
        return (path, path, scene.questions[0], f"Demo scene `{scene.name}`. Questions to try: {tips}.",
                _restart(conversations), [], [])

    # ---- asking ---------------------------------------------------------------------------------
    def ask(self, image_path: str | None, question: str, temperature: float, top_p: float, max_new_tokens: float,
            conversations: dict[str, Any], chat_a: list, chat_b: list) -> Iterator[tuple[Any, ...]]:
        """Stream each chosen model's answer (model A, then B: one model call at a time)."""
        from deco.interop.chat import GenerationOptions

        for slot in SLOTS:
            conversations[slot]["fresh"] = False
        chats = {"A": list(chat_a or []), "B": list(chat_b or [])}
        try:
            text = check_question(question)
            image = check_upload(image_path, self.max_upload_mb)
            options = GenerationOptions(int(max_new_tokens), float(temperature), float(top_p))
            options.validate()
        except DecoError as exc:
            yield f"**Error:** {exc}", chats["A"], chats["B"], conversations
            return
        slots = [s for s in SLOTS if conversations[s]["model"] not in (None, NONE)]
        if not slots:
            yield f"**Error:** {self.intro() if not self.engines else 'choose a model first'}", chats["A"], chats["B"], conversations
            return
        problems = []
        for slot in slots:
            state = conversations[slot]
            engine = self.engines[state["model"]]
            chats[slot] += [{"role": "user", "content": text}, {"role": "assistant", "content": ""}]
            try:
                for item in engine.stream(image, text, state["history"], options):
                    if isinstance(item, Reply):
                        chats[slot][-1]["content"] = item.answer
                        state.update(history=item.history, last=(text, item.answer), fresh=True)
                        log.info("%s answered in %.2f s (first piece %.2f s)", state["model"], item.total_s,
                                 item.first_piece_s or item.total_s)
                    else:
                        chats[slot][-1]["content"] = item
                    yield "", chats["A"], chats["B"], conversations
            except Exception as exc:
                log.exception("answering with %s failed", state["model"])
                chats[slot] = chats[slot][:-2]
                problems.append(f"**Error** ({state['model']}): {error_text(exc)}")
        yield "  \n".join(problems), chats["A"], chats["B"], conversations

    # ---- explaining -----------------------------------------------------------------------------
    def analyse(self, image_path: str | None, conversations: dict[str, Any],
                progress: gr.Progress = PROGRESS) -> tuple[Any, ...]:
        """Explain each fresh answer: maps and metrics for model A's and model B's panels."""
        fresh = [s for s in SLOTS if conversations[s]["fresh"]]
        outputs: list[Any] = [gr.update()]
        problems = []
        for slot in SLOTS:
            if slot not in fresh:
                outputs += [gr.update()] * 8
                continue
            state = conversations[slot]
            state["fresh"] = False
            question, answer = state["last"]
            progress(fresh.index(slot) / len(fresh), desc=f"explaining {state['model']}'s answer (Text-to-Patch, "
                     "Query-to-Patch, metrics)")
            try:
                analysis = self.engines[state["model"]].analyse(check_upload(image_path, self.max_upload_mb),
                                                                 question, answer)
            except Exception as exc:
                log.exception("explaining %s failed", state["model"])
                problems.append(f"**Error** ({state['model']}): {error_text(exc)}")
                outputs += [None, gr.update(choices=[], value=None), None, "", gr.update(), None, None, ""]
                continue
            outputs += panel_outputs(analysis)
        # Without problems of its own the status stays as the answers left it (e.g. one model failed to load).
        outputs[0] = "  \n".join(problems) if problems else gr.update()
        return tuple(outputs)

    # ---- looking at the maps (no model call) ----------------------------------------------------
    @staticmethod
    def show_word(analysis: Analysis | None, value: str | None) -> Any:
        """The Text-to-Patch overlay of the clicked word."""
        if analysis is None or value in (None, ""):
            return None
        return views.word_overlay(analysis, int(value))

    @staticmethod
    def show_token(analysis: Analysis | None, index: float) -> tuple[Any, Any]:
        """The Query-to-Patch overlay of a visual token, and the grid with it outlined."""
        if analysis is None:
            return None, None
        m = int(index)
        return views.token_overlay(analysis, m), views.token_picker(analysis, m)

    @staticmethod
    def click_grid(analysis: Analysis | None, evt: gr.SelectData) -> Any:
        """A click on the token grid picks the token under it (the slider follows)."""
        from deco.app.overlay import clicked_token

        out_grid = None if analysis is None else analysis.explanation.q2p.out_grid
        if out_grid is None or not evt.index:
            return gr.update()
        x, y = evt.index[0], evt.index[1]
        return clicked_token(float(x), float(y), tuple(out_grid))


def empty_panels() -> tuple[Any, ...]:
    """Both panels' 8 analysis outputs emptied: a new image or conversation leaves no stale maps beside it."""
    empty = [None, gr.update(choices=[], value=None), None, "", gr.update(value=0, interactive=False), None, None, ""]
    return tuple(empty * len(SLOTS))


def panel_outputs(analysis: Analysis) -> list[Any]:
    """A panel's 8 outputs after an analysis: state, words, word map, route, token slider, grid, token map, metrics."""
    choices = views.word_choices(analysis)
    tokens = analysis.explanation.q2p.maps.shape[1]
    return [
        analysis,
        gr.update(choices=choices, value=None),  # no word picked yet: a click shows its map
        None,
        views.route_markdown(analysis),
        gr.update(minimum=0, maximum=tokens - 1, value=0, step=1, interactive=True, label=views.token_label(analysis)),
        gr.update(value=views.token_picker(analysis, 0), visible=analysis.explanation.q2p.out_grid is not None),
        views.token_overlay(analysis, 0),
        views.metrics_markdown(analysis),
    ]


def _restart(conversations: dict[str, Any]) -> dict[str, Any]:
    """New image: every slot keeps its model and forgets its turns."""
    for state in conversations.values():
        state.update(history=[], last=None, fresh=False)
    return conversations
