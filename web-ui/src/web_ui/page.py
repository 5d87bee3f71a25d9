"""The page: model, image, predict, then the image and a bar chart of the answer; or several
images as one batch, its progress bar, then a table of its results.

Everything it knows comes from the public REST API, through the shared client
(`inference_client`), which this page runs on an event loop of its own for each run of the
script; the logic lives in small modules (`waiting`, `chart_data`, `drawing`, `samples`) and
this file only lays them out.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import Any, Final

import streamlit as st

from inference_client import (
    ApiError,
    ApiFailure,
    ApiUnreachable,
    Batch,
    ImageUpload,
    InferenceClient,
    Model,
    RetryNotice,
    UnexpectedResponse,
)
from web_ui.batch_rows import batch_row
from web_ui.bootstrap import make_api
from web_ui.chart_data import (
    chart_table,
    classification_bars,
    detection_bars,
    is_digit_model,
    job_options,
)
from web_ui.drawing import draw_detections, for_display, open_rgb
from web_ui.samples import Sample, bundled_samples, media_type_of
from web_ui.settings import UiSettings, load_settings
from web_ui.waiting import BatchTimeout, JobTimeout, wait_for_batch, wait_for_job

UPLOAD_TYPES: Final = ["png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff"]
UPLOAD, SAMPLE, BATCH = "Upload a file", "Try a sample", "Several files (a batch)"
LAST_RESULT: Final = "last_result"
LAST_BATCH: Final = "last_batch"


@st.cache_data(show_spinner=False)
def cached_samples() -> list[Sample]:
    return bundled_samples()


def main() -> None:
    st.set_page_config(page_title="CV inference", layout="wide")
    st.title("Computer-vision inference")
    asyncio.run(show(load_settings()))


async def show(settings: UiSettings) -> None:
    async with make_api(settings) as api:
        try:
            await run(api, settings)
        except ApiUnreachable as exc:
            st.error(
                f"Cannot reach the inference API at {exc.base_url} ({exc.reason}). "
                "Is the service running, and is API_URL right?"
            )
        except ApiError as exc:
            st.error(f"**{exc.title}** ({exc.status}): {exc.detail or 'no detail given'}")
        except (JobTimeout, BatchTimeout, ApiFailure, UnexpectedResponse) as exc:
            st.error(str(exc))


async def run(api: InferenceClient, settings: UiSettings) -> None:
    models = await api.list_models()
    if not models:
        st.warning("The API serves no models.")
        return
    model = st.selectbox("Model", models, format_func=lambda m: f"{m.title} ({m.task})")
    assert model is not None  # a selectbox with options always has a choice
    digits = is_digit_model(model.task, model.label_count)
    samples = [s for s in cached_samples() if s.name.startswith("mnist-") == digits]
    source = st.radio(
        "Image", [UPLOAD, SAMPLE, BATCH] if samples else [UPLOAD, BATCH], horizontal=True
    )
    if source == BATCH:
        await run_batch(api, settings, model)
        return
    image, credit = choose_image(settings, source, samples)
    if image is None:
        st.info("Upload an image or pick a sample, then press Predict.")
        return
    shown = (model.name, hashlib.sha256(image.data).hexdigest())
    if st.button("Predict", type="primary"):
        st.session_state.pop(LAST_RESULT, None)
        result = await predict(api, settings, model, image)
        if result is not None:
            st.session_state[LAST_RESULT] = (shown, result)
    last = st.session_state.get(LAST_RESULT)
    # The answer stays on the page across reruns, as long as it is for this model and image.
    if last is not None and last[0] == shown:
        show_result(model, image, last[1], credit)


def choose_image(
    settings: UiSettings, source: str | None, samples: list[Sample]
) -> tuple[ImageUpload | None, str | None]:
    if source == UPLOAD:
        file = st.file_uploader(
            "An image", type=UPLOAD_TYPES, max_upload_size=settings.max_upload_mb
        )
        st.caption(f"Images up to {settings.image_limits()}: the API's limits.")
        if file is None:
            return None, None
        media_type = media_type_of(file.name, file.type or "application/octet-stream")
        return ImageUpload(file.name, file.getvalue(), media_type), None
    sample = st.selectbox("Sample", samples, format_func=lambda s: s.name)
    assert sample is not None
    if sample.credit:
        st.caption(f"Image credit: {sample.credit}")
    return ImageUpload(sample.name, sample.data, sample.media_type), sample.credit


async def predict(
    api: InferenceClient, settings: UiSettings, model: Model, image: ImageUpload
) -> dict[str, Any] | None:
    """The job's result once DONE; None (and the reason on the page) otherwise."""
    with st.status("Submitting the job") as status:

        def on_retry(notice: RetryNotice) -> None:
            text = notice.describe()
            status.update(label=text[:1].upper() + text[1:])

        api.on_retry = on_retry  # an outage of the job service shows on the status line
        job = await api.create_job(
            image,
            name=image.name[:200] or "upload",
            model=model.name,
            # A new key per press: a retry of this submission cannot create a second job.
            idempotency_key=str(uuid.uuid4()),
            options=job_options(model.task, model.label_count),
        )
        job = await wait_for_job(
            api,
            job,
            on_status=lambda j: status.update(label=f"Job {j.id}: {j.status}"),
            poll_interval_s=settings.poll_interval_s,
            timeout_s=settings.job_timeout_s,
        )
        result = await api.get_result(job.id) if job.status == "DONE" else None
        status.update(
            label=f"Job {job.id}: {job.status}",
            state="complete" if job.status == "DONE" else "error",
            expanded=False,
        )
    if job.status == "FAILED":
        error = job.error
        st.error(f"The job failed: {error.code}: {error.message}" if error else "The job failed.")
        return None
    if result is None:
        st.warning(f"The job ended {job.status}.")
        return None
    answer: dict[str, Any] = result["result"]
    return answer


async def run_batch(api: InferenceClient, settings: UiSettings, model: Model) -> None:
    files = st.file_uploader(
        "Images",
        type=UPLOAD_TYPES,
        accept_multiple_files=True,
        max_upload_size=settings.max_upload_mb,
    )
    st.caption(
        f"Each image up to {settings.image_limits()}; a file the API cannot use is listed "
        "with its problem, and the others go on."
    )
    if not files:
        st.info("Upload several images, then press Submit batch.")
        return
    uploads = [
        ImageUpload(f.name, f.getvalue(), media_type_of(f.name, f.type or "")) for f in files
    ]
    shown = (model.name, tuple(hashlib.sha256(u.data).hexdigest() for u in uploads))
    if st.button("Submit batch", type="primary"):
        st.session_state.pop(LAST_BATCH, None)
        st.session_state[LAST_BATCH] = (shown, await submit_batch(api, settings, model, uploads))
    last = st.session_state.get(LAST_BATCH)
    if last is not None and last[0] == shown:
        st.dataframe([batch_row(line) for line in last[1]], hide_index=True)


async def submit_batch(
    api: InferenceClient, settings: UiSettings, model: Model, uploads: list[ImageUpload]
) -> list[dict[str, Any]]:
    """The batch's results lines once it is finished; its progress on a bar meanwhile."""
    bar = st.progress(0.0, text=f"Submitting {len(uploads)} files")

    def on_progress(batch: Batch) -> None:
        bar.progress(
            batch.progress, text=f"Batch {batch.id}: {batch.done} of {batch.total} files finished"
        )

    batch = await api.create_batch(
        uploads,
        model=model.name,
        # A new key per press: a retry of this submission cannot create a second batch.
        idempotency_key=str(uuid.uuid4()),
        options=job_options(model.task, model.label_count),
    )
    batch = await wait_for_batch(
        api,
        batch,
        on_progress=on_progress,
        poll_interval_s=settings.poll_interval_s,
        # The jobs run side by side on the executors: a job's time per four files.
        timeout_s=settings.job_timeout_s * max(1, len(uploads) // 4),
    )
    return await api.batch_results(batch.id)


def show_result(
    model: Model, image: ImageUpload, result: dict[str, Any], credit: str | None
) -> None:
    picture, chart = st.columns(2)
    caption = image.name + (f" (credit: {credit})" if credit else "")
    if result.get("task") == "describe":
        # A description composed from detections: the sentence, then the detector's boxes.
        chart.markdown(f"**{result['description']}**")
        result = result["detection"]
    if result.get("task") == "object_detection":
        detections = result.get("detections", [])
        picture.image(draw_detections(image.data, detections), caption=caption)
        bars, value_name = detection_bars(result), "score"
        chart.subheader(f"{len(detections)} detected")
    else:
        picture.image(for_display(open_rgb(image.data)), caption=caption)
        bars, value_name = classification_bars(result, model.label_count), "probability"
        if bars:
            best = max(bars, key=lambda bar: bar.value)
            chart.subheader(f"{best.label} ({best.value:.1%})")
    if bars:
        chart.bar_chart(
            chart_table(bars, value_name),
            x="label",
            y=value_name,
            sort=False,
            horizontal=not is_digit_model(model.task, model.label_count),
        )
