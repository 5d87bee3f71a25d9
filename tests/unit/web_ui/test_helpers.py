"""The page's pure helpers: chart rows, job options, drawing, samples, settings, polling."""

from __future__ import annotations

import gzip
import io
import struct
import tomllib
from pathlib import Path

import pytest
from PIL import Image

from inference_client import InferenceClient, Job
from inference_common.assets import load_manifest
from inference_service.settings import ServiceSettings
from tests.unit.simulator.fake_api import synchronously
from tests.unit.web_ui.conftest import APP, CREDIT, png
from tests.unit.web_ui.fake_api import (
    JOB_ID,
    FakeApi,
    detection_result,
    digits_result,
)
from web_ui.__main__ import command
from web_ui.chart_data import (
    Bar,
    chart_table,
    classification_bars,
    detection_bars,
    is_digit_model,
    job_options,
)
from web_ui.drawing import draw_detections, for_display, open_rgb
from web_ui.samples import media_type_of, mnist_digits, photos
from web_ui.settings import DEFAULT_API_URL, MIB, UiSettings, load_settings
from web_ui.waiting import JobTimeout, wait_for_job

pytestmark = pytest.mark.timeout(30)


def test_a_full_distribution_is_in_class_order() -> None:
    bars = classification_bars(digits_result(3), label_count=10)
    assert [bar.label for bar in bars] == [str(d) for d in range(10)]
    assert bars[3] == Bar("3", 0.91)


def test_a_top_k_is_in_score_order() -> None:
    result = {
        "classes": [
            {"index": 5, "label": "b", "score": 0.2},
            {"index": 1, "label": "a", "score": 0.7},
        ]
    }
    assert classification_bars(result, label_count=1001) == [Bar("a", 0.7), Bar("b", 0.2)]
    assert classification_bars(result, label_count=None) == [Bar("a", 0.7), Bar("b", 0.2)]


def test_a_top_k_leaves_out_the_classes_scored_zero() -> None:
    # What a quantised model answers for a sure macaw: its top 5 padded with zeros.
    classes = [{"index": 89, "label": "macaw", "score": 0.996}] + [
        {"index": i, "label": label, "score": 0.0}
        for i, label in ((0, "background"), (1, "tench"), (2, "goldfish"), (3, "shark"))
    ]
    result = {"classes": classes}
    assert classification_bars(result, label_count=1001) == [Bar("macaw", 0.996)]


def test_a_full_distribution_keeps_every_class_even_at_zero() -> None:
    classes = [{"index": d, "label": str(d), "score": 1.0 if d == 4 else 0.0} for d in range(10)]
    bars = classification_bars({"classes": classes}, label_count=10)
    assert [bar.label for bar in bars] == [str(d) for d in range(10)]


def test_detection_bars_are_numbered_like_the_boxes() -> None:
    assert detection_bars(detection_result()) == [Bar("1. dog", 0.9)]
    assert chart_table([Bar("1. dog", 0.9)], "score") == {"label": ["1. dog"], "score": [0.9]}


def test_job_options_ask_for_every_digit_and_a_top_five_otherwise() -> None:
    assert job_options("classification", 10) == {"top_k": 10}
    assert job_options("classification", 1001) == {"top_k": 5}
    assert job_options("classification", None) == {"top_k": 5}
    assert job_options("object_detection", 90) == {}
    assert is_digit_model("classification", 10)
    assert not is_digit_model("object_detection", 10)


def test_boxes_are_drawn_at_their_pixels() -> None:
    detections = detection_result()["detections"]
    image = draw_detections(png((100, 80), 255), detections)
    assert image.size == (100, 80) and image.mode == "RGB"
    red = (255, 59, 48)
    assert image.getpixel((10, 40)) == red  # left edge
    assert image.getpixel((49, 40)) == red  # right edge
    assert image.getpixel((30, 59)) == red  # bottom edge
    assert image.getpixel((30, 40)) == (255, 255, 255)  # inside
    assert image.getpixel((80, 70)) == (255, 255, 255)  # outside


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF"])
def test_every_common_format_opens_as_rgb(fmt: str) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (30, 20), (0, 128, 255)).save(buffer, format=fmt)
    image = open_rgb(buffer.getvalue())
    assert image.mode == "RGB" and image.size == (30, 20)


def test_tiny_images_are_enlarged_by_a_whole_factor() -> None:
    assert for_display(Image.new("L", (28, 28))).size == (280, 280)
    assert for_display(Image.new("L", (640, 480))).size == (640, 480)


def test_media_types_follow_the_suffix() -> None:
    assert media_type_of("a.JPG") == "image/jpeg"
    assert media_type_of("a.tif") == "image/tiff"
    assert media_type_of("a.svg", "image/svg+xml") == "image/svg+xml"


def test_photos_carry_their_manifest_credit(asset_cache: Path) -> None:
    manifest = load_manifest(asset_cache.parent / "manifest.toml")
    (sample,) = photos(manifest, asset_cache)
    assert (sample.name, sample.media_type, sample.credit) == ("card.png", "image/png", CREDIT)


def test_mnist_digits_become_named_pngs(asset_cache: Path) -> None:
    mnist = asset_cache / "datasets" / "mnist"
    mnist.mkdir(parents=True)
    pixels = bytes(i % 256 for i in range(2 * 28 * 28))
    with gzip.open(mnist / "t10k-images-idx3-ubyte.gz", "wb") as out:
        out.write(struct.pack(">IIII", 2051, 2, 28, 28) + pixels)
    with gzip.open(mnist / "t10k-labels-idx1-ubyte.gz", "wb") as out:
        out.write(struct.pack(">II", 2049, 2) + bytes([7, 2]))
    manifest = load_manifest(asset_cache.parent / "manifest.toml")
    samples = mnist_digits(manifest, asset_cache, count=2)
    assert [s.name for s in samples] == ["mnist-00-digit-7.png", "mnist-01-digit-2.png"]
    with Image.open(io.BytesIO(samples[1].data)) as image:
        assert image.size == (28, 28) and image.mode == "L"
        assert image.tobytes() == pixels[28 * 28 :]


def test_no_dataset_means_no_digits(asset_cache: Path) -> None:
    manifest = load_manifest(asset_cache.parent / "manifest.toml")
    assert mnist_digits(manifest, asset_cache) == []


def test_settings_default_to_the_local_service(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("API_URL", "API_KEY", "WEB_UI_JOB_TIMEOUT_S"):
        monkeypatch.delenv(name, raising=False)
    assert load_settings().api_url == DEFAULT_API_URL
    monkeypatch.setenv("API_URL", "http://x/api")
    monkeypatch.setenv("API_KEY", "k")
    monkeypatch.setenv("WEB_UI_JOB_TIMEOUT_S", "5")
    settings = load_settings()
    assert (settings.api_url, settings.api_key, settings.job_timeout_s) == ("http://x/api", "k", 5)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def client_of(fake: FakeApi) -> InferenceClient:
    return InferenceClient("http://api.test", transport=fake.transport())


@synchronously
async def test_polling_reports_each_change_once_and_stops_at_a_terminal_status() -> None:
    fake = FakeApi(statuses=["QUEUED", "RUNNING", "RUNNING", "DONE"])
    clock, seen = FakeClock(), []
    job = await wait_for_job(
        client_of(fake),
        Job(JOB_ID, "QUEUED"),
        on_status=lambda j: seen.append(j.status),
        poll_interval_s=0.3,
        sleep=clock.sleep,
        clock=lambda: clock.now,
    )
    assert job.status == "DONE"
    assert seen == ["QUEUED", "RUNNING", "DONE"]
    assert clock.sleeps == [0.3] * 4


@synchronously
async def test_polling_gives_up_after_the_timeout() -> None:
    clock = FakeClock()
    with pytest.raises(JobTimeout, match="still RUNNING after 1 s"):
        await wait_for_job(
            client_of(FakeApi(statuses=["RUNNING"])),
            Job(JOB_ID, "QUEUED"),
            on_status=lambda _: None,
            poll_interval_s=0.3,
            timeout_s=1,
            sleep=clock.sleep,
            clock=lambda: clock.now,
        )
    assert len(clock.sleeps) == 4


def test_the_image_limits_are_the_job_services(monkeypatch: pytest.MonkeyPatch) -> None:
    service = ServiceSettings.model_fields
    for name in ("max_image_bytes", "max_image_pixels"):
        monkeypatch.delenv(name.upper(), raising=False)
        assert getattr(load_settings(), name) == service[name].default, name
    assert load_settings().max_upload_mb == 10
    assert load_settings().image_limits() == "10 MiB and 40 megapixels"
    # One setting for both: a deployment that raises the service's limit raises the page's.
    monkeypatch.setenv("MAX_IMAGE_BYTES", str(25 * MIB))
    monkeypatch.setenv("MAX_IMAGE_PIXELS", "1500000")
    settings = load_settings()
    assert settings.max_upload_mb == 25
    assert settings.image_limits() == "25 MiB and 1.5 megapixels"
    assert UiSettings(max_image_bytes=5000).max_upload_mb == 1
    assert UiSettings(max_image_bytes=5000).image_limits() == "5,000 bytes and 1.5 megapixels"


def test_the_launcher_runs_the_page_with_usage_statistics_off_and_the_apis_upload_limit() -> None:
    args = command(["--server.port", "9999"], UiSettings(max_image_bytes=3 * MIB + 5))
    assert args[:3] == ["streamlit", "run", str(APP)]
    assert args[3:7] == ["--client.toolbarMode", "minimal", "--server.maxUploadSize", "3"]
    assert args[7:9] == ["--server.port", "9999"]
    # Last, so they win over anything given before them.
    assert args[-4:] == ["--browser.gatherUsageStats", "false", "--server.headless", "true"]


def test_the_config_file_turns_usage_statistics_off() -> None:
    config = tomllib.loads((APP.parents[2] / ".streamlit" / "config.toml").read_text())
    assert config["browser"]["gatherUsageStats"] is False
