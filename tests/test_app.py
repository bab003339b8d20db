"""`deco app` without a browser: model discovery, input checks, error messages, queueing, the maps."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from deco.app.inputs import check_question, check_upload
from deco.app.sources import DEMO_COMMAND, demo_models, explicit_models, no_models_message
from deco.errors import ConfigError, DataError

gr = pytest.importorskip("gradio")


def _fake_final(root: Path, seed: int, projector: str, complete: bool = True) -> Path:
    final = root / "runs" / f"seed{seed}" / projector / "stage2" / "final"
    final.mkdir(parents=True)
    if complete:
        (final / "deco_model.json").write_text("{}")
    return final


def test_demo_models_are_found_deco_and_qformer_first_and_unfinished_runs_skipped(tmp_path: Path) -> None:
    for projector in ("mlp", "qformer", "deco"):
        _fake_final(tmp_path, 0, projector)
    _fake_final(tmp_path, 1, "deco")
    _fake_final(tmp_path, 0, "cabstractor", complete=False)
    labels = [c.label for c in demo_models(tmp_path)]
    assert labels == ["deco (demo)", "deco (demo seed1)", "qformer (demo)", "mlp (demo)"]
    assert demo_models(tmp_path / "missing") == []
    assert DEMO_COMMAND in no_models_message(tmp_path)


def test_explicit_models_check_paths_and_count(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such folder"):
        explicit_models([str(tmp_path / "nope")])
    with pytest.raises(ConfigError, match="at most two"):
        explicit_models([str(tmp_path)] * 3)
    run = tmp_path / "run" / "final"
    run.mkdir(parents=True)
    labels = [c.label for c in explicit_models([str(run), str(run)])]
    assert labels == ["run/final", "run/final (2)"]


def test_uploads_are_checked_with_messages_naming_the_file(tmp_path: Path) -> None:
    from PIL import Image

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(DataError, match=r"not an image.*'notes.txt'"):
        check_upload(text)
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * 2_000_000)
    with pytest.raises(DataError, match=r"'big.png' is 2.0 MB; uploads up to 1 MB"):
        check_upload(big, max_mb=1)
    with pytest.raises(DataError, match="no image"):
        check_upload(None)
    good = tmp_path / "ok.png"
    Image.new("RGBA", (8, 6), (255, 0, 0, 255)).save(good)
    assert check_upload(good).mode == "RGB"


def test_questions_are_checked() -> None:
    for bad, message in (("", "empty"), ("   ", "empty"), ("x" * 3000, "at most"), ("<image> what", "without <image>")):
        with pytest.raises(DataError, match=message):
            check_question(bad)
    assert check_question("  cell of red \n") == "cell of red"


@pytest.fixture(scope="module")
def controller(saved_tiny_model: Path, one_thread_module):
    from deco.app.handlers import Controller

    return Controller(explicit_models([str(saved_tiny_model)]), Path("deco-demo"), True)


def _ask(controller, conversations, image, question="cell of red"):
    outputs = list(controller.ask(image, question, 0.0, 1.0, 6, conversations["A"]["model"],
                                  conversations["B"]["model"], conversations, [], []))
    return outputs


def test_ask_streams_then_analysis_matches_deco_analysis(controller, saved_tiny_model: Path) -> None:
    from deco.analysis import explain
    from deco.app.handlers import new_conversations
    from deco.app.scenes import scene_paths

    conversations = new_conversations()
    label = controller.labels()[0]
    heading = controller.select_model(label, conversations, "A")[2]
    assert "projector `deco`, 36 visual tokens" in heading
    image = str(scene_paths()[0])
    outputs = _ask(controller, conversations, image)
    status, chat_a, chat_b, _ = outputs[-1]
    assert status == "" and chat_b == []
    assert chat_a[0] == {"role": "user", "content": "cell of red"} and chat_a[1]["role"] == "assistant"
    question, answer = conversations["A"]["last"]
    assert answer == chat_a[1]["content"] and conversations["A"]["fresh"]
    assert len(conversations["A"]["history"]) == 1  # the next question continues this conversation

    result = controller.analyse(image, conversations, progress=lambda *a, **k: None)
    assert result[0] == gr.update() and not conversations["A"]["fresh"]
    analysis = result[1]
    engine = controller.engines[label]
    direct = explain(engine.load(), check_upload(image), question, answer=answer)
    np.testing.assert_allclose(analysis.explanation.word_t2p.numpy(), direct.word_t2p.numpy(), atol=1e-6)
    assert "Query-to-Patch route: exact" in result[4]
    assert "within_mean_cos" in result[8]
    if analysis.explanation.words:
        overlay = np.asarray(controller.show_word("A", analysis, None, "0", 0.65, False)[0])
        assert overlay.shape == (336 + 58, 336, 3) and overlay.std() > 5
    token_map, grid = controller.show_token(analysis, 7, 0.65)
    assert np.asarray(token_map).std() > 5 and grid is not None
    # deco's tokens are exact 2x2 averages on a 6x6 grid: token 7 (row 1, col 1) covers patches 2-3 x 2-3.
    heat = analysis.explanation.q2p.maps[0, 7].reshape(12, 12)
    assert heat[2:4, 2:4].sum() == pytest.approx(1.0)


def test_bad_input_and_broken_models_give_messages_not_exceptions(controller, tmp_path: Path) -> None:
    from deco.app.engine import Engine
    from deco.app.handlers import new_conversations
    from deco.app.scenes import scene_paths
    from deco.app.sources import ModelChoice

    conversations = new_conversations()
    conversations["A"]["model"] = controller.labels()[0]
    image = str(scene_paths()[0])
    assert "question is empty" in _ask(controller, conversations, image, "  ")[-1][0]
    # The analysis chained after a failed ask has nothing to explain and leaves the message alone.
    assert controller.analyse(image, conversations, progress=lambda *a, **k: None)[0] == gr.update()
    assert "no image" in _ask(controller, conversations, None)[-1][0]

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "deco_model.json").write_text("{not json")
    controller.engines["broken"] = Engine(ModelChoice("broken", broken))
    try:
        heading = controller.select_model("broken", conversations, "B")[2]
        assert "**Error:** model 'broken' failed to load" in heading
        status, chat_a, chat_b, _ = _ask(controller, conversations, image)[-1]
        assert "**Error** (broken): model 'broken' failed to load" in status
        assert len(chat_a) == 2 and chat_b == []  # model A still answered
    finally:
        del controller.engines["broken"]

    upload = tmp_path / "page.html"
    upload.write_text("<html></html>")
    status = controller.upload(str(upload), conversations)[2]
    assert "not an image" in status and "'page.html'" in status


def test_concurrent_requests_reach_the_model_one_at_a_time(controller) -> None:
    from deco.app.scenes import scene_paths
    from deco.interop.chat import GenerationOptions

    engine = controller.engines[controller.labels()[0]]
    model = engine.load()
    active, overlaps = [0], []
    original = model.generate

    def spy(*args, **kwargs):
        active[0] += 1
        overlaps.append(active[0])
        time.sleep(0.05)
        try:
            return original(*args, **kwargs)
        finally:
            active[0] -= 1

    image = check_upload(scene_paths()[1])
    model.generate = spy
    try:
        def ask() -> None:
            list(engine.stream(image, "row of blue", [], GenerationOptions(max_new_tokens=3)))

        threads = [threading.Thread(target=ask) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        del model.generate
    assert overlaps == [1, 1, 1]


def test_training_from_the_page_reports_steps_and_errors(tmp_path: Path) -> None:
    from deco.app.training import DemoRun

    seen, go = [], threading.Event()

    def fake_run(out, console, observe):
        seen.append(out)
        console.print("stage 2 of deco")
        observe("encoder", 1, 4, "")
        go.wait(10)
        observe("deco (seed 0)", 3, 10, "stage 2")
        return {}

    run = DemoRun(tmp_path / "demo", runner=fake_run, steps=lambda: (2, 5))
    assert run.view().state == "idle" and run.start()
    time.sleep(0.2)
    view = run.view()
    assert view.state == "running" and view.steps == {"encoder": (1, 4, "")} and "stage 2 of deco" in view.line
    assert not run.start(), "one run per server"
    go.set()
    assert run.wait(10)
    assert seen == [tmp_path / "demo"] and run.view().state == "done" and run.finished == 1

    def failing(out, console, observe):
        raise ConfigError("--out x exists and is not a deco demo folder")

    run = DemoRun(tmp_path / "demo2", runner=failing, steps=lambda: (2, 5))
    assert run.start() and run.wait(10)
    assert run.view().state == "failed" and "not a deco demo folder" in run.view().error


def test_page_builds_without_models_and_says_the_one_command(tmp_path: Path) -> None:
    from deco.app.server import build_app

    page = build_app(None, tmp_path)
    text = str(page.config)
    assert DEMO_COMMAND in text and "Train the quick demo pair" in text


def test_cli_registers_app_and_checks_options() -> None:
    from typer.testing import CliRunner

    from deco.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["app", "--help"])
    assert result.exit_code == 0 and "--demo-dir" in result.output and "127.0.0.1" in result.output
    result = runner.invoke(app, ["app", "--port", "0"])
    assert isinstance(result.exception, ConfigError) and "--port" in str(result.exception)


def test_learned_queries_get_an_index_picker_and_no_grid() -> None:
    from types import SimpleNamespace

    import torch

    from deco.app import views
    from deco.app.engine import Analysis
    from deco.app.handlers import empty_panels, panel_outputs

    maps = torch.softmax(torch.randn(1, 4, 16), -1)
    q2p = SimpleNamespace(out_grid=None, grid=(4, 4), maps=maps, route="attention", note="attention relevance",
                          projector="qformer")
    exp = SimpleNamespace(q2p=q2p, words=[SimpleNamespace(text="left")], word_t2p=maps[0, :1],
                          image=np.zeros((8, 8, 3)), timings={})
    analysis = Analysis(exp, {"within_mean_cos": 0.5, "grid_order_spearman": None}, 0.1)
    out = panel_outputs(analysis)
    assert out[1]["choices"] == [("left", "0")] and out[1]["value"] is None and out[2] is None
    assert out[4]["maximum"] == 3 and out[4]["label"].startswith("query index")
    assert out[5]["visible"] is False and out[5]["value"] is None
    assert "Query-to-Patch route: attention" in out[3] and "learned queries, no grid" in out[3]
    assert "| 0.50 |" in out[7] and "| n/a |" in out[7]
    assert views.patch_grid(analysis) == (4, 4)
    assert len(empty_panels()) == 2 * len(out)  # both panels cleared for a new image


def test_a_run_belongs_to_the_server_every_tab_sees_it_and_its_models(tmp_path: Path) -> None:
    from deco.app import handlers
    from deco.app.training import DemoRun

    go = threading.Event()

    def fake_run(out, console, observe):
        go.wait(10)
        for projector in ("qformer", "deco"):
            _fake_final(Path(out), 0, projector)

    run = DemoRun(tmp_path, runner=fake_run, steps=lambda: (2, 5))
    controller = handlers.Controller([], tmp_path, False, run=run)
    assert "deco demo --quick" in controller.intro()
    assert controller.train_demo().startswith("Training started on the server")
    # A second tab (or the same one after a reload) cannot start another run.
    assert "already in progress" in controller.train_demo()
    box, *_, seen = controller.watch(0, None, "(none)")
    assert "Training the quick demo pair" in box and seen == 0
    go.set()
    assert run.wait(10)
    box, model_a, model_b, intro, train_box, _, seen = controller.watch(0, None, "(none)")
    assert "finished in" in box and seen == 1 and intro.startswith("2 model(s) trained by `deco demo`")
    assert model_a["value"] == "deco (demo)" and model_b["value"] == "qformer (demo)"
    assert model_b["choices"] == ["(none)", "deco (demo)", "qformer (demo)"] and train_box["visible"] is False
    # A tab opened later (a fresh Controller view of the same folder) lists them on load.
    fresh = handlers.Controller([], tmp_path, False)
    model_a, model_b, intro, *_ = fresh.page_state(None, "(none)")
    assert model_a["choices"] == ["deco (demo)", "qformer (demo)"] and "No models" not in intro
