"""The page's layout and wiring: inputs on the left, one panel per model (two side by side to compare).

Every event that runs a model shares one concurrency group of size 1, so requests from all tabs wait
in Gradio's queue and reach the models one at a time; clicks on words and tokens only redraw stored
maps and run outside that group.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import gradio as gr

from deco.app.handlers import NONE, Controller, empty_panels, new_conversations
from deco.app.scenes import SCENES

MODEL_GROUP = "model"
# Errors stand out; the demo's 48-pixel scenes are shown large with their pixels kept sharp.
CSS = """
#status strong { color: #b00020; }
.deco-word label { cursor: pointer; }
#preview img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }
.deco-metrics td:last-child, .deco-metrics th:last-child { white-space: nowrap; width: 4em; }
"""


@dataclass
class Panel:
    """One model's column: its answers and what its visual tokens hold."""

    column: Any
    heading: Any
    chat: Any
    analysis: Any
    words: Any
    word_map: Any
    route: Any
    token: Any
    grid: Any
    token_map: Any
    metrics: Any

    def analysis_outputs(self) -> list[Any]:
        """Components `Controller.analyse` fills, in `panel_outputs` order."""
        return [self.analysis, self.words, self.word_map, self.route, self.token, self.grid, self.token_map,
                self.metrics]


def _panel(slot: str, visible: bool) -> Panel:
    with gr.Column(visible=visible, elem_id=f"panel-{slot}") as column:
        heading = gr.Markdown(elem_id=f"heading-{slot}")
        chat = gr.Chatbot(label=f"Model {slot}", height=260, elem_id=f"chat-{slot}")
        analysis = gr.State(None)
        gr.Markdown("**Text-to-Patch**: click a word of the last answer to see which patches it drew on "
                    "(the maps explain the last answer to the last question, without earlier turns).")
        words = gr.Radio(choices=[], label="answer words", elem_id=f"words-{slot}", elem_classes="deco-word")
        word_map = gr.Image(label="Text-to-Patch", interactive=False, height=280, elem_id=f"word-map-{slot}",
                            format="png")
        route = gr.Markdown(elem_id=f"route-{slot}")
        token = gr.Slider(0, 1, value=0, step=1, label="visual token (or click a cell of the token grid)",
                          interactive=False, elem_id=f"token-{slot}")
        with gr.Row():
            grid = gr.Image(label="token grid (click a cell)", interactive=False, height=220,
                            elem_id=f"grid-{slot}", format="png")
            token_map = gr.Image(label="Query-to-Patch", interactive=False, height=220,
                                 elem_id=f"token-map-{slot}", format="png")
        metrics = gr.Markdown(elem_id=f"metrics-{slot}", elem_classes="deco-metrics")
    return Panel(column, heading, chat, analysis, words, word_map, route, token, grid, token_map, metrics)


def build_page(controller: Controller) -> gr.Blocks:
    """The Gradio Blocks app for a controller (not launched)."""
    first, second = controller.defaults()
    with gr.Blocks(title="deco app", analytics_enabled=False) as page:
        conversations = gr.State(new_conversations)
        image_path = gr.State(None)
        gr.Markdown("## deco app: ask a model about an image, see what each visual token holds")
        intro = gr.Markdown(controller.intro(), elem_id="intro")
        with gr.Column(visible=not controller.engines) as train_box:
            train = gr.Button("Train the quick demo pair (deco demo --quick: a few minutes on 2 CPU cores)",
                              elem_id="train")
        with gr.Row():
            model_a = gr.Dropdown(controller.labels(), value=first, label="Model A", elem_id="model-A")
            model_b = gr.Dropdown([NONE, *controller.labels()], value=second, label="Model B (compare)",
                                  elem_id="model-B")
        status = gr.Markdown(elem_id="status")
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                upload = gr.File(label="Upload an image", file_count="single", type="filepath", elem_id="upload")
                scene = gr.Radio([s.name for s in SCENES], label="or pick a demo scene", elem_id="scene")
                preview = gr.Image(label="image", interactive=False, height=240, elem_id="preview")
                question = gr.Textbox(label="Question", placeholder="cell of red", elem_id="question")
                with gr.Row():
                    ask = gr.Button("Ask", variant="primary", elem_id="ask")
                    clear = gr.Button("New conversation", elem_id="clear")
                with gr.Accordion("Sampling", open=False):
                    temperature = gr.Slider(0.0, 2.0, value=0.0, step=0.05, label="temperature (0 = greedy)")
                    top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="top-p")
                    max_new = gr.Slider(1, 256, value=32, step=1, label="max new tokens")
            with gr.Column(scale=3), gr.Row():
                panels = {"A": _panel("A", True), "B": _panel("B", second not in (None, NONE))}
        _wire(controller, page, panels, conversations, image_path, intro, train, train_box, model_a, model_b, status,
              upload, scene, preview, question, ask, clear, temperature, top_p, max_new)
    return page


def _wire(controller: Controller, page: gr.Blocks, panels: dict[str, Panel], conversations: Any, image_path: Any,
          intro: Any, train: Any, train_box: Any, model_a: Any, model_b: Any, status: Any, upload: Any, scene: Any,
          preview: Any, question: Any, ask: Any, clear: Any, temperature: Any, top_p: Any, max_new: Any) -> None:
    """Connect events to the controller's callbacks."""
    queued = {"concurrency_id": MODEL_GROUP, "concurrency_limit": 1}
    for slot, dropdown in (("A", model_a), ("B", model_b)):
        p = panels[slot]
        select = partial(controller.select_model, slot=slot)
        outputs = [conversations, p.column, p.heading, p.chat]
        dropdown.change(select, [dropdown, conversations], outputs, **queued)
        page.load(select, [dropdown, conversations], outputs, **queued)
        p.words.input(controller.show_word, [p.analysis, p.words], p.word_map)
        # A click on the grid moves the slider; any change of the slider redraws the token's map.
        p.token.change(controller.show_token, [p.analysis, p.token], [p.token_map, p.grid])
        p.grid.select(controller.click_grid, [p.analysis], p.token)

    train.click(controller.train_demo, None, [intro, model_a, model_b, train_box, status], **queued)
    panel_outputs = panels["A"].analysis_outputs() + panels["B"].analysis_outputs()
    restart = [image_path, preview, status, conversations, panels["A"].chat, panels["B"].chat, upload]
    upload.upload(controller.upload, [upload, conversations], restart).then(empty_panels, None, panel_outputs)
    scene.input(controller.pick_scene, [scene, conversations],
                [image_path, preview, question, status, conversations, panels["A"].chat, panels["B"].chat]
                ).then(empty_panels, None, panel_outputs)
    clear.click(lambda c: (_clear(c), [], [], ""), [conversations],
                [conversations, panels["A"].chat, panels["B"].chat, status]).then(empty_panels, None, panel_outputs)

    analysis_outputs = [status] + panel_outputs
    for trigger in (ask.click, question.submit):
        trigger(controller.ask, [image_path, question, temperature, top_p, max_new, conversations,
                                 panels["A"].chat, panels["B"].chat],
                [status, panels["A"].chat, panels["B"].chat, conversations], **queued).then(
            controller.analyse, [image_path, conversations], analysis_outputs, **queued)


def _clear(conversations: dict[str, Any]) -> dict[str, Any]:
    for state in conversations.values():
        state.update(history=[], last=None, fresh=False)
    return conversations
