"""The page as a browser sees it: `web-ui` (streamlit run) on a free loopback port over the
real job service, rendered by headless Chromium, which saves a screenshot and the DOM."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.integration.simulator.test_simulate_platform import ROOT, api_url, free_port, stop

__all__ = ["api_url"]
pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(300)]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
START_TIMEOUT_S = 60
BROWSER_TIMEOUT_S = 90
RENDER_TIMEOUT_S = 60
RENDERED_COLOURS = 300


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


def chromium(url: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
            "--virtual-time-budget=60000",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT_S,
        check=False,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_the_page_renders_the_model_list_in_a_browser(
    api_url: str, page_url: str, tmp_path: Path
) -> None:
    first_model = httpx.get(f"{api_url}/models", timeout=10).json()["items"][0]["title"]
    # Virtual time does not wait for Streamlit's websocket, so a load may catch the page before
    # its script has run (an empty skeleton): load it again, within a wall-clock bound.
    deadline = time.monotonic() + RENDER_TIMEOUT_S
    attempt = 0
    while True:
        attempt += 1
        dom = chromium(page_url, tmp_path / f"profile-dom-{attempt}", "--dump-dom")
        assert dom.returncode == 0, dom.stderr[-2000:]
        if first_model in dom.stdout or time.monotonic() > deadline:
            break
    assert "Computer-vision inference" in dom.stdout
    assert first_model in dom.stdout  # the model list came through the API
    assert "Cannot reach the inference API" not in dom.stdout

    screenshot = tmp_path / "web-ui.png"
    while True:
        attempt += 1
        shot = chromium(
            page_url, tmp_path / f"profile-shot-{attempt}", f"--screenshot={screenshot}"
        )
        assert shot.returncode == 0, shot.stderr[-2000:]
        with Image.open(screenshot) as image:
            assert image.format == "PNG" and image.size == (1280, 900)
            colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
        assert colours is not None
        # The skeleton has about a dozen greys; the rendered page's text and widgets hundreds.
        if len(colours) > RENDERED_COLOURS or time.monotonic() > deadline:
            break
    assert len(colours) > RENDERED_COLOURS, f"a blank page after {attempt} loads: {screenshot}"
