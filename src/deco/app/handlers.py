"""What the page does when a visitor acts: the Gradio callbacks, one method each.

A `Controller` holds the server-wide parts (the models offered, their engines, the one training run);
each tab keeps only its own conversation in Gradio State. The model lists every tab shows come from the
server (rescanned on page load and when a run ends), and `ask` reads the models from the dropdowns the
visitor sees, so no stale per-tab copy can say "choose a model first" beside two chosen models.
Errors caused by the visitor or by a model that will not load come back as a message on the page.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from deco.app import views
from deco.app.engine import Analysis, Engine, Reply
from deco.app.inputs import MAX_UPLOAD_MB, check_question, check_upload
from deco.app.runpanel import run_html, train_label
from deco.app.scenes import SCENES, scene_folder
from deco.app.sources import ModelChoice, demo_models, no_models_message
from deco.app.training import DemoRun
from deco.errors import DecoError

log = logging.getLogger(__name__)
NONE = "(none)"
SLOTS = ("A", "B")
# Gradio fills a parameter whose default is a Progress with the request's own progress tracker.
PROGRESS = gr.Progress()


def literal(text: str) -> str:
    """Text for a Markdown component shown as typed: `<image>` stays visible instead of becoming a tag."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def error_text(exc: BaseException) -> str:
    """The message a visitor sees for a failure: deco's own errors as they are, others with their type."""
    return str(exc) if isinstance(exc, DecoError) else f"{type(exc).__name__}: {exc}"


def new_conversations() -> dict[str, Any]:
    """Per-tab conversation state: each slot's model, prompt history and its last (question, answer)."""
    return {slot: {"model": None, "history": [], "last": None, "fresh": False} for slot in SLOTS}


class Controller:
    """The server-wide side of the page: the models on offer and one engine per model."""

    def __init__(self, choices: list[ModelChoice], demo_dir: Path, explicit: bool,
                 max_upload_mb: float = MAX_UPLOAD_MB, run: DemoRun | None = None, reduce: str | None = None) -> None:
        self.demo_dir = demo_dir
        self.explicit = explicit
        self.reduce = reduce  # NAME:TOKENS: every model offered (rescanned ones too) runs with this reducer
        self.max_upload_mb = max_upload_mb
        self.engines: dict[str, Engine] = {}
        self.run = run or DemoRun(demo_dir)  # the server's one training run
        self._add(choices)

    def rescan(self) -> None:
        """Offer every model the demo folder holds now (trained from any tab, or by `deco demo` meanwhile)."""
        if not self.explicit:
            self._add(demo_models(self.demo_dir))

    def _add(self, choices: list[ModelChoice]) -> None:
        for choice in choices:
            if self.reduce:
                choice = dataclasses.replace(choice, label=f"{choice.label} + {self.reduce}", reduce=self.reduce)
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

    def model_lists(self, value_a: str | None, value_b: str | None) -> tuple[Any, Any]:
        """Both dropdowns with the server's models, keeping a tab's choices that are still offered."""
        a, b = self.defaults()
        labels = self.labels()
        keep_a = value_a if value_a in labels else a
        # '(none)' beside a model is a choice; beside no model it only meant there was nothing to offer.
        keep_b = value_b if value_b in labels or (value_b == NONE and value_a in labels) else b
        return gr.update(choices=labels, value=keep_a), gr.update(choices=[NONE, *labels], value=keep_b)

    def page_state(self, value_a: str | None, value_b: str | None) -> tuple[Any, ...]:
        """On page load: the server's models (found on disk now), intro, Train button, run box, runs seen."""
        self.rescan()
        model_a, model_b = self.model_lists(value_a, value_b)
        return (model_a, model_b, self.intro(), gr.update(visible=not self.engines),
                gr.update(value=train_label(self.demo_dir)), run_html(self.run.view()), self.run.finished)

    def train_demo(self) -> str:
        """Start the server's demo run, or say one is in progress (in this tab or any other)."""
        if not self.run.start():
            return "**Error:** a training run is already in progress on this server; its progress shows below."
        return "Training started on the server: it goes on if this tab closes, and every tab shows its progress."

    def watch(self, seen: int, value_a: str | None, value_b: str | None) -> tuple[Any, ...]:
        """Every second: the run box; after a run ends, the new models in this tab's lists."""
        box = run_html(self.run.view())
        if seen == self.run.finished:
            return box, gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), seen
        self.rescan()
        model_a, model_b = self.model_lists(value_a, value_b)
        return (box, model_a, model_b, self.intro(), gr.update(visible=not self.engines),
                gr.update(value=train_label(self.demo_dir)), self.run.finished)

    # ---- the image ------------------------------------------------------------------------------
    def upload(self, path: str | None, conversations: dict[str, Any]) -> tuple[Any, ...]:
        """Check an uploaded file; a good image becomes the tab's image and starts new conversations."""
        # The drop zone is emptied every time (the last output), so the next file can go straight in.
        if path is None:
            return gr.update(), gr.update(), "", conversations, gr.update(), gr.update(), None
        try:
            check_upload(path, self.max_upload_mb)
        except DecoError as exc:
            return gr.update(), gr.update(), f"**Error:** {literal(str(exc))}", conversations, gr.update(), gr.update(), None
        return path, path, f"Image: `{Path(path).name}`. New conversation.", _restart(conversations), [], [], None

    def pick_example(self, conversations: dict[str, Any], evt: gr.SelectData) -> tuple[Any, ...]:
        """A click in the examples gallery: that bundled scene, as `pick_scene`."""
        return self.pick_scene(SCENES[evt.index].name if evt.index is not None else None, conversations)

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
            model_a: str | None, model_b: str | None, conversations: dict[str, Any], chat_a: list, chat_b: list
            ) -> Iterator[tuple[Any, ...]]:
        """Stream each chosen model's answer (model A, then B: one model call at a time)."""
        from deco.interop.chat import GenerationOptions

        for slot, label in zip(SLOTS, (model_a, model_b), strict=True):
            state = conversations[slot]
            state["fresh"] = False
            if state["model"] != label:  # the dropdown is what the visitor sees: it decides
                state.update(model=label, history=[], last=None)
        chats = {"A": list(chat_a or []), "B": list(chat_b or [])}
        try:
            text = check_question(question)
            image = check_upload(image_path, self.max_upload_mb)
            options = GenerationOptions(int(max_new_tokens), float(temperature), float(top_p))
            options.validate()
        except DecoError as exc:
            yield f"**Error:** {literal(str(exc))}", chats["A"], chats["B"], conversations
            return
        slots = [s for s in SLOTS if conversations[s]["model"] in self.engines]
        if not slots:
            yield f"**Error:** {self.intro() if not self.engines else 'choose a model first'}", chats["A"], chats["B"], conversations
            return
        problems = []
        for slot in slots:
            state = conversations[slot]
            engine = self.engines[state["model"]]
            chats[slot] += [{"role": "user", "content": literal(text)}, {"role": "assistant", "content": ""}]
            try:
                for item in engine.stream(image, text, state["history"], options):
                    if isinstance(item, Reply):
                        chats[slot][-1]["content"] = literal(item.answer)
                        state.update(history=item.history, last=(text, item.answer), fresh=True)
                        log.info("%s answered in %.2f s (first piece %.2f s)", state["model"], item.total_s,
                                 item.first_piece_s or item.total_s)
                    else:
                        chats[slot][-1]["content"] = literal(item)
                    yield "", chats["A"], chats["B"], conversations
            except Exception as exc:
                log.exception("answering with %s failed", state["model"])
                chats[slot] = chats[slot][:-2]
                problems.append(f"**Error** ({state['model']}): {literal(error_text(exc))}")
        yield "  \n".join(problems), chats["A"], chats["B"], conversations

    def regenerate(self, image_path: str | None, temperature: float, top_p: float, max_new_tokens: float,
                   model_a: str | None, model_b: str | None, conversations: dict[str, Any], chat_a: list,
                   chat_b: list) -> Iterator[tuple[Any, ...]]:
        """Ask the last question again: each model's last turn is taken back and answered anew."""
        chats = {"A": list(chat_a or []), "B": list(chat_b or [])}
        question = None
        for slot in SLOTS:
            state = conversations[slot]
            if state["last"] is not None:
                question = state["last"][0]
                state.update(history=state["history"][:-1], last=None, fresh=False)
                chats[slot] = chats[slot][:-2]
        if question is None:
            yield "**Error:** nothing to regenerate yet: ask a question first", chats["A"], chats["B"], conversations
            return
        yield from self.ask(image_path, question, temperature, top_p, max_new_tokens, model_a, model_b,
                            conversations, chats["A"], chats["B"])

    # ---- explaining -----------------------------------------------------------------------------
    def analyse(self, image_path: str | None, conversations: dict[str, Any], alpha: float = views.ALPHA,
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
                problems.append(f"**Error** ({state['model']}): {literal(error_text(exc))}")
                outputs += [None, gr.update(choices=[], value=None), None, "", gr.update(), None, None, ""]
                continue
            outputs += panel_outputs(analysis, alpha)
        # Without problems of its own the status stays as the answers left it (e.g. one model failed to load).
        outputs[0] = "  \n".join(problems) if problems else gr.update()
        return tuple(outputs)

    # ---- looking at the maps (no model call) ----------------------------------------------------
    @staticmethod
    def show_word(slot: str, analysis_a: Analysis | None, analysis_b: Analysis | None, value: str | None,
                  alpha: float, shared: bool) -> tuple[Any, Any, Any, Any]:
        """A word clicked in one panel: its Text-to-Patch map there and, for the same word in the other
        model's answer, that model's map too (word maps A and B, word choices A and B)."""
        analyses = {"A": analysis_a, "B": analysis_b}
        clicked = analyses[slot]
        if clicked is None or value in (None, ""):
            return gr.update(), gr.update(), gr.update(), gr.update()
        word = clicked.explanation.words[int(value)].text
        picks = {slot: int(value)}
        other = "B" if slot == "A" else "A"
        if analyses[other] is not None:
            found = views.find_word(analyses[other], word)
            if found is not None:
                picks[other] = found
        return word_maps(analyses, picks, alpha, shared)

    @staticmethod
    def redraw(analysis_a: Analysis | None, word_a: str | None, token_a: float, analysis_b: Analysis | None,
               word_b: str | None, token_b: float, alpha: float, shared: bool) -> tuple[Any, ...]:
        """Opacity or scale changed: both panels' word and token maps drawn again (no model call)."""
        analyses = {"A": analysis_a, "B": analysis_b}
        picks = {s: int(v) for s, v in (("A", word_a), ("B", word_b)) if v not in (None, "") and analyses[s]}
        map_a, map_b, _, _ = word_maps(analyses, picks, alpha, shared)
        tokens = [None if a is None else views.token_overlay(a, int(t), alpha)
                  for a, t in ((analysis_a, token_a), (analysis_b, token_b))]
        return map_a, map_b, tokens[0], tokens[1]

    @staticmethod
    def show_token(analysis: Analysis | None, index: float, alpha: float) -> tuple[Any, Any]:
        """The Query-to-Patch overlay of a visual token, and the grid with it outlined."""
        if analysis is None:
            return None, None
        m = int(index)
        return views.token_overlay(analysis, m, alpha), views.token_picker(analysis, m)

    @staticmethod
    def click_grid(analysis: Analysis | None, evt: gr.SelectData) -> Any:
        """A click on the token grid picks the token under it (the slider follows)."""
        from deco.app.overlay import clicked_token

        out_grid = None if analysis is None else analysis.explanation.q2p.out_grid
        if out_grid is None or not evt.index:
            return gr.update()
        x, y = evt.index[0], evt.index[1]
        return clicked_token(float(x), float(y), tuple(out_grid))


def word_maps(analyses: dict[str, Analysis | None], picks: dict[str, int], alpha: float,
              shared: bool) -> tuple[Any, Any, Any, Any]:
    """Word maps and word-choice values of both panels for the picked word indices (one scale if `shared`)."""
    peak = None
    if shared and picks:
        peak = max(float(views.word_heat(analyses[s], i).max()) for s, i in picks.items())
    maps, values = [], []
    for slot in SLOTS:
        analysis = analyses[slot]
        if slot in picks and analysis is not None:
            maps.append(views.word_overlay(analysis, picks[slot], alpha, peak))
            values.append(gr.update(value=str(picks[slot])))
        else:
            maps.append(gr.update())
            values.append(gr.update())
    return maps[0], maps[1], values[0], values[1]


def empty_panels() -> tuple[Any, ...]:
    """Both panels' 8 analysis outputs emptied: a new image or conversation leaves no stale maps beside it."""
    empty = [None, gr.update(choices=[], value=None), None, "", gr.update(value=0, interactive=False), None, None, ""]
    return tuple(empty * len(SLOTS))


def panel_outputs(analysis: Analysis, alpha: float = views.ALPHA) -> list[Any]:
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
        views.token_overlay(analysis, 0, alpha),
        views.metrics_markdown(analysis),
    ]


def _restart(conversations: dict[str, Any]) -> dict[str, Any]:
    """New image: every slot keeps its model and forgets its turns."""
    for state in conversations.values():
        state.update(history=[], last=None, fresh=False)
    return conversations
