"""ReplicaSlot: stable names for restarted replicas, never one name for two live processes."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from inference_common.kafka import consumer_config, static_member
from inference_common.replica import ReplicaIdInUse, ReplicaSlot
from inference_common.settings import CommonSettings


@pytest.fixture
def scope() -> str:
    return f"test-group-{uuid.uuid4().hex[:8]}"


def test_live_replicas_get_distinct_names_and_a_restart_gets_the_freed_one(scope) -> None:
    settings = CommonSettings()
    first, second, third = (ReplicaSlot.claim(settings, scope) for _ in range(3))
    assert [first.name, second.name, third.name] == [
        first.name.rsplit("-", 1)[0] + f"-{n}" for n in range(3)
    ]

    second.close()  # as the kernel does when its process is killed
    restarted = ReplicaSlot.claim(settings, scope)

    assert restarted.name == second.name
    for slot in (first, third, restarted):
        slot.close()


def test_a_killed_process_frees_its_name(scope) -> None:
    code = (
        "import os, signal, sys; from inference_common.replica import ReplicaSlot; "
        "from inference_common.settings import CommonSettings; "
        f"slot = ReplicaSlot.claim(CommonSettings(), {scope!r}); print(slot.name, flush=True); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    killed = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True
    )
    assert killed.returncode == -9

    slot = ReplicaSlot.claim(CommonSettings(), scope)

    assert slot.name == killed.stdout.strip()
    slot.close()


def test_a_replica_id_that_is_running_is_refused(scope) -> None:
    settings = CommonSettings(replica_id=f"pod-{scope}")
    slot = ReplicaSlot.claim(settings, scope)
    assert slot.name == f"pod-{scope}"

    with pytest.raises(ReplicaIdInUse):
        ReplicaSlot.claim(settings, scope)
    slot.close()
    ReplicaSlot.claim(settings, scope).close()


def test_the_slot_and_topic_are_the_static_member_id_unless_static_membership_is_off(scope) -> None:
    slot = ReplicaSlot.claim(CommonSettings(), scope)

    static = consumer_config(
        CommonSettings(), scope, **static_member(CommonSettings(), slot, "inference.jobs")
    )
    dynamic = static_member(CommonSettings(kafka_static_membership=False), slot, "inference.jobs")
    elsewhere = static_member(CommonSettings(), slot, "other.jobs")

    assert static["group.instance.id"] == f"{slot.name}.inference.jobs"
    # The same replica on another topic is another member: never handed this one's partitions.
    assert elsewhere["group.instance.id"] != static["group.instance.id"]
    assert static["session.timeout.ms"] == 10_000
    assert static["heartbeat.interval.ms"] == 1_000
    assert dynamic == {}
    assert "group.instance.id" not in consumer_config(CommonSettings(), scope)
    slot.close()
