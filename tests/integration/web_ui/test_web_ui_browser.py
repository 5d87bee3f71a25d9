"""The page as a person uses it: `web-ui` (streamlit run) on a free loopback port over the real
job service and an executor, driven in Debian's Chromium by Playwright. Pick a model, upload a
photo, press Predict, see the bar chart or the boxes; upload several files as a batch and watch
it finish. Screenshots of every step are kept in
`.cache/test-artifacts/web-ui/` (gitignored)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from tests.integration.simulator.test_simulate_platform import ROOT, api_url, free_port, stop
from web_ui.drawing import BOX_COLOURS

__all__ = ["api_url"]
pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(600)]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / ".cache" / "test-artifacts" / "web-ui"
IMAGES = ROOT / ".cache" / "assets" / "images"
START_TIMEOUT_S = 90
STEP_TIMEOUT_MS = 120_000  # a busy 2-core machine: the first prediction loads the model
# How the models' titles start (the description's title names both models further on).
IMAGENET = "MobileNet v2"
COCO = "SSD MobileNet"


@pytest.fixture
def page_url(api_url: str, tmp_path: Path) -> Iterator[str]:
    """`web-ui` on a free loopback port, talking to the test's own job service."""
    port = free_port()
    env = {**os.environ, "API_URL": api_url}
    command = [str(ROOT / ".venv" / "bin" / "web-ui"), "--server.address", "127.0.0.1"]
    log = tmp_path / "web-ui.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--server.port", str(port)], cwd=ROOT, env=env, stdout=out, stderr=out
        )
        try:
            wait_for_page(f"http://127.0.0.1:{port}", process, log)
            yield f"http://127.0.0.1:{port}/"
        finally:
            stop(process)


def wait_for_page(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"web-ui exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/_stcore/health", timeout=2).text == "ok":
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    pytest.fail(f"web-ui not ready in {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        # Playwright's own browser builds cannot be downloaded here: Debian's is used instead.
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, page_url: str, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    opened = context.new_page()
    opened.set_default_timeout(STEP_TIMEOUT_MS)
    expect.set_options(timeout=STEP_TIMEOUT_MS)
    opened.goto(page_url)
    yield opened
    shot(opened, f"{request.node.name}-last")  # what the page showed at the end, pass or fail
    context.close()


def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def model_box(page: Page) -> Locator:
    return page.get_by_role("combobox", name="Model")


def pick_model(page: Page, title: str) -> None:
    """Streamlit's selectbox: open it, then click the option, as a person would."""
    model_box(page).click()
    page.get_by_role("option", name=re.compile("^" + re.escape(title))).click()
    expect(model_box(page)).to_have_value(re.compile(re.escape(title)))


def upload_and_predict(page: Page, photo: Path) -> None:
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(photo)
    expect(page.get_by_role("button", name=f"Remove {photo.name}")).to_be_visible()
    page.get_by_role("button", name="Predict").click()


def test_a_photo_is_classified_into_a_bar_chart(page: Page, api_url: str) -> None:
    titles = [m["title"] for m in httpx.get(f"{api_url}/models", timeout=10).json()["items"]]
    expect(page.get_by_role("heading", name="Computer-vision inference")).to_be_visible()
    expect(model_box(page)).to_have_value(f"{titles[0]} (classification)")
    # The uploader states the API's limit, not Streamlit's 200 MB.
    expect(page.get_by_text("Images up to 10 MiB and 40 megapixels")).to_be_visible()
    expect(page.get_by_text(re.compile(r"^10MB per file"))).to_be_visible()
    expect(page.get_by_text("200MB")).to_have_count(0)
    shot(page, "1-opened")

    pick_model(page, IMAGENET)
    upload_and_predict(page, IMAGES / "parrot.jpg")
    # The answer: the best class as the heading, and its bar chart beside the photo.
    heading = page.get_by_role("heading", name=re.compile(r"^macaw \(\d+\.\d%\)$"))
    expect(heading).to_be_visible()
    chart = page.get_by_test_id("stVegaLiteChart")
    expect(chart).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Job [0-9a-f]{32}: DONE$"))).to_be_visible()
    shot(page, "2-classified")
    assert chart.bounding_box() is not None and chart.bounding_box()["height"] > 100  # type: ignore[index]
    expect(page.get_by_test_id("stAlert")).to_have_count(0)


def test_a_photo_gets_its_detections_boxed(page: Page) -> None:
    pick_model(page, COCO)
    upload_and_predict(page, IMAGES / "kite_and_cold.jpg")
    expect(page.get_by_role("heading", name=re.compile(r"^[1-9]\d* detected$"))).to_be_visible()
    expect(page.get_by_test_id("stVegaLiteChart")).to_be_visible()
    picture = page.get_by_test_id("stImage").first
    expect(picture).to_be_visible()
    shot(page, "3-detected")
    # The boxes are on the picture the page shows: the first box's colour is in it.
    boxed = ARTIFACTS / "3-detected-picture.png"
    picture.screenshot(path=str(boxed))
    red, green, blue = (int(BOX_COLOURS[0][i : i + 2], 16) for i in (1, 3, 5))
    with Image.open(boxed) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 24) or []
    # Scaled and compressed on the way to the screen: near the colour, not exactly it.
    near = sum(
        count for count, (r, g, b) in colours if abs(r - red) + abs(g - green) + abs(b - blue) < 60
    )
    assert near > 100, (near, boxed)
    expect(page.get_by_test_id("stAlert")).to_have_count(0)


def test_several_files_run_as_a_batch_with_a_progress_bar_and_a_results_table(
    page: Page, api_url: str, tmp_path: Path
) -> None:
    pick_model(page, IMAGENET)
    page.get_by_text("Several files (a batch)").click()
    notes = tmp_path / "notes.jpg"
    notes.write_text("a shopping list, not a photo\n")
    files = [IMAGES / "parrot.jpg", IMAGES / "umbrella.jpg", notes]
    expect(page.get_by_text("Upload several images, then press Submit batch.")).to_be_visible()
    # The uploader that takes several files (the page has rerun with it).
    page.locator("[data-testid=stFileUploaderDropzoneInput][multiple]").set_input_files(files)
    for file in files:
        expect(page.get_by_role("button", name=f"Remove {file.name}")).to_be_visible()
    shot(page, "4-batch-chosen")
    page.get_by_role("button", name="Submit batch").click()
    # The bar's text counts the finished files (the bad one is finished at once) up to all.
    done = page.get_by_text(re.compile(r"^Batch [0-9a-f]{32}: 3 of 3 files finished$"))
    expect(done).to_be_visible()
    table = page.get_by_test_id("stDataFrame")
    expect(table).to_be_visible()
    shot(page, "5-batch-finished")
    expect(page.get_by_test_id("stAlert")).to_have_count(0)
    # What the table shows is what the API holds: both photos DONE, the bad file no job.
    jobs = httpx.get(f"{api_url}/jobs", params={"limit": 100}, timeout=10).json()["items"]
    statuses = {job["name"]: job["status"] for job in jobs}
    assert statuses["parrot.jpg"] == "DONE" and statuses["umbrella.jpg"] == "DONE"
    assert "notes.jpg" not in statuses
