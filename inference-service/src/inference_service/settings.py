"""The job service's settings: the shared ones plus the API, limits and worker tuning."""

from __future__ import annotations

from pydantic import (
    Field,
    FilePath,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    field_validator,
    model_validator,
)

from inference_common.settings import CommonSettings

MB = 1024 * 1024
DAY = 24 * 3600


class ServiceSettings(CommonSettings):
    """Every variable is documented in docs/configuration.md (upper-case names)."""

    # SERVICE_HOST / SERVICE_PORT, as docker-compose.yaml and the local stack set them.
    service_host: str = "127.0.0.1"
    service_port: int = Field(default=8080, ge=0, le=65535)
    # "key1:clientA,key2:clientB"; unset means every request is the client `anonymous`.
    api_keys: SecretStr | None = None
    base_path: str = "/api/v1/inference"
    # Check every JSON response against the spec (tests turn it on; it costs time per request).
    validate_responses: bool = False

    max_image_bytes: PositiveInt = 10 * MB
    max_image_pixels: PositiveInt = 40_000_000
    # POST /batches: files per batch (multipart parts or archive members) and their bytes in
    # all; each image also within the two limits above.
    batch_max_files: PositiveInt = 1000
    batch_max_bytes: PositiveInt = 256 * MB
    # Per client (API key owner, else remote address), per replica; 0 turns the limit off.
    # Well above what the simulator, `make demo` and the benchmarks send (docs/configuration.md).
    rate_limit_per_second: NonNegativeFloat = 1000.0
    rate_limit_burst: PositiveInt = 2000

    execution_deadline_seconds: PositiveFloat = 60.0
    max_attempts: PositiveInt = 3
    sweep_interval_seconds: PositiveFloat = 5.0

    # Retention (docs/retention.md), counted from when a job finished. Images: removed at the
    # first retention sweep after that, unless the job asked to keep its image. Results (and
    # images kept): a week, so a client that polls, a batch fetched after a weekend and a
    # support question a few days later still find them, while nothing piles up for good.
    image_retention_seconds: NonNegativeFloat = 0.0
    result_retention_seconds: PositiveFloat = 7 * DAY
    purge_interval_seconds: PositiveFloat = 10.0
    # Jobs per sweep: each costs an image delete and two job writes (the purge, the relay's).
    purge_batch_size: PositiveInt = 200

    # The recovery scan (written jobs are read by _id as they are written): every job is
    # decoded on FerretDB, so not every second.
    relay_poll_interval_seconds: PositiveFloat = 5.0
    relay_batch_size: PositiveInt = 500
    relay_lease_seconds: PositiveFloat = 30.0
    # How long the producer keeps retrying one event before the relay tries it again later;
    # well under the lease, so a lease never lapses while a batch is in flight.
    relay_delivery_timeout_ms: int = Field(default=10_000, ge=100)
    relay_linger_ms: NonNegativeInt = 5

    folder_group_id: str = "inference-service-folder"
    folder_batch_size: PositiveInt = 200
    # A `started` waits this long for its job's outcome, so both are folded in one write.
    folder_linger_ms: NonNegativeInt = 50

    # POST /mnist/classify and /models/{model}/classify wait this long for the job (504 after).
    classify_timeout_seconds: PositiveFloat = 10.0
    # Their re-read of the job, and the long poll's (GET /jobs/{id}?wait=), when no in-process
    # notification came (folded by another replica, failed by the sweeper).
    classify_poll_interval_seconds: PositiveFloat = 2.0

    # One JSON line per HTTP request (method, route, status, duration, trace id). Off by
    # default: the request metrics count every request, and pollers would flood the log.
    access_log: bool = False

    sse_keepalive_seconds: PositiveFloat = 15.0
    sse_queue_size: PositiveInt = 1000

    # Webhooks (docs/api.md): the dispatcher's group, its attempts and what it may reach.
    webhook_group_id: str = "inference-service-webhooks"
    # Attempts per delivery; the wait after attempt n is random, up to base·2^(n-1) (capped).
    webhook_max_attempts: PositiveInt = 6
    webhook_backoff_seconds: PositiveFloat = 1.0
    webhook_backoff_max_seconds: PositiveFloat = 60.0
    webhook_connect_timeout_seconds: PositiveFloat = 3.0
    webhook_read_timeout_seconds: PositiveFloat = 10.0
    webhook_max_response_bytes: int = Field(default=64 * 1024, ge=1024)
    # Events whose deliveries may be under way at once, those waiting for a retry included
    # (each on a task of its own, a few kB): a target that fails holds up only its own.
    webhook_concurrency: PositiveInt = 1000
    # Off in production: targets are `https` on public addresses only (tests and the demo
    # turn these on for a receiver on loopback).
    webhook_allow_http: bool = False
    webhook_allow_loopback: bool = False
    # PEM CA certificates trusted for `https` targets besides the system's (a private CA).
    webhook_ca_file: FilePath | None = None

    # Components of the one process; each can run alone in another deployment.
    run_api: bool = True
    run_relay: bool = True
    run_folder: bool = True
    run_sweeper: bool = True
    run_purger: bool = True
    run_live: bool = True
    run_webhooks: bool = True

    @model_validator(mode="after")
    def _images_not_beyond_results(self) -> ServiceSettings:
        # A kept image goes with its result; one kept longer would outlive its job's purge.
        if self.image_retention_seconds > self.result_retention_seconds:
            raise ValueError("IMAGE_RETENTION_SECONDS may not exceed RESULT_RETENTION_SECONDS")
        return self

    @field_validator("api_keys", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    def clients_by_key(self) -> dict[str, str]:
        """API key → client name; empty when the service runs without keys."""
        if self.api_keys is None:
            return {}
        mapping: dict[str, str] = {}
        for pair in self.api_keys.get_secret_value().split(","):
            key, sep, client = pair.strip().partition(":")
            if not sep or not key or not client:
                raise ValueError("API_KEYS must look like key1:clientA,key2:clientB")
            mapping[key] = client
        return mapping
