"""Settings shared by every service, read from the environment (defaults: the local stack)."""

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# What the S3 image store's claim checks may hold (inference_common.image_stores.keys): a
# bucket name as S3 allows it, and a prefix of folders ending with `/`, none of them `.` or `..`
# (claim checks end with the key's own path, found after the prefix's last slash).
S3_BUCKET_PATTERN = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
S3_PREFIX_PATTERN = r"(?:[A-Za-z0-9!_*()-][A-Za-z0-9!_.*()-]*/)*"


class CommonSettings(BaseSettings):
    """Every variable is documented in docs/configuration.md; services extend this class."""

    model_config = SettingsConfigDict(extra="ignore")

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # SASL/TLS for a real cluster; PLAINTEXT suits the loopback-only local stack.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: str | None = None

    # Consumer groups (docs/faults.md has the measurements): a member is known by this
    # process's replica id (REPLICA_ID, group.instance.id), so one restarted after a crash takes
    # its partitions back at once; the session bounds how long a member that does not come back
    # holds them. Unset REPLICA_ID: `<host name>-<n>`, n the lowest index free on this host.
    replica_id: str | None = None
    kafka_static_membership: bool = True
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1_000)
    kafka_heartbeat_interval_ms: int = Field(default=1_000, ge=100)

    mongodb_uri: SecretStr = SecretStr("mongodb://127.0.0.1:27017/")
    mongodb_database: str = "inference"

    topic_jobs: str = "inference.jobs"
    topic_results: str = "inference.results"
    topic_dead_letter: str = "inference.deadletter"
    topic_partitions: int = 6
    topic_replication_factor: int = 1

    # The contracts: inference-api.yaml (the job API) and asyncapi.yaml (the event schemas).
    openapi_dir: Path = Path("openapi")

    assets_manifest: Path = Path("assets/manifest.toml")
    assets_cache_dir: Path = Path(".cache/assets")
    # A directory laid out like the upstream mirror (models/, images/, datasets/) replaces
    # the network when set.
    assets_mirror: Path | None = None

    # Where image bytes live (inference_common.image_stores): the job service puts new images
    # in this store; readers pick the store by each claim check's scheme, whatever this says.
    image_store: Literal["filesystem", "mongodb", "s3"] = "filesystem"
    # The filesystem store's root: every process that reads images must see the same directory.
    image_store_dir: Path = Path(".cache/images")
    # The S3 store; credentials and region only by the standard AWS variables.
    image_store_s3_bucket: str = Field(
        default="inference-images", pattern=rf"^{S3_BUCKET_PATTERN}$"
    )
    image_store_s3_prefix: str = Field(default="", pattern=rf"^{S3_PREFIX_PATTERN}$")
    # An S3-compatible server's URL; unset: AWS (or AWS_ENDPOINT_URL_S3 when that is set).
    image_store_s3_endpoint: str | None = None

    log_level: str = "INFO"

    @field_validator("assets_mirror", "replica_id", "image_store_s3_endpoint", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `ASSETS_MIRROR=` (as make exports it when ../shared is absent) means no mirror.
        return None if value == "" else value
