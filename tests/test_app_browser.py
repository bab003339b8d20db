"""`deco app` in a real browser: headless Chromium uploads an image, asks, clicks a word, sees its map.

Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them) and Selenium; skipped, saying
so, where they are missing. The screenshot lands in benchmarks/app/browser-test.png.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

pytest.importorskip("gradio")
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

# Gradio 6 calls pandas APIs that pandas 3 deprecates; not ours to fix.
pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
SHOTS = Path(__file__).resolve().parents[1] / "benchmarks" / "app"


@pytest.fixture(scope="module")
def served(saved_tiny_model: Path, one_thread_module):
    """The app on a free loopback port with the tiny saved model; its URL."""
    from deco.app.server import build_app, free_port, serve

    page = build_app([str(saved_tiny_model)])
    port = free_port()
    serve(page, "127.0.0.1", port, block=False)
    yield f"http://127.0.0.1:{port}/"
    page.close()


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through chromedriver."""
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("chromium and chromedriver not installed (apt-get install -y chromium chromium-driver)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1600,1400"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def _status(driver) -> str:
    return driver.find_element(By.CSS_SELECTOR, "#status").text


def _upload(driver, wait, path: Path) -> None:
    field = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#upload input[type=file]")))
    field.send_keys(str(path))


def test_upload_ask_click_word_shows_a_heat_map(served: str, browser, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from deco.app.scenes import scene_paths

    # Generous: a 2-core CI machine shared with other jobs can take minutes to import torch and load.
    wait = WebDriverWait(browser, 240)
    browser.get(served)
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#heading-A"), "visual tokens per image"))

    # A file that is not an image: a clear message on the page, and the page keeps working.
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not a picture")
    _upload(browser, wait, bogus)
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#status"), "not an image"))
    assert "notes.txt" in _status(browser)

    image = tmp_path / "scene.png"
    shutil.copy(scene_paths()[0], image)
    _upload(browser, wait, image)
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#status"), "scene.png"))

    question = browser.find_element(By.CSS_SELECTOR, "#question textarea")
    question.send_keys("cell of red")
    browser.find_element(By.CSS_SELECTOR, "#ask").click()
    # The analysis follows the answer: the answer's words appear as choices to click.
    word = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#words-A label")))
    answer = browser.find_elements(By.CSS_SELECTOR, "#chat-A .message")
    assert len(answer) >= 2, "the question and the answer are shown"
    assert "Query-to-Patch route: exact" in browser.find_element(By.CSS_SELECTOR, "#route-A").text
    assert "within_mean_cos" in browser.find_element(By.CSS_SELECTOR, "#metrics-A").text

    word.click()
    overlay = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#word-map-A img")))
    wait.until(lambda d: overlay.size["width"] > 50 and overlay.get_attribute("complete") == "true")
    pixels = np.asarray(Image.open(io.BytesIO(overlay.screenshot_as_png)).convert("RGB"), dtype=np.float32)
    assert pixels.std() > 10, "the overlay shows a heat map, not a blank image"

    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "browser-test.png"))
    assert not _status(browser).strip(), f"no error on the page: {_status(browser)}"
