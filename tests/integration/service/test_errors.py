"""Every refusal is an RFC 9457 problem with the right status; no request makes a 5xx."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from tests.integration.service.harness import (
    RunningService,
    assert_problem,
    image_bytes,
    new_job,
    post_job,
    running,
)

pytestmark = pytest.mark.integration
SMALL_LIMIT = 200_000


@pytest.fixture
def limited(isolated_env: dict[str, str]) -> Iterator[RunningService]:
    """A service with small limits: 200 kB and 1 megapixel."""
    with running(
        max_image_bytes=SMALL_LIMIT, max_image_pixels=1_000_000, wait_live=False
    ) as service:
        yield service


def png(width: int, height: int, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def test_malformed_json(service: RunningService) -> None:
    response = service.client.post(
        "/jobs", content=b'{"model": ', headers={"content-type": "application/json"}
    )
    body = assert_problem(response, 400)
    assert body["errors"]


def test_invalid_fields_are_all_reported(service: RunningService) -> None:
    response = service.client.post(
        "/jobs", json={"model": "", "options": {"top_k": 0, "colour": "red"}, "extra": 1}
    )
    body = assert_problem(response, 400)
    pointers = {error["pointer"] for error in body["errors"]}
    assert {"/model", "/options", "/options/top_k", ""} <= pointers


def test_unknown_model(service: RunningService) -> None:
    # The spec lists the catalog's models: any other is a field against the schema.
    body = assert_problem(post_job(service.client, model="resnet-9000"), 400)
    assert body["errors"][0]["pointer"] == "/model"
    image = post_job(service.client, image=image_bytes(), model="resnet-9000")
    assert assert_problem(image, 400)["errors"][0]["pointer"] == "/model"
    assert_problem(service.client.get("/jobs", params={"model": "resnet-9000"}), 400)


def test_bad_options_in_the_form(service: RunningService) -> None:
    not_json = post_job(service.client, image=image_bytes(), options="{top_k: 3")
    assert assert_problem(not_json, 400)["errors"][0]["pointer"] == "/options"
    out_of_range = post_job(service.client, image=image_bytes(), options='{"score_threshold": 2}')
    assert assert_problem(out_of_range, 400)["errors"][0]["pointer"] == "/options/score_threshold"


def test_unsupported_corrupt_and_empty_images(service: RunningService) -> None:
    client = service.client
    text = post_job(client, image=b"just some text, not a picture", media_type="image/png")
    assert_problem(text, 415, "unsupported-image-type")
    jpeg = image_bytes()
    assert_problem(post_job(client, image=jpeg[: len(jpeg) // 3]), 422, "corrupt-image")
    assert_problem(post_job(client, image=b""), 422, "empty-image")

    job = post_job(client).json()
    put = client.put(f"/jobs/{job['id']}/image", content=b"", headers={"content-type": "image/png"})
    assert_problem(put, 422, "empty-image")
    wrong_type = client.put(
        f"/jobs/{job['id']}/image", content=jpeg, headers={"content-type": "text/plain"}
    )
    assert_problem(wrong_type, 415)
    assert client.get(f"/jobs/{job['id']}").json()["image"] is None


def test_over_the_byte_limit(limited: RunningService) -> None:
    client = limited.client
    big = image_bytes("cat.bmp")  # 524 kB of BMP, but only 0.2 MP
    assert len(big) > SMALL_LIMIT
    assert_problem(post_job(client, image=big, media_type="image/bmp"), 413)
    job = post_job(client).json()
    put = client.put(f"/jobs/{job['id']}/image", content=big, headers={"content-type": "image/bmp"})
    assert_problem(put, 413)

    # Without a Content-Length (chunked), the stream is cut off as it passes the limit.
    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    chunked = client.put(
        f"/jobs/{job['id']}/image", content=chunks(), headers={"content-type": "image/bmp"}
    )
    assert_problem(chunked, 413, "request-too-large")
    # A small image still goes in afterwards.
    near = png(300, 300)
    assert len(near) < SMALL_LIMIT
    assert (
        client.put(
            f"/jobs/{job['id']}/image", content=near, headers={"content-type": "image/png"}
        ).status_code
        == 200
    )


def test_over_the_pixel_limit_and_decompression_bombs(limited: RunningService) -> None:
    client = limited.client
    too_many = png(1200, 1000, "L")  # 1.2 MP, a few kB
    assert len(too_many) < SMALL_LIMIT
    assert_problem(post_job(client, image=too_many, media_type="image/png"), 422, "too-many-pixels")
    bomb = png(20_000, 20_000, "1")  # 400 MP in a few hundred kB at most
    assert len(bomb) < SMALL_LIMIT
    assert_problem(post_job(client, image=bomb, media_type="image/png"), 422, "too-many-pixels")


def test_unknown_job_and_malformed_id(service: RunningService) -> None:
    client = service.client
    missing = "0" * 32
    for path in ("", "/result", "/image", "/events"):
        assert_problem(client.get(f"/jobs/{missing}{path}"), 404, "job-not-found")
    assert_problem(client.post(f"/jobs/{missing}/execution"), 404, "job-not-found")
    assert_problem(client.post(f"/jobs/{missing}/cancellation"), 404, "job-not-found")
    assert_problem(client.delete(f"/jobs/{missing}"), 404, "job-not-found")
    assert_problem(client.get("/jobs/not-a-job-id"), 400)


def test_routing_problems(service: RunningService) -> None:
    assert_problem(service.client.get("/no-such-thing"), 404)
    assert_problem(service.client.patch(f"/jobs/{'0' * 32}", json={}), 405)


def test_result_of_a_new_job(service: RunningService) -> None:
    job = new_job(service.client)
    response = service.client.get(f"/jobs/{job['id']}/result")
    assert assert_problem(response, 409, "job-not-done")["job_status"] == "NEW"


def test_bad_list_parameters(service: RunningService) -> None:
    client = service.client
    assert_problem(client.get("/jobs", params={"limit": 0}), 400)
    assert_problem(client.get("/jobs", params={"limit": 101}), 400)
    assert_problem(client.get("/jobs", params={"status": "SLEEPING"}), 400)
    assert_problem(client.get("/jobs", params={"cursor": "bm9wZQ"}), 400, "invalid-cursor")
    assert_problem(client.get("/jobs", params={"cursor": "not/base64"}), 400)
    assert_problem(client.get("/jobs", params={"created_after": "last tuesday"}), 400)


def test_swagger_ui_and_spec_are_served(service: RunningService) -> None:
    spec = httpx.get(service.url + "/api/v1/inference/openapi.json")
    assert spec.status_code == 200 and spec.json()["info"]["title"] == "CV inference job API"


def test_over_the_request_rate(isolated_env: dict[str, str]) -> None:
    with running(
        rate_limit_per_second=0.5, rate_limit_burst=3, api_keys="k1:alice,k2:bob", wait_live=False
    ) as service:
        alice = {"X-API-Key": "k1"}
        for _ in range(3):
            assert service.client.get("/models", headers=alice).status_code == 200
        refused = service.client.post("/jobs", json={"model": "x"}, headers=alice)
        body = assert_problem(refused, 429, "rate-limited")
        assert int(refused.headers["Retry-After"]) in (1, 2)
        assert "requests per second" in body["detail"]
        # Nothing was created, another client is unaffected, and health checks are not limited.
        assert service.client.get("/jobs", headers={"X-API-Key": "k2"}).json()["items"] == []
        assert httpx.get(service.url + "/healthz").status_code == 200
