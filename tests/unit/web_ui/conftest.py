"""AppTest runs the real page in this process; the API is faked at the HTTP level."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

import web_ui.bootstrap
from inference_client import RetryPolicy
from tests.unit.web_ui.fake_api import FakeApi

APP = Path(__file__).resolve().parents[3] / "web-ui" / "src" / "web_ui" / "app.py"
CREDIT = '"Test card" by Nobody, CC0'


def png(size: tuple[int, int] = (28, 28), colour: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def asset_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A manifest with one credited photo, and a cache holding it (no MNIST data set)."""
    cache = tmp_path / "assets"
    (cache / "images").mkdir(parents=True)
    data = png((64, 48), 200)
    (cache / "images" / "card.png").write_bytes(data)
    manifest = tmp_path / "manifest.toml"
    manifest.write_text(
        "model = []\n\n[[file]]\n"
        'path = "images/card.png"\nkind = "image"\nurl = "https://example.invalid/card.png"\n'
        f'sha256 = "{"0" * 64}"\nsize = {len(data)}\nlicense = "CC0-1.0"\n'
        f"credit = '{CREDIT}'\n"
    )
    monkeypatch.setenv("ASSETS_MANIFEST", str(manifest))
    monkeypatch.setenv("ASSETS_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    # Retries as the page makes them, with waits of milliseconds.
    fast = RetryPolicy(first_contact_s=0.05, backoff_s=0.001, max_backoff_s=0.01)
    monkeypatch.setattr(web_ui.bootstrap, "retry_policy", lambda: fast)
    monkeypatch.setenv("API_URL", "http://api.test/api/v1/inference")
    monkeypatch.setenv("WEB_UI_POLL_INTERVAL_S", "0.01")
    monkeypatch.setenv("WEB_UI_JOB_TIMEOUT_S", "5")
    monkeypatch.setenv("ASSETS_CACHE_DIR", str(tmp_path / "no-assets"))
    st.cache_data.clear()  # the sample list is cached per process
    yield
    st.cache_data.clear()


@pytest.fixture
def serve(app_env: None, monkeypatch: pytest.MonkeyPatch) -> Callable[[FakeApi], AppTest]:
    """The page, first run, talking to the given fake."""

    def start(fake: FakeApi) -> AppTest:
        monkeypatch.setattr(web_ui.bootstrap, "http_transport", fake.transport)
        return AppTest.from_file(str(APP), default_timeout=60).run()

    return start


def chart_rows(at: AppTest) -> list[dict[str, object]]:
    """The rows behind the page's only bar chart (Arrow IPC in the Vega-Lite element)."""
    charts = at.get("vega_lite_chart")
    assert len(charts) == 1, charts
    (dataset,) = charts[0].proto.datasets
    table = pa.ipc.open_stream(dataset.data.data).read_all()
    return list(table.to_pylist())
