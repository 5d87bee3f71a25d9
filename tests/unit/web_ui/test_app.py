"""The page under Streamlit's AppTest, with the job API faked at the HTTP level."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

import web_ui.bootstrap
import web_ui.page
from tests.unit.web_ui.conftest import APP, CREDIT, chart_rows, png
from tests.unit.web_ui.fake_api import IMAGENET, MNIST, SSD, FakeApi, detection_result, problem
from web_ui.drawing import draw_detections

pytestmark = pytest.mark.timeout(60)
Serve = Callable[[FakeApi], AppTest]


def upload_and_predict(at: AppTest, data: bytes, name: str = "digit.png") -> AppTest:
    at.file_uploader[0].set_value((name, data, "image/png")).run()
    return at.button[0].click().run()


def query_field(request: httpx.Request, name: str) -> str:
    """The create's fields travel in the query; the body is the image itself."""
    return str(request.url.params[name])


def test_the_model_list_comes_from_the_api(serve: Serve) -> None:
    at = serve(FakeApi())
    assert not at.exception
    assert at.selectbox[0].options == [
        "MNIST digits, TFLite Micro LSTM, float32 (classification)",
        "ImageNet, MobileNet v2 (classification)",
        "COCO objects, SSD MobileNet v1 (object_detection)",
    ]
    assert at.info[0].value.startswith("Upload an image")
    assert at.button == []  # Predict appears once there is an image


def test_a_digit_gets_ten_bars_in_digit_order_and_the_best_as_heading(serve: Serve) -> None:
    fake = FakeApi()
    at = upload_and_predict(serve(fake), png())
    assert not at.exception and not at.error
    rows = chart_rows(at)
    assert [row["label"] for row in rows] == [str(d) for d in range(10)]
    assert rows[7]["probability"] == pytest.approx(0.91)
    assert at.subheader[0].value == "7 (91.0%)"
    assert at.image[0].captions == ["digit.png"]
    create = next(r for r in fake.requests if r.method == "POST")
    assert query_field(create, "model") == MNIST["name"]
    assert query_field(create, "execute") == "true"
    assert query_field(create, "top_k") == "10"
    assert create.headers["content-type"] == "image/png"
    assert at.status[0].label.endswith(": DONE")


def test_imagenet_asks_for_the_top_five(serve: Serve) -> None:
    classes = [
        {"index": 89, "label": "macaw", "score": 0.8},
        {"index": 90, "label": "lorikeet", "score": 0.1},
        {"index": 0, "label": "background", "score": 0.0},
    ]
    fake = FakeApi(result={"task": "classification", "classes": classes})
    at = serve(fake)
    at.selectbox[0].set_value(IMAGENET_CAPTION).run()
    at = upload_and_predict(at, png((64, 64)), "parrot.png")
    assert not at.exception and not at.error
    assert [row["label"] for row in chart_rows(at)] == ["macaw", "lorikeet"]  # no zero
    create = next(r for r in fake.requests if r.method == "POST")
    assert query_field(create, "top_k") == "5"


IMAGENET_CAPTION = f"{IMAGENET['title']} (classification)"
SSD_CAPTION = f"{SSD['title']} (object_detection)"


def test_a_detection_shows_the_boxed_image_and_one_bar_per_box(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[Image.Image] = []

    def spy(data: bytes, detections: list[dict[str, Any]]) -> Image.Image:
        drawn.append(draw_detections(data, detections))
        return drawn[-1]

    monkeypatch.setattr(web_ui.page, "draw_detections", spy)
    at = serve(FakeApi(result=detection_result()))
    at.selectbox[0].set_value(SSD_CAPTION).run()
    at = upload_and_predict(at, png((100, 80), 255), "dogs.png")
    assert not at.exception and not at.error
    assert at.subheader[0].value == "1 detected"
    assert chart_rows(at) == [{"label": "1. dog", "score": 0.9}]
    (image,) = drawn  # what the page showed: the white upload with a coloured box
    assert at.image[0].captions == ["dogs.png"]
    assert image.getpixel((10, 40)) != (255, 255, 255)  # the box's left edge
    assert image.getpixel((30, 40)) == (255, 255, 255)  # inside the box, untouched


DESCRIBE = {
    "name": "describe-coco-imagenet",
    "title": "Description composed from detections, not a neural caption",
    "task": "describe",
    "default_options": {"top_k": 5, "score_threshold": 0.5},
    "label_count": None,
}


def test_a_description_shows_its_sentence_over_the_detector_boxes(serve: Serve) -> None:
    detection = detection_result()
    sentence = "One dog (scene: whippet)."
    result = {
        "task": "describe",
        "description": sentence,
        "objects": [{"label": "dog", "count": 1, "score": 0.9}],
        "scene": {"index": 173, "label": "whippet", "score": 0.6},
        "detection": detection,
        "classification": {"task": "classification", "classes": []},
        "thresholds": {"score_threshold": 0.5, "scene_threshold": 0.5},
        "max_kinds": 4,
    }
    at = serve(FakeApi(models=[IMAGENET, SSD, DESCRIBE], result=result))
    at.selectbox[0].set_value(f"{DESCRIBE['title']} (describe)").run()
    at = upload_and_predict(at, png((100, 80), 255), "dogs.png")
    assert not at.exception and not at.error
    assert at.markdown[0].value == f"**{sentence}**"
    assert chart_rows(at) == [{"label": "1. dog", "score": 0.9}]


def test_the_uploader_states_the_apis_limits(serve: Serve) -> None:
    at = serve(FakeApi())
    (uploader,) = at.file_uploader
    assert uploader.proto.max_upload_size_mb == 10  # not Streamlit's 200 MB
    assert "Images up to 10 MiB and 40 megapixels: the API's limits." in [
        caption.value for caption in at.caption
    ]


def test_a_submission_rides_out_a_job_service_restart_with_one_key(serve: Serve) -> None:
    refusals = 3

    def down_then_up(request: httpx.Request) -> httpx.Response:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return httpx.Response(201, json=fake.job("QUEUED", "m"))

    fake = FakeApi(create=down_then_up)
    at = upload_and_predict(serve(fake), png())
    assert not at.exception and not at.error
    assert len(chart_rows(at)) == 10
    creates = [r for r in fake.requests if r.method == "POST"]
    assert len(creates) == 4
    assert len({r.headers["Idempotency-Key"] for r in creates}) == 1
    assert at.status[0].label.endswith(": DONE")


def test_an_unsupported_file_shows_the_problem_title_and_detail(serve: Serve) -> None:
    detail = "image/svg+xml is not an accepted image type"
    fake = FakeApi(create=lambda _: problem(415, "Unsupported Media Type", detail))
    at = upload_and_predict(serve(fake), b"<svg/>", "drawing.png")
    assert not at.exception
    (error,) = at.error
    assert "Unsupported Media Type" in error.value and detail in error.value
    assert at.get("vega_lite_chart") == []


def test_a_corrupt_image_shows_the_422_detail(serve: Serve) -> None:
    fake = FakeApi(create=lambda _: problem(422, "Unprocessable Content", "cannot read the image"))
    at = upload_and_predict(serve(fake), b"not a png", "broken.png")
    assert "cannot read the image" in at.error[0].value


def test_a_failed_job_shows_its_error_code_and_message(serve: Serve) -> None:
    fake = FakeApi(
        statuses=["RUNNING", "FAILED"],
        error={"code": "IMAGE_UNREADABLE", "message": "the executor could not decode it"},
    )
    at = upload_and_predict(serve(fake), png())
    assert not at.exception
    (error,) = at.error
    assert "IMAGE_UNREADABLE" in error.value and "could not decode it" in error.value
    assert at.status[0].label.endswith(": FAILED")


def test_an_unreachable_api_is_one_clear_message(
    app_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    monkeypatch.setattr(web_ui.bootstrap, "http_transport", lambda: httpx.MockTransport(refuse))
    at = AppTest.from_file(str(APP), default_timeout=20).run()
    assert not at.exception
    (error,) = at.error
    assert error.value.startswith("Cannot reach the inference API at http://api.test/")
    assert "Connection refused" in error.value
    assert at.selectbox == []


def test_a_job_that_never_ends_is_reported_after_the_timeout(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEB_UI_JOB_TIMEOUT_S", "0.2")
    at = upload_and_predict(serve(FakeApi(statuses=["RUNNING"])), png())
    assert not at.exception
    assert "still RUNNING after 0.2 s" in at.error[0].value


def test_a_sample_shows_its_credit_and_is_what_gets_uploaded(
    serve: Serve, asset_cache: object
) -> None:
    classes = [{"index": 1, "label": "card", "score": 0.5}]
    fake = FakeApi(result={"task": "classification", "classes": classes})
    at = serve(fake)
    at.selectbox[0].set_value(IMAGENET_CAPTION).run()
    at.radio[0].set_value("Try a sample").run()
    assert at.selectbox[1].options == ["card.png"]
    assert at.caption[0].value == f"Image credit: {CREDIT}"
    at = at.button[0].click().run()
    assert not at.exception and not at.error
    create = next(r for r in fake.requests if r.method == "POST")
    assert query_field(create, "name") == "card.png"
    assert create.content.startswith(b"\x89PNG")


def test_the_answer_stays_across_reruns_until_the_image_changes(serve: Serve) -> None:
    fake = FakeApi()
    at = upload_and_predict(serve(fake), png())
    posts = sum(r.method == "POST" for r in fake.requests)
    at = at.run()  # any widget change reruns the page
    assert len(at.get("vega_lite_chart")) == 1
    assert sum(r.method == "POST" for r in fake.requests) == posts  # not submitted again
    at = at.file_uploader[0].set_value(("other.png", png(colour=255), "image/png")).run()
    assert at.get("vega_lite_chart") == []


def test_several_files_go_as_one_batch_and_its_results_fill_a_table(serve: Serve) -> None:
    fake = FakeApi()
    at = serve(fake)
    at.radio[0].set_value("Several files (a batch)").run()
    at.file_uploader[0].set_value([("a.png", png(), "image/png"), ("b.png", b"x", "image/png")])
    at = at.run().button[0].click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table["file"]) == ["a.png", "b.png"]
    assert list(table["status"]) == ["DONE", "REJECTED"]
    assert table["answer"][0] == "7 (91.0%)" and table["answer"][1] == "not an image"
    create = next(r for r in fake.requests if r.method == "POST")
    assert create.url.path.endswith("/batches")
    assert create.content.count(b'name="files"') == 2
