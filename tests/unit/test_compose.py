"""docker-compose.yaml cannot run here (no Docker engine), so check it statically."""

from pathlib import Path
from typing import Any

import yaml

from inference_common.settings import CommonSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def test_infrastructure_uses_the_official_images() -> None:
    assert SERVICES["mongo"]["image"].startswith("mongo:")
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:4.")


def test_every_build_context_and_dockerfile_exists() -> None:
    built = {name: s["build"] for name, s in SERVICES.items() if "build" in s}
    assert {"inference-service", "executor-service", "simulator"} <= set(built)
    for build in built.values():
        context = ROOT / build["context"]
        assert context.is_dir()
        dockerfile = context / build["dockerfile"]
        assert dockerfile.is_file(), dockerfile
        assert "FROM " in dockerfile.read_text()


def test_dependencies_exist_and_healthy_conditions_have_healthchecks() -> None:
    for service in SERVICES.values():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in SERVICES
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], dependency


def test_ports_are_unique_loopback_and_the_api_is_on_8080() -> None:
    published = [p for s in SERVICES.values() for p in s.get("ports", [])]
    host_ports = [p.rsplit(":", 1)[0] for p in published]
    assert len(host_ports) == len(set(host_ports))
    assert all(p.startswith("127.0.0.1:") for p in published)
    assert "127.0.0.1:8080:8080" in SERVICES["inference-service"]["ports"]


def test_services_reach_kafka_and_mongo_by_their_service_names() -> None:
    kafka_listeners = SERVICES["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    for name in ("inference-service", "executor-service", "simulator"):
        env = SERVICES[name]["environment"]
        assert f"PLAINTEXT://{env['KAFKA_BOOTSTRAP_SERVERS']}" in kafka_listeners
        assert env["MONGODB_URI"].startswith("mongodb://mongo:27017")


def test_executors_scale_as_replicas_within_the_partitions() -> None:
    """`docker compose up --scale executor-service=N` needs no fixed name or host port."""
    executor = SERVICES["executor-service"]
    assert "container_name" not in executor
    assert "ports" not in executor
    partitions = int(SERVICES["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"])
    default = CommonSettings.model_fields["topic_partitions"].default
    platform_partitions = int(executor["environment"].get("TOPIC_PARTITIONS", default))
    assert executor["deploy"]["replicas"] <= min(partitions, platform_partitions)


def test_the_job_service_and_every_executor_share_the_filesystem_image_store() -> None:
    for name in ("inference-service", "executor-service"):
        env = SERVICES[name]["environment"]
        assert f"images:{env['IMAGE_STORE_DIR']}" in SERVICES[name]["volumes"]
    assert "images" in COMPOSE["volumes"]


def test_the_object_store_is_an_option_on_the_official_versitygw_image() -> None:
    versitygw = SERVICES["versitygw"]
    assert versitygw["image"].startswith("versity/versitygw:v")
    assert versitygw["profiles"] == ["s3"]  # off unless asked for
    # The posix backend over the volume, its image bucket made before the gateway starts.
    script = versitygw["entrypoint"][2]
    bucket = CommonSettings.model_fields["image_store_s3_bucket"].default
    assert f"mkdir -p /data/buckets/{bucket} " in script
    assert script.endswith('exec versitygw "$$@"')  # compose turns $$ into $
    command = versitygw["command"]
    assert command[command.index("posix") + 1 :] == ["--sidecar=/data/metadata", "/data/buckets"]
    assert "--health=/health" in command and "--port=:7070" in command
    env = SERVICES["executor-service"]["environment"]
    assert env["IMAGE_STORE_S3_ENDPOINT"] == "http://versitygw:7070"
    # The same keys on both sides: the gateway's root account, the platform's AWS variables.
    for root, variable in (
        ("ROOT_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
        ("ROOT_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
    ):
        assert versitygw["environment"][root] == env[variable]
    # No platform service waits for it: a profile that is off would break `up`.
    assert all("versitygw" not in s.get("depends_on", {}) for s in SERVICES.values())
