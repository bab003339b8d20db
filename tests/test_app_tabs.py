"""`deco app` as a researcher keeps it open, in headless Chromium: two models side by side, a fresh tab, the
server's one training run seen from several tabs, the one upload limit, maps with legends in sync.

Tiny models and a fake demo runner keep it short; the real demo run is benchmarks/app/acceptance.py.
Screenshots of the maps with their legends land in benchmarks/app/.
"""

from __future__ import annotations

import io
import shutil
import threading
from pathlib import Path

import pytest

pytest.importorskip("gradio")
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from test_app_browser import SHOTS, _status, _upload  # noqa: E402
from test_app_browser import browser as _browser  # noqa: E402,F401 - the fixture, shared

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")]
LIMIT_MB = 0.05


@pytest.fixture(scope="module")
def pair(saved_tiny_model: Path, one_thread_module):
    """The app comparing two tiny models, with a 0.05 MB upload limit; its URL."""
    from deco.app.server import build_app, free_port, serve

    page = build_app([str(saved_tiny_model), str(saved_tiny_model)], max_upload_mb=LIMIT_MB)
    port = free_port()
    serve(page, "127.0.0.1", port, max_upload_mb=LIMIT_MB, block=False)
    yield f"http://127.0.0.1:{port}/"
    page.close()


def _text(driver, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


def _ask(driver, wait, question: str, button: str = "#ask") -> None:
    box = driver.find_element(By.CSS_SELECTOR, "#question textarea")
    box.clear()
    box.send_keys(question)
    driver.find_element(By.CSS_SELECTOR, button).click()


def test_fresh_tab_new_conversation_then_ask_answers_with_both_models(pair: str, _browser) -> None:  # noqa: F811 - the shared fixture
    browser = _browser
    wait = WebDriverWait(browser, 240)
    browser.get(pair)
    for slot in "AB":
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, f"#heading-{slot}"), "visual tokens per image"))
    # The gallery's first example sets the image (and its question) for both chats.
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#examples button.thumbnail-item"))).click()
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#status"), "Demo scene"))
    browser.find_element(By.CSS_SELECTOR, "#clear").click()
    _ask(browser, wait, "cell of red")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chat-B .message")) >= 2)
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#words-B label")))
    assert "choose a model first" not in _status(browser)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#chat-A .message")) >= 2
    for slot in "AB":  # the image beside each chat
        assert browser.find_elements(By.CSS_SELECTOR, f"#thumb-{slot} img")

    # Regenerate asks the same question again: still one question and one answer per chat.
    before = len(browser.find_elements(By.CSS_SELECTOR, "#chat-A .message"))
    browser.find_element(By.CSS_SELECTOR, "#regenerate").click()
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#words-B label")))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chat-A .message")) == before)
    assert "nothing to regenerate" not in _status(browser)

    # A word clicked in A shows that word's map in both panels, each with its legend naming model and word.
    wait.until(lambda d: not any(e.is_displayed() for e in d.find_elements(By.CSS_SELECTOR, ".progress-bar-wrap")))
    wait.until(lambda d: _click(d, "#words-A label"))  # both answers explained: a click is not undone
    maps = [wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, f"#word-map-{s} img"))) for s in "AB"]
    wait.until(lambda d: all(m.get_attribute("complete") == "true" and m.size["height"] > m.size["width"]
                             for m in maps))
    picked = [e.get_attribute("value") for e in browser.find_elements(By.CSS_SELECTOR, "#words-B input:checked")]
    assert picked == ["0"], "the same word is selected in model B's answer"
    _check_legend(maps[0])
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "maps-legend-both-models.png"))
    (SHOTS / "word-map-with-legend.png").write_bytes(maps[0].screenshot_as_png)
    assert not _status(browser).strip(), _status(browser)


def _click(driver, css: str) -> bool:
    from selenium.common.exceptions import WebDriverException

    try:
        driver.find_element(By.CSS_SELECTOR, css).click()
        return True
    except WebDriverException:
        return False


def _check_legend(image) -> None:
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(image.screenshot_as_png)).convert("RGB"), dtype=np.float32)
    legend = pixels[int(pixels.shape[0] * 0.88):]  # under the map: caption, colour bar, scale
    assert legend.std() > 20, "the map has a legend (colour bar and scale) under it"


def test_one_upload_limit_and_literal_brackets_in_messages(pair: str, _browser, tmp_path: Path) -> None:  # noqa: F811 - the shared fixture
    browser = _browser
    import numpy as np
    from PIL import Image

    wait = WebDriverWait(browser, 240)
    browser.get(pair)
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#heading-A"), "visual tokens per image"))
    assert f"up to {LIMIT_MB:g} MB" in _text(browser, "#upload")
    big = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(big)
    assert big.stat().st_size > LIMIT_MB * 1e6
    _upload(browser, wait, big)
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#status"), f"uploads up to {LIMIT_MB:g} MB"))
    assert "'noise.png' is 0.1 MB" in _status(browser)
    assert not browser.find_elements(By.CSS_SELECTOR, ".toast-body"), "no second, different message"

    small = tmp_path / "scene.png"
    from deco.app.scenes import scene_paths

    shutil.copy(scene_paths()[0], small)
    _upload(browser, wait, small)
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#status"), "scene.png"))
    _ask(browser, wait, "<image> cell of red")
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#status"), "without <image>"))


def test_a_run_is_the_servers_every_tab_sees_it_and_a_second_is_refused(_browser, tmp_path: Path) -> None:  # noqa: F811 - the shared fixture
    browser = _browser
    from deco.app.server import build_app, free_port, serve
    from deco.app.training import DemoRun

    go, seen = threading.Event(), []

    def fake_run(out, console, observe):
        seen.append(out)
        for step in range(1, 4):
            observe("deco (seed 0)", step, 10, "stage 1")
            if step == 1:
                go.wait(60)
        (Path(out) / "runs" / "seed0" / "deco" / "stage2" / "final").mkdir(parents=True)
        (Path(out) / "runs" / "seed0" / "deco" / "stage2" / "final" / "deco_model.json").write_text("{}")

    run = DemoRun(tmp_path, runner=fake_run, steps=lambda: (2, 5))
    page = build_app(None, tmp_path, run=run)
    port = free_port()
    serve(page, "127.0.0.1", port, block=False)
    url = f"http://127.0.0.1:{port}/"
    wait = WebDriverWait(browser, 120)
    first = browser.current_window_handle
    try:
        browser.get(url)
        wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#train"))).click()
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#run"), "Training the quick demo pair"))
        # A new tab; the first one closes: the run goes on and the new tab shows it.
        browser.switch_to.new_window("tab")
        second = browser.current_window_handle
        browser.switch_to.window(first)
        browser.close()
        browser.switch_to.window(second)
        browser.get(url)
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#run"), "deco (seed 0), stage 1: 1 / 10"))
        assert run.running
        browser.find_element(By.CSS_SELECTOR, "#train").click()
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#status"), "already in progress"))
        assert len(seen) == 1
        go.set()
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#run"), "finished in"))
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#intro"), "1 model(s)"))
        # Yet another tab lists the model too (no server restart).
        browser.switch_to.new_window("tab")
        browser.get(url)
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#intro"), "1 model(s)"))
    finally:
        go.set()
        page.close()
