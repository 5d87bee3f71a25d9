"""docs/kubernetes/ cannot be applied here (no cluster), so check the manifests statically."""

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from executor_service.settings import ExecutorSettings
from inference_common.kafka import consumer_config
from inference_common.settings import CommonSettings
from inference_service.settings import ServiceSettings
from tests.unit.test_configuration_doc import variables

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "docs" / "kubernetes"
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
# What each container runs, and so which settings it reads.
SETTINGS: dict[str, type[BaseSettings]] = {
    "inference-service": ServiceSettings,
    "executor-service": ExecutorSettings,
}
# The one Dockerfile's build targets (`FROM ... AS <target>`).
TARGETS = set(re.findall(r"^FROM \S+ AS (\S+)$", (ROOT / "Dockerfile").read_text(), re.M))


def load() -> list[dict[str, Any]]:
    return [
        document
        for path in sorted(MANIFESTS.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


OBJECTS = load()


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in OBJECTS if o["kind"] == kind}


DEPLOYMENTS = objects("Deployment")
CONFIG = objects("ConfigMap")["cv-inference-settings"]["data"]
SECRET_KEYS = set(objects("Secret")["cv-inference-secrets"]["stringData"])


def container(deployment: str) -> dict[str, Any]:
    (only,) = DEPLOYMENTS[deployment]["spec"]["template"]["spec"]["containers"]
    return dict(only)


def env_of(deployment: str) -> dict[str, Any]:
    return {e["name"]: e for e in container(deployment).get("env", [])}


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - {"secret.example.yaml"}
    assert {image["name"] for image in kustomization["images"]} == {
        container(name)["image"] for name in DEPLOYMENTS
    }


def test_there_is_a_deployment_per_service_image_and_each_is_a_dockerfile_target() -> None:
    assert set(DEPLOYMENTS) == set(SETTINGS)
    for name in DEPLOYMENTS:
        assert container(name)["image"] == f"cv-inference/{name}"
        assert name in TARGETS


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_probes_use_readyz_and_healthz_on_the_container_port(name: str) -> None:
    spec = container(name)
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert spec["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe"):
        assert spec[probe]["httpGet"]["port"] in ports
    # The port the service listens on is the one the probes and the Pod declare.
    port_setting = {"inference-service": "SERVICE_PORT", "executor-service": "EXECUTOR_HTTP_PORT"}
    assert int(env_of(name)[port_setting[name]]["value"]) in ports.values()
    host_setting = {"inference-service": "SERVICE_HOST", "executor-service": "EXECUTOR_HTTP_HOST"}
    assert env_of(name)[host_setting[name]]["value"] == "0.0.0.0"


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_variable_is_a_documented_setting_of_that_service(name: str) -> None:
    spec = container(name)
    known = set(variables(CommonSettings)) | set(variables(SETTINGS[name]))
    given = set(env_of(name))
    for source in spec.get("envFrom", []):
        if "configMapRef" in source:
            assert source["configMapRef"]["name"] == "cv-inference-settings"
            given |= set(CONFIG)
        else:
            assert source["secretRef"]["name"] == "cv-inference-secrets"
            given |= SECRET_KEYS
    assert given - known == set()
    assert [v for v in given if f"`{v}`" not in CONFIGURATION] == []
    for variable in env_of(name).values():
        if "valueFrom" in variable:
            reference = variable["valueFrom"]["secretKeyRef"]
            assert reference["name"] == "cv-inference-secrets"
            assert reference["key"] in SECRET_KEYS


def test_shared_settings_hold_no_secret_and_topics_are_replicated() -> None:
    assert set(CONFIG) <= set(variables(CommonSettings))
    assert not {"MONGODB_URI", "KAFKA_SASL_PASSWORD", "API_KEYS"} & set(CONFIG)
    assert int(CONFIG["TOPIC_REPLICATION_FACTOR"]) >= 3


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_deployment_requests_resources_and_has_a_disruption_budget(name: str) -> None:
    requests = container(name)["resources"]["requests"]
    assert {"cpu", "memory"} <= set(requests)
    labels = DEPLOYMENTS[name]["spec"]["template"]["metadata"]["labels"]
    budgets = objects("PodDisruptionBudget").values()
    assert any(b["spec"]["selector"]["matchLabels"].items() <= labels.items() for b in budgets), (
        name
    )
    assert DEPLOYMENTS[name]["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_service_reaches_the_job_service_pods_on_a_named_port() -> None:
    service = objects("Service")["inference-service"]["spec"]
    labels = DEPLOYMENTS["inference-service"]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    names = {p["name"] for p in container("inference-service")["ports"]}
    assert {p["targetPort"] for p in service["ports"]} <= names


def test_executors_stay_within_the_partitions_and_may_finish_their_jobs() -> None:
    partitions = int(CONFIG["TOPIC_PARTITIONS"])
    executor = DEPLOYMENTS["executor-service"]["spec"]
    assert executor["replicas"] <= partitions
    (autoscaler,) = objects("HorizontalPodAutoscaler").values()
    assert autoscaler["spec"]["scaleTargetRef"]["name"] == "executor-service"
    assert autoscaler["spec"]["minReplicas"] <= autoscaler["spec"]["maxReplicas"] <= partitions
    shutdown = float(env_of("executor-service")["EXECUTOR_SHUTDOWN_TIMEOUT_S"]["value"])
    assert executor["template"]["spec"]["terminationGracePeriodSeconds"] > shutdown
    # Inference threads match the CPU the Pod asks for (the default would not see a limit).
    workers = int(env_of("executor-service")["EXECUTOR_WORKERS"]["value"])
    assert workers == int(container("executor-service")["resources"]["requests"]["cpu"])


# --- lag-based scaling with KEDA (docs/kubernetes/keda, a kustomize component) ---

KEDA = MANIFESTS / "keda"
KEDA_OBJECTS = [
    document
    for document in yaml.safe_load_all((KEDA / "executor-scaling.yaml").read_text())
    if document
]
# KAFKA_SASL_MECHANISM in KEDA's words.
KEDA_SASL = {"SCRAM-SHA-512": "scram_sha512", "SCRAM-SHA-256": "scram_sha256", "PLAIN": "plaintext"}


def keda_object(kind: str) -> dict[str, Any]:
    (only,) = [o for o in KEDA_OBJECTS if o["kind"] == kind]
    return dict(only)


def test_lag_scaling_follows_the_executor_group_within_the_partitions() -> None:
    spec = keda_object("ScaledObject")["spec"]
    assert spec["scaleTargetRef"]["name"] == "executor-service" in DEPLOYMENTS
    assert (
        1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= int(CONFIG["TOPIC_PARTITIONS"])
    )
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka"
    lag = trigger["metadata"]
    assert lag["consumerGroup"] == ExecutorSettings.model_fields["executor_group_id"].default
    assert lag["topic"] == CommonSettings.model_fields["topic_jobs"].default
    assert lag["bootstrapServers"] == CONFIG["KAFKA_BOOTSTRAP_SERVERS"]
    assert lag["allowIdleConsumers"] == "false"  # never more replicas than partitions
    # A new group starts where the executors' consumers do.
    reset = consumer_config(CommonSettings(), "any")["auto.offset.reset"]
    assert lag["offsetResetPolicy"] == reset == "earliest"
    assert int(lag["lagThreshold"]) > 0
    # The same scale-down as the CPU autoscaler it replaces: each change is a rebalance.
    (cpu,) = objects("HorizontalPodAutoscaler").values()
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"] == cpu["spec"]["behavior"]["scaleDown"]


def test_lag_scaling_reaches_kafka_as_the_executors_do() -> None:
    (trigger,) = keda_object("ScaledObject")["spec"]["triggers"]
    lag = trigger["metadata"]
    assert lag["sasl"] == KEDA_SASL[CONFIG["KAFKA_SASL_MECHANISM"]]
    assert (lag["tls"] == "enable") == CONFIG["KAFKA_SECURITY_PROTOCOL"].endswith("SSL")
    auth = keda_object("TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    (username,) = auth["spec"]["configMapTargetRef"]
    (password,) = auth["spec"]["secretTargetRef"]
    assert (username["parameter"], password["parameter"]) == ("username", "password")
    assert username["name"] == "cv-inference-settings" and username["key"] in CONFIG
    assert password["name"] == "cv-inference-secrets" and password["key"] in SECRET_KEYS
    assert password["key"] == "KAFKA_SASL_PASSWORD"


def test_the_keda_component_replaces_the_cpu_autoscaler() -> None:
    component = yaml.safe_load((KEDA / "kustomization.yaml").read_text())
    assert component["kind"] == "Component"
    assert component["resources"] == ["executor-scaling.yaml"]
    (patch,) = component["patches"]
    deleted = yaml.safe_load(patch["patch"])
    assert deleted["$patch"] == "delete"
    assert deleted["kind"] == "HorizontalPodAutoscaler"
    assert deleted["metadata"]["name"] in objects("HorizontalPodAutoscaler")
    # Off by default (the CPU autoscaler is the fallback); one line switches it on.
    assert "# components: [keda]" in (MANIFESTS / "kustomization.yaml").read_text()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl renders the kustomization")
def test_rendered_one_autoscaler_drives_the_executors_either_way(tmp_path: Path) -> None:
    def autoscalers(directory: Path) -> list[str]:
        rendered = subprocess.run(
            ["kubectl", "kustomize", str(directory)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        return [
            o["kind"]
            for o in yaml.safe_load_all(rendered)
            if o["kind"] in {"HorizontalPodAutoscaler", "ScaledObject"}
            and o["spec"]["scaleTargetRef"]["name"] == "executor-service"
        ]

    assert autoscalers(MANIFESTS) == ["HorizontalPodAutoscaler"]
    copy = tmp_path / "kubernetes"
    shutil.copytree(MANIFESTS, copy)
    base = copy / "kustomization.yaml"
    base.write_text(base.read_text().replace("# components: [keda]", "components: [keda]"))
    assert autoscalers(copy) == ["ScaledObject"]
