"""The screenshot of `deco app` on docs/app.md (copied to docs/img/app-screenshot.png): two demo models side by side on a bundled scene, in headless Chromium.

  python benchmarks/app/screenshot.py --demo-dir deco-demo --out benchmarks/app/screenshot.png
Picks the first bundled scene, asks its first question, waits for both answers and their maps, clicks
the first answer word and a token-grid cell, and saves the page. Needs chromium + chromium-driver.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait


def main() -> None:
    """Serve the app on a free loopback port, drive it, save the screenshot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-dir", type=Path, default=Path("deco-demo"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/app/screenshot.png"))
    parser.add_argument("--scene", default="two-shapes")
    args = parser.parse_args()

    from deco.app.server import build_app, free_port, serve

    page = build_app(None, args.demo_dir)
    port = free_port()
    serve(page, "127.0.0.1", port, block=False)
    options = Options()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1500,1700"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        wait = WebDriverWait(driver, 600)
        driver.get(f"http://127.0.0.1:{port}/")
        for slot in ("A", "B"):
            wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, f"#heading-{slot}"), "visual tokens"))
        driver.find_element(By.XPATH, f"//*[@id='scene']//label[contains(., '{args.scene}')]").click()
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#status"), "Questions to try"))
        driver.find_element(By.CSS_SELECTOR, "#ask").click()
        for slot in ("A", "B"):
            wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, f"#words-{slot} label"))).click()
            wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, f"#word-map-{slot} img")))
        grid = driver.find_element(By.CSS_SELECTOR, "#grid-A img")
        ActionChains(driver).move_to_element_with_offset(grid, -grid.size["width"] // 4, -grid.size["height"] // 4).click().perform()
        number = driver.find_element(By.CSS_SELECTOR, "#token-A input[type=number]")
        wait.until(lambda _: number.get_attribute("value") not in ("", "0"))  # the clicked cell is selected
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.execute_script("window.scrollTo(0, 0)")
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1500, min(int(height) + 100, 2400))
        driver.save_screenshot(str(args.out))
        print(f"wrote {args.out}")
    finally:
        driver.quit()
        page.close()


if __name__ == "__main__":
    main()
