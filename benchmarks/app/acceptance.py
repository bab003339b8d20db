"""Issue 28's acceptance sequence with the real `deco demo --quick` run, in headless Chromium.

Tab 1 presses Train and closes; tab 2 opens, sees the run and presses Train again (refused); every
`--every` seconds the time left the page shows is recorded; when the run ends, the real remaining time
of each sample is known and the error of each estimate is written out, together with whether the
models appear in an open tab and in a new one. Then the real pair answers a bundled scene and a clicked
word's maps (with legends) are saved as screenshots.

    PYTHONPATH=src nice -n 10 python benchmarks/app/acceptance.py --out /tmp/accept --json benchmarks/app/x.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _seconds(text: str) -> float | None:
    m = re.search(r"about (at least )?(?:(\d+) h )?(?:(\d+) min )?(\d+)?\s?(?:s|min)? left", text)
    if not m:
        return None
    h, mins, secs = (int(x) if x else 0 for x in m.groups()[1:])
    if "h" in text.split("left")[0].split("about")[-1] and not m.group(3):
        return None
    return h * 3600 + mins * 60 + secs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True, help="demo folder the run writes (emptied first)")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--every", type=float, default=15.0)
    parser.add_argument("--keep-history", action="store_true",
                        help="keep --out's results.json from an earlier run: the estimate then knows every phase")
    args = parser.parse_args()

    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    from deco.app.handlers import Controller
    from deco.app.page import build_page
    from deco.app.server import free_port, serve
    from deco.app.sources import demo_models
    from deco.train.report.runinfo import cpu_model

    # The page offers Train only when the folder holds no models: the earlier run's models go, its results.json
    # (the times the estimate learns from) stays with --keep-history.
    shutil.rmtree(args.out / "runs" if args.keep_history else args.out, ignore_errors=True)
    controller = Controller(demo_models(args.out), args.out, False)
    page = build_page(controller)
    port = free_port()
    serve(page, "127.0.0.1", port, block=False)
    url = f"http://127.0.0.1:{port}/"
    options = Options()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1600,1400"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
    record: dict = {"history": args.keep_history and (args.out / "results.json").is_file(), "machine": cpu_model(), "cores": os.cpu_count(), "load_at_start": os.getloadavg(), "samples": []}
    try:
        driver.get(url)
        time.sleep(5)
        driver.find_element(By.CSS_SELECTOR, "#train").click()
        time.sleep(3)
        first = driver.current_window_handle
        driver.switch_to.new_window("tab")
        second = driver.current_window_handle
        driver.switch_to.window(first)
        driver.close()
        driver.switch_to.window(second)
        driver.get(url)
        time.sleep(5)
        record["run_box_in_new_tab"] = driver.find_element(By.CSS_SELECTOR, "#run").text[:300]
        driver.find_element(By.CSS_SELECTOR, "#train").click()
        time.sleep(3)
        record["second_train_press"] = driver.find_element(By.CSS_SELECTOR, "#status").text
        start = time.monotonic()
        shot = False
        while controller.run.running:
            text = driver.find_element(By.CSS_SELECTOR, "#run").text
            view = controller.run.view()
            est = view.estimate
            record["samples"].append({"t": round(time.monotonic() - start, 1), "elapsed_run": round(view.elapsed_s, 1),
                                      "page_left_s": _seconds(text), "eta_s": None if est is None else est.seconds,
                                      "complete": None if est is None else est.complete, "stage": view.stage,
                                      "steps": {k: list(v) for k, v in view.steps.items()}})
            if not shot and view.steps and any(k not in ("encoder", "lm") for k in view.steps):
                driver.save_screenshot(str(HERE / "run-progress.png"))
                shot = True
            args.json.write_text(json.dumps(record, indent=1))
            time.sleep(args.every)
        end = time.monotonic() - start
        view = controller.run.view()
        record.update(state=view.state, error=view.error, run_seconds=view.seconds, load_at_end=os.getloadavg())
        for s in record["samples"]:
            s["real_left_s"] = round(end - s["t"], 1)
            if s["eta_s"] is not None and s["real_left_s"] > 0:
                s["error"] = round((s["eta_s"] - s["real_left_s"]) / s["real_left_s"], 3)
        time.sleep(4)
        record["open_tab_intro"] = driver.find_element(By.CSS_SELECTOR, "#intro").text
        driver.switch_to.new_window("tab")
        driver.get(url)
        time.sleep(8)
        record["new_tab_intro"] = driver.find_element(By.CSS_SELECTOR, "#intro").text
        driver.find_element(By.CSS_SELECTOR, "#examples button.thumbnail-item").click()
        time.sleep(3)
        driver.find_element(By.CSS_SELECTOR, "#ask").click()
        for _ in range(120):
            time.sleep(2)
            labels = driver.find_elements(By.CSS_SELECTOR, "#words-A label")
            busy = any(e.is_displayed() for e in driver.find_elements(By.CSS_SELECTOR, ".progress-bar-wrap"))
            if labels and not busy:
                break
        driver.find_element(By.CSS_SELECTOR, "#words-A label").click()
        time.sleep(4)
        driver.save_screenshot(str(HERE / "maps-legend-demo-pair.png"))
        for slot in "AB":
            images = driver.find_elements(By.CSS_SELECTOR, f"#word-map-{slot} img")
            if images:
                (HERE / f"word-map-{slot}-demo-pair.png").write_bytes(images[0].screenshot_as_png)
        record["status_after_ask"] = driver.find_element(By.CSS_SELECTOR, "#status").text
    finally:
        args.json.write_text(json.dumps(record, indent=1))
        driver.quit()
        page.close()


if __name__ == "__main__":
    main()
