"""The malformed image corpus through the API: a clear 4xx problem, or accepted as what it is.

No executor runs here: an accepted image sent to a classify operation ends in its documented
504 (the job was created and goes on), which is how these tests tell "accepted" there.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.integration.service.harness import (
    RunningService,
    assert_problem,
    post_job,
    running,
)
from tests.malformed_images import DIGIT_MODEL, Sample, corpus

pytestmark = pytest.mark.integration


@pytest.fixture
def api(isolated_env: dict[str, str]) -> Iterator[RunningService]:
    with running(run_live=False, run_folder=False, classify_timeout_seconds=0.2) as service:
        yield service


def check(
    sample: Sample, response: httpx.Response, accepted: int, refused_status: int | None = None
):
    """None when the answer is the sample's; otherwise what differs, for one readable report."""
    try:
        if sample.refused is None:
            assert response.status_code == accepted, response.text
        else:
            status, slug = sample.refused
            assert_problem(response, refused_status or status, slug)
    except AssertionError as exc:
        return f"{sample.name}: {exc}"
    return None


# The raw-body operations declare the six image types they take (and the classify ones
# application/octet-stream); a body of another media type is refused, as declared, with 415.
IMAGE_TYPES = frozenset(f"image/{kind}" for kind in ("jpeg", "png", "bmp", "gif", "webp", "tiff"))


def check_raw(
    sample: Sample,
    response: httpx.Response,
    accepted: int,
    refused_status: int | None = None,
    takes: frozenset[str] = IMAGE_TYPES | {"application/octet-stream"},
):
    if sample.declared_type in takes:
        return check(sample, response, accepted, refused_status)
    if response.status_code != 415:
        return f"{sample.name}: {sample.declared_type} answered {response.status_code}, not 415"
    return None


def raw(client: httpx.Client, method: str, path: str, sample: Sample) -> httpx.Response:
    return client.request(
        method, path, content=sample.data, headers={"content-type": sample.declared_type}
    )


def test_create_and_put_image(api: RunningService) -> None:
    client = api.client
    wrong: list[str | None] = []
    for sample in corpus():
        created = client.post(
            "/jobs",
            files={"image": (sample.filename, sample.data, sample.declared_type)},
            data={"model": sample.model},
        )
        wrong.append(check(sample, created, 201))
        if sample.refused is None and created.status_code == 201:
            image = created.json()["image"]
            if (image["media_type"], image["width"], image["height"]) != (
                sample.media_type,
                *(sample.size or ()),
            ):
                wrong.append(f"{sample.name}: recorded as {image}")
            stored = client.get(f"/jobs/{created.json()['id']}/image")
            if stored.content != sample.data or stored.headers["content-type"] != sample.media_type:
                wrong.append(f"{sample.name}: read back differently")
        job = post_job(client, model=sample.model).json()
        put = raw(client, "PUT", f"/jobs/{job['id']}/image", sample)
        wrong.append(check_raw(sample, put, 200, takes=IMAGE_TYPES))
    assert [problem for problem in wrong if problem] == []


def test_classify(api: RunningService) -> None:
    client = api.client
    wrong: list[str | None] = []
    for sample in corpus():
        if sample.model == DIGIT_MODEL:
            answer = raw(client, "POST", "/mnist/classify", sample)
            # The challenge's endpoint answers every invalid input with 404.
            wrong.append(check_raw(sample, answer, 504, refused_status=404))
        answer = raw(client, "POST", f"/models/{sample.model}/classify", sample)
        wrong.append(check_raw(sample, answer, 504))
        form = client.post(
            f"/models/{sample.model}/classify",
            files={"image": (sample.filename, sample.data, sample.declared_type)},
        )
        wrong.append(check(sample, form, 504))
    assert [problem for problem in wrong if problem] == []
