"""The page's layout and wiring: inputs on the left, one panel per model (two side by side to compare).

Every event that runs a model shares one concurrency group of size 1, so requests from all tabs wait
in Gradio's queue and reach the models one at a time; clicks on words and tokens only redraw stored
maps and run outside that group. A timer asks the server once a second for its training run, so every
tab shows the same run and picks up the models it leaves.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import gradio as gr

from deco.app.handlers import NONE, Controller, empty_panels, new_conversations
from deco.app.overlay import ALPHA
from deco.app.runpanel import train_label
from deco.app.scenes import SCENES, scene_folder

MODEL_GROUP = "model"
# Errors stand out; the demo's 48-pixel scenes are shown large with their pixels kept sharp.
CSS = """
#status strong, #upload-guard strong { color: #b00020; }
#run-box strong.run-title { color: inherit; }
#run-bar { width: 60%; height: 1em; }
.deco-word label { cursor: pointer; }
#preview img, .deco-thumb img, #examples img { image-rendering: pixelated; }
#preview img { width: 100%; height: 100%; object-fit: contain; }
.deco-metrics td:last-child, .deco-metrics th:last-child { white-space: nowrap; width: 4em; }
"""


def upload_guard(max_mb: float) -> str:
    """Browser-side check of the file chosen for upload: above the one limit, the same message the server
    gives goes to the status line and the file is not sent (Gradio's own limit is the same number)."""
    return _GUARD.replace("LIMIT_MB", f"{max_mb:g}")


_GUARD = """
() => {
  const limit = LIMIT_MB;
  document.addEventListener('change', (event) => {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || input.type !== 'file' || !input.closest('#upload')) return;
    const file = input.files && input.files[0];
    // Our own node inside the status line: Gradio keeps drawing its messages beside it.
    let note = document.querySelector('#upload-guard');
    if (note) note.remove();
    if (!file || file.size <= limit * 1e6) return;
    event.stopImmediatePropagation();
    input.value = '';
    const status = document.querySelector('#status');
    if (status) {
      note = document.createElement('div');
      note.id = 'upload-guard';
      note.innerHTML = '<strong>Error:</strong> ';
      const mb = (file.size / 1e6).toFixed(1);
      note.appendChild(document.createTextNode(`'${file.name}' is ${mb} MB; uploads up to ${limit} MB are accepted`));
      status.appendChild(note);
    }
  }, true);
}
"""


@dataclass
class Panel:
    """One model's column: its answers and what its visual tokens hold."""

    column: Any
    heading: Any
    thumb: Any
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
        with gr.Row():
            thumb = gr.Image(label="image", interactive=False, height=160, min_width=120, scale=1,
                             elem_id=f"thumb-{slot}", elem_classes="deco-thumb")
            chat = gr.Chatbot(label=f"Model {slot}", height=260, scale=3, elem_id=f"chat-{slot}")
        analysis = gr.State(None)
        gr.Markdown("**Text-to-Patch**: click a word of the last answer to see which patches it drew on, in both "
                    "models at once (the maps explain the last answer to the last question, without earlier turns).")
        words = gr.Radio(choices=[], label="answer words", elem_id=f"words-{slot}", elem_classes="deco-word")
        word_map = gr.Image(label="Text-to-Patch", interactive=False, height=330, elem_id=f"word-map-{slot}",
                            format="png")
        route = gr.Markdown(elem_id=f"route-{slot}")
        token = gr.Slider(0, 1, value=0, step=1, label="visual token (or click a cell of the token grid)",
                          interactive=False, elem_id=f"token-{slot}")
        with gr.Row():
            grid = gr.Image(label="token grid (click a cell)", interactive=False, height=220,
                            elem_id=f"grid-{slot}", format="png")
            token_map = gr.Image(label="Query-to-Patch", interactive=False, height=260,
                                 elem_id=f"token-map-{slot}", format="png")
        metrics = gr.Markdown(elem_id=f"metrics-{slot}", elem_classes="deco-metrics")
    return Panel(column, heading, thumb, chat, analysis, words, word_map, route, token, grid, token_map, metrics)


@dataclass
class Inputs:
    """The left column and the page-wide parts the events read and write."""

    conversations: Any
    image_path: Any
    seen_runs: Any
    intro: Any
    train: Any
    train_box: Any
    run_box: Any
    timer: Any
    model_a: Any
    model_b: Any
    status: Any
    upload: Any
    examples: Any
    preview: Any
    question: Any
    ask: Any
    stop: Any
    regenerate: Any
    clear: Any
    temperature: Any
    top_p: Any
    max_new: Any
    opacity: Any
    shared: Any


def build_page(controller: Controller) -> gr.Blocks:
    """The Gradio Blocks app for a controller (not launched)."""
    first, second = controller.defaults()
    limit = f"{controller.max_upload_mb:g} MB"
    with gr.Blocks(title="deco app", analytics_enabled=False) as page:
        conversations = gr.State(new_conversations)
        image_path = gr.State(None)
        seen_runs = gr.State(0)
        gr.Markdown("## deco app: ask a model about an image, see what each visual token holds")
        intro = gr.Markdown(controller.intro(), elem_id="intro")
        with gr.Column(visible=not controller.engines) as train_box:
            train = gr.Button(train_label(controller.demo_dir), elem_id="train")
        run_box = gr.HTML(elem_id="run")
        timer = gr.Timer(1.0)
        with gr.Row():
            model_a = gr.Dropdown(controller.labels(), value=first, label="Model A", elem_id="model-A")
            model_b = gr.Dropdown([NONE, *controller.labels()], value=second, label="Model B (compare)",
                                  elem_id="model-B")
        status = gr.Markdown(elem_id="status")
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                upload = gr.File(label=f"Upload an image (up to {limit})", file_count="single", type="filepath",
                                 elem_id="upload")
                examples = gr.Gallery([(str(scene_folder() / s.file), f"{s.name}: {s.questions[0]}") for s in SCENES],
                                      label="or click an example (bundled demo scenes)", columns=4, height=140,
                                      allow_preview=False, elem_id="examples")
                preview = gr.Image(label="image", interactive=False, height=240, elem_id="preview")
                question = gr.Textbox(label="Question", placeholder="cell of red", elem_id="question")
                with gr.Row():
                    ask = gr.Button("Ask", variant="primary", elem_id="ask")
                    stop = gr.Button("Stop", variant="stop", elem_id="stop")
                    regenerate = gr.Button("Regenerate", elem_id="regenerate")
                clear = gr.Button("New conversation", elem_id="clear")
                with gr.Accordion("Maps", open=True):
                    opacity = gr.Slider(0.0, 1.0, value=ALPHA, step=0.05, label="map opacity", elem_id="opacity")
                    shared = gr.Checkbox(False, label="one colour scale for both models' word maps", elem_id="shared")
                with gr.Accordion("Sampling", open=False):
                    temperature = gr.Slider(0.0, 2.0, value=0.0, step=0.05, label="temperature (0 = greedy)")
                    top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="top-p")
                    max_new = gr.Slider(1, 256, value=32, step=1, label="max new tokens")
            with gr.Column(scale=3), gr.Row():
                panels = {"A": _panel("A", True), "B": _panel("B", second not in (None, NONE))}
        _wire(controller, page, panels, Inputs(conversations, image_path, seen_runs, intro, train, train_box, run_box,
                                               timer, model_a, model_b, status, upload, examples, preview, question,
                                               ask, stop, regenerate, clear, temperature, top_p, max_new, opacity,
                                               shared))
    return page


def _wire(controller: Controller, page: gr.Blocks, panels: dict[str, Panel], ui: Inputs) -> None:
    """Connect events to the controller's callbacks."""
    queued = {"concurrency_id": MODEL_GROUP, "concurrency_limit": 1}
    dropdowns = [ui.model_a, ui.model_b]
    server_state = [ui.model_a, ui.model_b, ui.intro, ui.train_box, ui.train, ui.run_box, ui.seen_runs]
    loaded = page.load(controller.page_state, dropdowns, server_state)
    ui.timer.tick(controller.watch, [ui.seen_runs, *dropdowns], [ui.run_box, *server_state[:5], ui.seen_runs],
                  show_progress="hidden")
    ui.train.click(controller.train_demo, None, ui.status)
    for slot, dropdown in (("A", ui.model_a), ("B", ui.model_b)):
        p = panels[slot]
        select = partial(controller.select_model, slot=slot)
        outputs = [ui.conversations, p.column, p.heading, p.chat]
        # `change` also follows the server's lists (page load, a finished run); each change loads once.
        dropdown.change(select, [dropdown, ui.conversations], outputs, **queued)
        loaded.then(select, [dropdown, ui.conversations], outputs, **queued)
        p.words.input(partial(controller.show_word, slot),
                      [panels["A"].analysis, panels["B"].analysis, p.words, ui.opacity, ui.shared],
                      [panels["A"].word_map, panels["B"].word_map, panels["A"].words, panels["B"].words])
        # A click on the grid moves the slider; any change of the slider redraws the token's map.
        p.token.change(controller.show_token, [p.analysis, p.token, ui.opacity], [p.token_map, p.grid])
        p.grid.select(controller.click_grid, [p.analysis], p.token)
    a, b = panels["A"], panels["B"]
    redraw = (controller.redraw, [a.analysis, a.words, a.token, b.analysis, b.words, b.token, ui.opacity, ui.shared],
              [a.word_map, b.word_map, a.token_map, b.token_map])
    ui.opacity.release(*redraw)
    ui.shared.input(*redraw)

    panel_outputs = a.analysis_outputs() + b.analysis_outputs()
    image_outputs = [ui.image_path, ui.preview]
    thumbs = (lambda path: (path, path), [ui.image_path], [a.thumb, b.thumb])
    ui.upload.upload(controller.upload, [ui.upload, ui.conversations],
                     [*image_outputs, ui.status, ui.conversations, a.chat, b.chat, ui.upload]
                     ).then(empty_panels, None, panel_outputs).then(*thumbs)
    ui.examples.select(controller.pick_example, [ui.conversations],
                       [*image_outputs, ui.question, ui.status, ui.conversations, a.chat, b.chat]
                       ).then(empty_panels, None, panel_outputs).then(*thumbs)
    ui.clear.click(lambda c: (_clear(c), [], [], ""), [ui.conversations],
                   [ui.conversations, a.chat, b.chat, ui.status]).then(empty_panels, None, panel_outputs)

    chat_outputs = [ui.status, a.chat, b.chat, ui.conversations]
    sampling = [ui.temperature, ui.top_p, ui.max_new, *dropdowns, ui.conversations, a.chat, b.chat]
    answering = []
    for trigger in (ui.ask.click, ui.question.submit):
        answering.append(trigger(controller.ask, [ui.image_path, ui.question, *sampling], chat_outputs, **queued))
    answering.append(ui.regenerate.click(controller.regenerate, [ui.image_path, *sampling], chat_outputs, **queued))
    for event in answering:
        event.then(controller.analyse, [ui.image_path, ui.conversations, ui.opacity], [ui.status, *panel_outputs],
                   **queued)
    # Stop ends the streaming for this tab; the model finishes its current call under its lock (engine.py),
    # so the next request still finds it free and whole.
    ui.stop.click(lambda: "Stopped.", None, ui.status, cancels=answering)


def _clear(conversations: dict[str, Any]) -> dict[str, Any]:
    for state in conversations.values():
        state.update(history=[], last=None, fresh=False)
    return conversations
