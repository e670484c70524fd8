"""A live ``mmgr serve`` on a free local port, driven by headless Chromium (Selenium) and plain HTTP.

The browser is Debian's ``chromium`` with its ``chromium-driver`` (``make debs`` installs both); the
driver path is given explicitly, so Selenium never downloads one. Assertions are on the DOM, never
on pixels; a screenshot is saved under the test's temp folder for people to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mmgr_qdrant import MultimodalRetriever
from tests.helpers import CLIPART, sample_rows

DECODER = {"epochs": 4, "patience": 2}

pytestmark = pytest.mark.slow
SERVE = [sys.executable, "-c", "from mmgr_qdrant.cli import main; main()", "serve"]


@dataclass
class Live:
    url: str
    store: Path
    proc: subprocess.Popen[str]
    n_docs: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as res:
        return json.loads(res.read())


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Any) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("live")
    store = root / "store"
    rows = sample_rows(16)
    with MultimodalRetriever.create("web", path=store, encoder=tiny_encoder, decoder_params=DECODER) as r:
        r.add_images([str(CLIPART / row["file"]) for row in rows], captions=[row["caption"] for row in rows], caption_docs=True)
        r.build()
        n = r.count()
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([*SERVE, "--path", str(store), "--collection", "web", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"mmgr serve exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
        try:
            if get_json(url + "/health")["status"] == "ok":
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("mmgr serve did not answer /health within 120 s")
        time.sleep(0.3)
    yield Live(url, store, proc, n)
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_a_second_server_on_the_same_folder_fails_at_start(live: Live) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    res = subprocess.run([*SERVE, "--path", str(live.store), "--collection", "web", "--port", str(free_port())],
                         check=False, capture_output=True, text=True, timeout=120, env=env)
    out = " ".join((res.stdout + res.stderr).split())
    assert res.returncode == 1, out
    assert "is open in another process" in out and "one writer per folder" in out
    assert "Traceback" not in out
    assert get_json(live.url + "/health")["status"] == "ok"  # the first one still serves


def test_the_live_api_answers_like_the_library(live: Live) -> None:
    req = urllib.request.Request(live.url + "/search", data=json.dumps({"text": "a bird", "k": 5}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as res:
        body = json.loads(res.read())
    assert len(body["hits"]) == 5 and body["kind"] == "text"
    assert get_json(live.url + "/stats")["counts"]["total"] == live.n_docs


# -- the page in a real browser ----------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.fail("Debian's chromium and chromium-driver are not installed; run `make debs`.")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)  # an explicit driver: no download
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(driver: Any, condition: Any, what: str, timeout: float = 60) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: condition(d))
    except TimeoutException:
        status = driver.execute_script("return document.getElementById('status').textContent")
        pytest.fail(f"timed out waiting for {what}; the status line says {status!r}")


def count(driver: Any, css: str) -> int:
    return int(driver.execute_script("return document.querySelectorAll(arguments[0]).length", css))


def loaded_images(driver: Any, css: str) -> int:
    return int(driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).filter(i => i.complete && i.naturalWidth > 0).length", css))


def test_search_detail_browse_and_feedback_in_a_browser(live: Live, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d = browser
    d.get(live.url + "/")
    wait_for(d, lambda d: d.find_element(By.ID, "collection").text == "web", "the collection name in the header")

    # Type a query: a grid of hits with thumbnails, scores and docids.
    box = d.find_element(By.ID, "q")
    box.send_keys("a bird", Keys.ENTER)
    wait_for(d, lambda d: count(d, "#results li.card") == 24, "24 result cards")
    wait_for(d, lambda d: loaded_images(d, "#results img") >= 3, "thumbnails to load")
    first = d.find_elements(By.CSS_SELECTOR, "#results li.card")[0]
    assert "score" in first.text and "docid" in first.text
    assert "hits for" in d.find_element(By.ID, "status").text

    # Explain panel.
    d.find_element(By.ID, "explain").click()
    box.send_keys(Keys.ENTER)
    wait_for(d, lambda d: d.find_element(By.ID, "explain-panel").get_attribute("hidden") is None, "the explain panel")
    d.find_element(By.CSS_SELECTOR, "#explain-panel summary").click()
    panel = d.find_element(By.ID, "explain-body").text
    assert "prefixes admitted" in panel and "documents admitted" in panel and "p(prefix)" in panel

    # Feedback on a hit: stored, or the API says the library has none (shown in the status line).
    d.find_elements(By.CSS_SELECTOR, "#results li.card .votes button.up")[0].click()
    if get_json(live.url + "/health")["feedback"]:
        wait_for(d, lambda d: "Thanks" in d.find_element(By.ID, "status").text, "the feedback confirmation")
        assert d.find_elements(By.CSS_SELECTOR, "#results li.card .votes button.up")[0].get_attribute("aria-pressed") == "true"
    else:
        wait_for(d, lambda d: "no feedback API" in d.find_element(By.ID, "status").text, "the feedback error message")
        assert "error" in d.find_element(By.ID, "status").get_attribute("class")

    # Open a detail view from the keyboard: linked caption and more like this.
    card = next(c for c in d.find_elements(By.CSS_SELECTOR, "#results li.card") if c.find_elements(By.TAG_NAME, "img"))
    d.execute_script("arguments[0].focus()", card)
    d.switch_to.active_element.send_keys(Keys.ENTER)
    wait_for(d, lambda d: d.find_element(By.ID, "detail").get_attribute("open") is not None, "the detail dialog")
    wait_for(d, lambda d: count(d, "#similar li.card") >= 5, "more-like-this cards")
    wait_for(d, lambda d: count(d, "#linked li.card") >= 1, "the linked caption")
    assert d.find_element(By.CSS_SELECTOR, "#linked li.card .textbox").text
    assert "docid" in d.find_element(By.ID, "detail-body").text
    d.find_element(By.CSS_SELECTOR, "#similar li.card").click()  # more like this: the dialog shows that document
    wait_for(d, lambda d: count(d, "#similar li.card") >= 5, "the next document's neighbours")
    d.find_element(By.CSS_SELECTOR, "#detail .close").click()
    wait_for(d, lambda d: d.find_element(By.ID, "detail").get_attribute("open") is None, "the dialog to close")

    # Browse two levels down the docid hierarchy.
    d.find_element(By.ID, "tab-browse").click()
    wait_for(d, lambda d: count(d, "#nodes li.node") == 2, "the two modality nodes")
    labels = [n.text for n in d.find_elements(By.CSS_SELECTOR, "#nodes li.node .caption")]
    assert any(t.startswith("image") for t in labels) and any(t.startswith("text") for t in labels)
    d.find_element(By.CSS_SELECTOR, '#nodes li.node[data-prefix="1"]').click()
    wait_for(d, lambda d: count(d, "#crumbs button") == 2 and count(d, "#nodes li.node") >= 1, "the image branch")
    wait_for(d, lambda d: loaded_images(d, "#nodes .samples img") >= 1, "sample thumbnails")
    level1 = [n.get_attribute("data-prefix") for n in d.find_elements(By.CSS_SELECTOR, "#nodes li.node")]
    assert all(p.startswith("1.") and p.count(".") == 1 for p in level1)
    d.find_elements(By.CSS_SELECTOR, "#nodes li.node")[0].click()
    wait_for(d, lambda d: count(d, "#crumbs button") == 3 and count(d, "#nodes li.node") >= 1, "the second level")
    level2 = [n.get_attribute("data-prefix") for n in d.find_elements(By.CSS_SELECTOR, "#nodes li.node")]
    assert level2 and all(p.startswith(level1[0] + ".") for p in level2)
    d.save_screenshot(str(tmp_path / "browse.png"))

    # An image query from the file picker.
    d.find_element(By.ID, "tab-search").click()
    query_png = tmp_path / "query.png"
    Image.fromarray(np.full((48, 48, 3), 200, np.uint8)).save(query_png)
    d.find_element(By.ID, "file").send_keys(str(query_png))
    wait_for(d, lambda d: "image" in d.find_element(By.ID, "status").text and count(d, "#results li.card") == 24, "image-query results")

    # Phone width: no sideways scrolling, two columns.
    d.set_window_size(390, 844)
    overflow = d.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    columns = d.execute_script("return getComputedStyle(document.getElementById('results')).gridTemplateColumns.split(' ').length")
    assert columns == 2
    shot = tmp_path / "serve.png"
    d.set_window_size(1280, 900)
    assert d.save_screenshot(str(shot)) and shot.stat().st_size > 1000
