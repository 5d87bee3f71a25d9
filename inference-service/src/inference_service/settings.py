"""The job service's settings: the shared ones plus the API, limits and worker tuning."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from inference_common.settings import CommonSettings

MB = 1024 * 1024


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

    max_image_bytes: int = Field(default=10 * MB, gt=0)
    max_image_pixels: int = Field(default=40_000_000, gt=0)
    # POST /batches: files per batch (multipart parts or archive members) and their bytes in
    # all; each image also within the two limits above.
    batch_max_files: int = Field(default=1000, ge=1)
    batch_max_bytes: int = Field(default=256 * MB, gt=0)
    # Per client (API key owner, else remote address), per replica; 0 turns the limit off.
    # Well above what the simulator, `make demo` and the benchmarks send (docs/configuration.md).
    rate_limit_per_second: float = Field(default=1000.0, ge=0)
    rate_limit_burst: int = Field(default=2000, ge=1)

    execution_deadline_seconds: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    sweep_interval_seconds: float = Field(default=5.0, gt=0)

    # The recovery scan (written jobs are read by _id as they are written): every job is
    # decoded on FerretDB, so not every second.
    relay_poll_interval_seconds: float = Field(default=5.0, gt=0)
    relay_batch_size: int = Field(default=500, ge=1)
    relay_lease_seconds: float = Field(default=30.0, gt=0)
    # How long the producer keeps retrying one event before the relay tries it again later;
    # well under the lease, so a lease never lapses while a batch is in flight.
    relay_delivery_timeout_ms: int = Field(default=10_000, ge=100)
    relay_linger_ms: int = Field(default=5, ge=0)

    folder_group_id: str = "inference-service-folder"
    folder_batch_size: int = Field(default=200, ge=1)
    # A `started` waits this long for its job's outcome, so both are folded in one write.
    folder_linger_ms: int = Field(default=50, ge=0)

    # POST /mnist/classify and /models/{model}/classify wait this long for the job (504 after).
    classify_timeout_seconds: float = Field(default=10.0, gt=0)
    # Their re-read of the job, and the long poll's (GET /jobs/{id}?wait=), when no in-process
    # notification came (folded by another replica, failed by the sweeper).
    classify_poll_interval_seconds: float = Field(default=2.0, gt=0)

    # One JSON line per HTTP request (method, route, status, duration, trace id). Off by
    # default: the request metrics count every request, and pollers would flood the log.
    access_log: bool = False

    sse_keepalive_seconds: float = Field(default=15.0, gt=0)
    sse_queue_size: int = Field(default=1000, ge=1)

    # Webhooks (docs/api.md): the dispatcher's group, its attempts and what it may reach.
    webhook_group_id: str = "inference-service-webhooks"
    # Attempts per delivery; the wait after attempt n is random, up to base·2^(n-1) (capped).
    webhook_max_attempts: int = Field(default=6, ge=1)
    webhook_backoff_seconds: float = Field(default=1.0, gt=0)
    webhook_backoff_max_seconds: float = Field(default=60.0, gt=0)
    webhook_connect_timeout_seconds: float = Field(default=3.0, gt=0)
    webhook_read_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_max_response_bytes: int = Field(default=64 * 1024, ge=1024)
    # Events whose deliveries run at once (one consumed batch).
    webhook_concurrency: int = Field(default=32, ge=1)
    # Off in production: targets are `https` on public addresses only (tests and the demo
    # turn these on for a receiver on loopback).
    webhook_allow_http: bool = False
    webhook_allow_loopback: bool = False

    # Components of the one process; each can run alone in another deployment.
    run_api: bool = True
    run_relay: bool = True
    run_folder: bool = True
    run_sweeper: bool = True
    run_live: bool = True
    run_webhooks: bool = True

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
