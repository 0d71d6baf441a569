"""Open a report page in a real headless Chromium (selenium), check what rendered, screenshot it.

Used by the HTML report test and to make the screenshot committed under ``reports/``::

    python -m evalsuite.reporting.browser reports/market1501-reid-synthetic.html reports/market1501-reid-synthetic.png

Chromium and its driver are found on PATH (Debian packages ``chromium`` and
``chromium-driver``) or through ``EVALSUITE_CHROMIUM`` / ``EVALSUITE_CHROMEDRIVER``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVERS = ("chromedriver", "chromium-driver")
MAX_HEIGHT = 12000


def find_chromium() -> tuple[str, str] | None:
    """(browser binary, chromedriver) or None when either is missing."""
    browser = os.environ.get("EVALSUITE_CHROMIUM") or next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = os.environ.get("EVALSUITE_CHROMEDRIVER") or next((p for p in map(shutil.which, DRIVERS) if p), None)
    for candidate in ("/usr/lib/chromium/chromedriver",):
        if driver is None and Path(candidate).exists():
            driver = candidate
    return (browser, driver) if browser and driver else None


@dataclass
class PageCheck:
    """What the browser saw."""

    title: str
    images: list[dict[str, Any]] = field(default_factory=list)  # alt, naturalWidth, naturalHeight, complete
    tables: int = 0
    cells: int = 0
    headers: list[str] = field(default_factory=list)
    screenshot: Path | None = None

    @property
    def broken_images(self) -> list[dict[str, Any]]:
        return [i for i in self.images if not i["complete"] or i["naturalWidth"] <= 0]


def check_page(html_path: Path, screenshot: Path | None = None, width: int = 1400) -> PageCheck:
    """Load ``html_path`` in headless Chromium, collect image and table facts, save a full-page screenshot."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_chromium()
    if found is None:
        raise RuntimeError("no chromium / chromedriver found (apt-get install chromium chromium-driver, or set EVALSUITE_CHROMIUM / EVALSUITE_CHROMEDRIVER)")
    browser, driver_path = found
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars", f"--window-size={width},1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.get(Path(html_path).resolve().as_uri())
        driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "Promise.all(Array.from(document.images).map(i => i.complete ? 0 : new Promise(r => { i.onload = i.onerror = r; }))).then(done);"
        )
        images = driver.execute_script(
            "return Array.from(document.images).map(i => ({alt: i.alt, naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight, complete: i.complete}));"
        )
        facts = driver.execute_script(
            "return {tables: document.querySelectorAll('table').length, cells: document.querySelectorAll('table td').length,"
            " headers: Array.from(document.querySelectorAll('table th')).map(t => t.textContent.trim())};"
        )
        check = PageCheck(title=driver.title, images=images, tables=facts["tables"], cells=facts["cells"], headers=facts["headers"])
        if screenshot is not None:
            height = min(int(driver.execute_script("return document.documentElement.scrollHeight")), MAX_HEIGHT)
            driver.set_window_size(width, height)
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            if not driver.save_screenshot(str(screenshot)):
                raise RuntimeError(f"chromium could not write the screenshot {screenshot}")
            check.screenshot = Path(screenshot)
        return check
    finally:
        driver.quit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="check an evalsuite HTML report in headless Chromium and screenshot it")
    parser.add_argument("html")
    parser.add_argument("screenshot")
    parser.add_argument("--width", type=int, default=1400)
    args = parser.parse_args(argv)
    check = check_page(Path(args.html), Path(args.screenshot), args.width)
    print(f"{args.html}: {check.tables} tables, {check.cells} cells, {len(check.images)} images ({len(check.broken_images)} broken); screenshot {check.screenshot}")
    return 1 if check.broken_images or not check.cells else 0


if __name__ == "__main__":
    sys.exit(main())
