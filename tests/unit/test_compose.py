"""docker-compose.yaml cannot run here (no Docker engine), so check it statically."""

import re
import tomllib
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


def test_every_image_is_built_from_a_target_of_the_one_dockerfile() -> None:
    built = {name: s["build"] for name, s in SERVICES.items() if "build" in s}
    assert {"inference-service", "executor-service", "simulator", "web-ui"} <= set(built)
    dockerfile = (ROOT / "Dockerfile").read_text()
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, re.M))
    for build in built.values():
        assert (ROOT / build["context"]).resolve() == ROOT
        assert "dockerfile" not in build  # the root Dockerfile
        assert build["target"] in targets, build


def test_the_dockerfile_copies_every_workspace_member_manifest() -> None:
    """uv reads the workspace's lock only with every member's pyproject.toml present."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    members = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]
    for member in members["members"]:
        assert f"COPY {member}/pyproject.toml {member}/pyproject.toml" in dockerfile, member


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
