"""ReplicaSlot: a name for this process that survives its restarts and no other live process has.

Kafka's static group membership (`group.instance.id`) and the relay's lease use it: a replica
restarted after a crash comes back under the same name, so the broker hands it the partitions
of its previous life at once instead of after a session timeout, and it renews its own lease.
Two live members with one name would fence each other, so each name is held by a lock file
for as long as the process lives; the kernel releases it when the process dies, even by
SIGKILL. The default name is `<host name>-<n>`, n the lowest index free on this host for that
scope: a process restarted beside its siblings gets the index its predecessor left free.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import IO

from inference_common.settings import CommonSettings

MAX_REPLICAS_PER_HOST = 1000
LOCK_DIR = Path(tempfile.gettempdir()) / "inference-replicas"


class ReplicaIdInUse(RuntimeError):
    """REPLICA_ID names a replica that is still running on this host."""


class ReplicaSlot:
    """Held until close() or the end of the process."""

    def __init__(self, name: str, lock: IO[bytes]) -> None:
        self.name = name
        self._lock: IO[bytes] | None = lock

    @classmethod
    def claim(cls, settings: CommonSettings, group_id: str) -> ReplicaSlot:
        """This process's slot in a consumer group: REPLICA_ID, else the first free name."""
        # Per cluster too: replicas of one group in two stacks on this host do not meet.
        scope = f"{group_id}@{settings.kafka_bootstrap_servers}"
        if settings.replica_id is not None:
            lock = _try_lock(scope, settings.replica_id)
            if lock is None:
                raise ReplicaIdInUse(f"REPLICA_ID={settings.replica_id} is running already")
            return cls(settings.replica_id, lock)
        host = _safe(socket.gethostname())
        for index in range(MAX_REPLICAS_PER_HOST):
            name = f"{host}-{index}"
            lock = _try_lock(scope, name)
            if lock is not None:
                return cls(name, lock)
        raise ReplicaIdInUse(f"{MAX_REPLICAS_PER_HOST} replicas of {scope} on this host")

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None


def _try_lock(scope: str, name: str) -> IO[bytes] | None:
    LOCK_DIR.mkdir(mode=0o1777, parents=True, exist_ok=True)
    handle = (LOCK_DIR / f"{_safe(scope)}.{_safe(name)}.lock").open("ab")
    try:
        # flock belongs to this open file, so even two slots in one process never share a name.
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    with contextlib.suppress(OSError):
        os.chmod(handle.name, 0o666)  # another user's replica may take the name after us
    return handle


def _safe(text: str) -> str:
    # Kafka allows [a-zA-Z0-9._-] in a group.instance.id; a file name allows no slash.
    return re.sub(r"[^a-zA-Z0-9._-]", "_", text)
