"""The page end to end: AppTest drives the real app against the job service and an executor,
started here on a free port with the test's own topics and database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from inference_common.assets import load_manifest

# The job service and one executor on a free port, exactly as the simulator's test starts them.
from tests.integration.simulator.test_simulate_platform import api_url

__all__ = ["api_url"]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

ROOT = Path(__file__).resolve().parents[3]
APP = ROOT / "web-ui" / "src" / "web_ui" / "app.py"
IMAGES = ROOT / ".cache" / "assets" / "images"
RUN_TIMEOUT_S = 150


@pytest.fixture
def page(api_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppTest]:
    if not (IMAGES / "parrot.jpg").is_file():
        pytest.skip("sample images not fetched: run `make assets`")
    monkeypatch.setenv("API_URL", api_url)
    monkeypatch.setenv("WEB_UI_JOB_TIMEOUT_S", "120")
    st.cache_data.clear()
    yield AppTest.from_file(str(APP), default_timeout=RUN_TIMEOUT_S).run()
    st.cache_data.clear()


def choose_model(at: AppTest, title_start: str) -> AppTest:
    (option,) = [o for o in at.selectbox[0].options if o.startswith(title_start)]
    return at.selectbox[0].set_value(option).run()


def test_an_uploaded_parrot_is_a_macaw_and_a_sample_digit_is_read(page: AppTest) -> None:
    at = choose_model(page, "MobileNet v2")
    at.file_uploader[0].set_value(
        ("parrot.jpg", (IMAGES / "parrot.jpg").read_bytes(), "image/jpeg")
    )
    at = at.run().button[0].click().run()
    assert not at.exception and not at.error, at.error
    assert at.status[0].label.endswith(": DONE")
    assert at.subheader[0].value.startswith("macaw")
    bars = at.get("vega_lite_chart")
    assert len(bars) == 1

    at = choose_model(at, "MNIST digits, TFLite Micro LSTM, float32")
    at = at.radio[0].set_value("Try a sample").run()
    digit = next(o for o in at.selectbox[1].options if o.startswith("mnist-00-"))
    at = at.selectbox[1].set_value(digit).run()
    assert at.caption[0].value.startswith("Image credit: MNIST by Yann LeCun")
    at = at.button[0].click().run()
    assert not at.exception and not at.error, at.error
    expected = digit.removesuffix(".png").rsplit("-", 1)[-1]
    assert at.subheader[0].value.startswith(f"{expected} (")


def test_a_detection_model_boxes_the_sample_photo(page: AppTest) -> None:
    at = choose_model(page, "SSD MobileNet")
    at = at.radio[0].set_value("Try a sample").run()
    at = at.selectbox[1].set_value("pets.jpg").run()
    manifest = load_manifest(ROOT / "assets" / "manifest.toml")
    credit = next(f.credit for f in manifest.images() if f.path == "images/pets.jpg")
    assert at.caption[0].value == f"Image credit: {credit}"
    at = at.button[0].click().run()
    assert not at.exception and not at.error, at.error
    assert at.status[0].label.endswith(": DONE")
    detected = int(at.subheader[0].value.split()[0])
    assert detected >= 1
    assert at.image[0].captions == [f"pets.jpg (credit: {credit})"]
