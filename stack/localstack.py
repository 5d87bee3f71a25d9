#!/usr/bin/env python3
"""The local stack: Apache Kafka (KRaft, one node) and FerretDB (MongoDB API on SQLite).

With --s3 (or STACK_S3=1), also versitygw, an S3-compatible server for the S3 image store, built
from the Go module proxy (stack/versitygw/) on first use.

With --platform, the same machinery also runs the job service and an executor from the
workspace's virtualenv (.venv), for the demo and for trying the API by hand. With
--atomic-mongo, it also runs an atomic MongoDB-API test server (mongo-java-server's memory
backend, stack/atomic-mongo/): FerretDB 1.24 does not apply an update atomically, so the code
path of a MongoDB deployment (compare-and-set filters, several replicas) is tested there.

No Docker: Kafka's jars come from Maven Central (stack/pom.xml), FerretDB is built from the Go
module proxy (stack/ferretdb/). Both run as detached processes bound to 127.0.0.1, with their
state, logs and pid files under .cache/stack/ (or $STACK_DIR). What is built once (the FerretDB
binary, the resolved Kafka classpath) goes to $STACK_CACHE_DIR, .cache/stack/ by default, so a
stack with a private STACK_DIR (the fault-injection suite's) reuses it instead of rebuilding.

    python3 stack/localstack.py up [--platform] [--atomic-mongo] [--s3]|down|status|logs [-f]
    python3 stack/localstack.py env [--atomic-mongo]
    python3 stack/localstack.py kafka-topics [--describe ...]
    python3 stack/localstack.py kafka-consume --topic T [--from-beginning] [extra args]

Standard library only: it runs before the Python workspace is installed. Tests import it by
path and call up(), down(), status(), stop_service() and kill_service().
"""

# No `from __future__ import annotations` here: with it, dataclasses fail in Python 3.11 when
# the module is loaded by path (as the tests do) without an entry in sys.modules.

import argparse
import base64
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Self

STACK_SRC = Path(__file__).resolve().parent
REPO_ROOT = STACK_SRC.parent
DEFAULT_STATE = REPO_ROOT / ".cache" / "stack"
HOST = "127.0.0.1"
INFRASTRUCTURE = ("kafka", "ferretdb")
ATOMIC_MONGO = "atomic-mongo"
OBJECT_STORE = ("versitygw",)  # only when S3 is wanted: built on first use
PLATFORM = ("inference-service", "executor-service")
SERVICES = (*INFRASTRUCTURE, ATOMIC_MONGO, *OBJECT_STORE, *PLATFORM)
_HAVE_PROC = Path("/proc/self/stat").exists()
# The FerretDB binary is rebuilt whenever one of these changes.
_GO_FILES = ("go.mod", "go.sum", "tools.go", "patches.json")
# The versitygw binary, whenever one of these does: they pin its version and checksums.
_VERSITYGW_FILES = ("go.mod", "go.sum", "tools.go")
# The S3 image store's bucket on the local stack (IMAGE_STORE_S3_BUCKET's default).
S3_BUCKET = "inference-images"

KAFKA_HEAP = ["-Xms256m", "-Xmx768m"]
# The C1 compiler alone: a restarted broker answers after a third less CPU (docs/faults.md), and
# a local stack's few hundred events a second never need C2's faster code.
KAFKA_JIT = ["-XX:TieredStopAtLevel=1"]
# Every test database lives in this heap until the test drops it.
ATOMIC_MONGO_JVM = ["-Xmx512m", "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError"]
# The CLI tools live for seconds: a small heap and the C1-only JIT make them start faster.
TOOL_JVM = ["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
INSTALL_HINTS = {
    "java": "a JDK 17 or newer (Debian: apt-get install openjdk-17-jdk-headless)",
    "javac": "a JDK 17 or newer, not just a JRE (Debian: apt-get install openjdk-17-jdk-headless)",
    "mvn": "Maven 3.8+ (Debian: apt-get install maven)",
    "go": "Go 1.22 or newer (https://go.dev/doc/install, or Debian: apt-get install golang)",
}

# Popen objects of the services started by this process. Kept so that Python does not warn
# (ResourceWarning) about children meant to outlive it, and so that _reap() can collect one
# that was killed: until then it is a zombie, which would still look alive.
_CHILDREN: dict[str, subprocess.Popen[bytes]] = {}


class StackError(Exception):
    """A failure explained for a person: printed without a traceback by the CLI."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Where the stack keeps its state and which loopback ports it binds.

    `cache` holds what is built once and shared by every state directory: the FerretDB binary,
    the Kafka classpath (which points into Maven's ~/.m2) and the atomic server's classes.
    """

    state: Path
    kafka_port: int
    controller_port: int
    mongo_port: int
    timeout: float
    api_port: int = 8080
    executor_port: int = 8081
    cache: Path = DEFAULT_STATE
    atomic_mongo_port: int = 27018
    # The S3-compatible server's one port.
    s3_port: int = 8333
    # Whether `up` starts versitygw, and the platform services put images there.
    s3: bool = False

    @classmethod
    def from_env(cls) -> Self:
        state = os.environ.get("STACK_DIR") or str(DEFAULT_STATE)
        cache = os.environ.get("STACK_CACHE_DIR") or str(DEFAULT_STATE)
        return cls(
            state=Path(state).resolve(),
            kafka_port=_env_int("STACK_KAFKA_PORT", 9092),
            controller_port=_env_int("STACK_KAFKA_CONTROLLER_PORT", 9093),
            mongo_port=_env_int("STACK_MONGO_PORT", 27017),
            timeout=float(_env_int("STACK_UP_TIMEOUT", 120)),
            api_port=_env_int("SERVICE_PORT", 8080),
            executor_port=_env_int("EXECUTOR_HTTP_PORT", 8081),
            cache=Path(cache).resolve(),
            atomic_mongo_port=_env_int("STACK_ATOMIC_MONGO_PORT", 27018),
            s3_port=_env_int("STACK_S3_PORT", 8333),
            s3=os.environ.get("STACK_S3", "") not in ("", "0"),
        )

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def kafka_bootstrap(self) -> str:
        return f"{HOST}:{self.kafka_port}"

    @property
    def mongodb_uri(self) -> str:
        return f"mongodb://{HOST}:{self.mongo_port}/"

    @property
    def atomic_mongodb_uri(self) -> str:
        return f"mongodb://{HOST}:{self.atomic_mongo_port}/"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{HOST}:{self.s3_port}"


@dataclasses.dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    pid: int | None
    address: str
    answering: bool


@dataclasses.dataclass(frozen=True)
class Service:
    """How to launch one service and how to tell that it really answers."""

    name: str
    ports: dict[int, str]  # port -> the variable that overrides it
    address: str
    probe: Callable[[], bool]
    # Obtains what the service needs (may download or build) and returns argv and extra env.
    prepare: Callable[[], tuple[list[str], dict[str, str]]]


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise StackError(f"{name}={raw!r} is not a number") from None


def _say(message: str) -> None:
    print(f"localstack: {message}", file=sys.stderr, flush=True)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StackError(f"`{name}` is not on PATH: install {INSTALL_HINTS[name]}")
    return path


def _digest(*paths: Path) -> str:
    sha = hashlib.sha256()
    for path in paths:
        sha.update(path.read_bytes())
    return sha.hexdigest()[:12]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 64 * 1024))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _run_logged(
    argv: list[str],
    log: Path,
    what: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Runs a build step with its stderr in a log file, shown only if the step fails.

    Returns its stdout.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as err:
        done = subprocess.run(
            argv, check=False, stdout=subprocess.PIPE, stderr=err, cwd=cwd, env=env
        )
    out = done.stdout.decode("utf-8", "replace")
    if out:
        with log.open("a") as handle:
            handle.write(out)
    code = done.returncode
    if code != 0:
        raise StackError(f"{what} failed (exit {code}); last lines of {log}:\n{_tail(log)}")
    return out


# ---------------------------------------------------------------- processes and pid files


def _pid_file(cfg: Config, name: str) -> Path:
    return cfg.state / "run" / f"{name}.pid"


def _start_time(pid: int) -> int | None:
    """The kernel's start time of a live process, None when gone or a zombie.

    Recorded in the pid file so that a pid reused by another program after a kill -9 or a
    reboot is never mistaken for our service.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return _start_time_without_proc(pid)
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def _start_time_without_proc(pid: int) -> int | None:
    # Systems without /proc (macOS): only liveness can be checked; 0 stands for "unknown".
    if _HAVE_PROC:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return 0
    return 0


def _reap(pid: int) -> None:
    """Collects a service that was started by this very process and has died.

    When up() runs inside a long-lived process (pytest), a killed service stays a zombie, and
    so looks alive, until its parent waits for it.
    """
    child = next((n for n, p in _CHILDREN.items() if p.pid == pid), None)
    if child is not None and _CHILDREN[child].poll() is not None:
        del _CHILDREN[child]


def _running_pid(cfg: Config, name: str) -> int | None:
    """The pid of our live service, or None when the pid file is missing or stale."""
    try:
        pid_text, started_text = _pid_file(cfg, name).read_text().split()
        pid, started = int(pid_text), int(started_text)
    except (OSError, ValueError):
        return None
    _reap(pid)
    now = _start_time(pid)
    if now is None or (started and now and now != started):
        return None
    return pid


def _rotate(log: Path) -> None:
    # Logs are appended across restarts (so a crash stays visible), but not without bound.
    if log.exists() and log.stat().st_size > 20 * 1024 * 1024:
        log.replace(log.with_suffix(".log.1"))


def _spawn(cfg: Config, name: str, argv: list[str], extra_env: dict[str, str]) -> int:
    log = cfg.logs / f"{name}.log"
    _rotate(log)
    with log.open("ab") as out:
        out.write(f"\n=== localstack: starting {name} at {time.ctime()} ===\n".encode())
        out.flush()
        # Own session: the service survives the shell (or test run) that started it and gets
        # no terminal signals such as Ctrl-C.
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cfg.state,
            env={**os.environ, **extra_env},
            start_new_session=True,
        )
    _CHILDREN[name] = proc
    _pid_file(cfg, name).write_text(f"{proc.pid} {_start_time(proc.pid) or 0}\n")
    return proc.pid


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if _start_time(pid) is None:
            return True
        time.sleep(0.1)
    return False


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option the JVM and Go set on their listeners, so a port left in TIME_WAIT by a
        # killed service counts as free, as it is for them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def _locked(cfg: Config) -> Iterator[None]:
    """Serialises up/down, so that two concurrent callers never start a service twice."""
    (cfg.state / "run").mkdir(parents=True, exist_ok=True)
    cfg.logs.mkdir(parents=True, exist_ok=True)
    with (cfg.state / "run" / "lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def _building(cfg: Config) -> Iterator[None]:
    """Serialises builds into the shared cache: stacks in other state directories use it too."""
    cfg.cache.mkdir(parents=True, exist_ok=True)
    with (cfg.cache / "build.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


# ---------------------------------------------------------------- health probes


def _exchange(port: int, request: bytes, length_of: Callable[[bytes], int], head: int) -> bytes:
    """Sends one request and reads one framed response, within a short timeout."""
    with socket.create_connection((HOST, port), timeout=2) as sock:
        sock.sendall(request)
        data = _recv_exact(sock, head)
        return data + _recv_exact(sock, length_of(data) - head)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def _kafka_request(port: int, api_key: int, version: int, body: bytes) -> bytes:
    """One Kafka request with header v1; returns the response body after its correlation id."""
    client = b"localstack"
    header = struct.pack(">hhih", api_key, version, 7, len(client)) + client
    frame = struct.pack(">i", len(header) + len(body)) + header + body
    data = _exchange(port, frame, lambda d: 4 + struct.unpack(">i", d[:4])[0], 4)
    return data[8:]


def _kafka_metadata_version(port: int) -> int:
    """Picks a Metadata version this probe can encode (v4-v8) from ApiVersions v0."""
    body = _kafka_request(port, 18, 0, b"")
    error, count = struct.unpack(">hi", body[:6])
    if error:
        return -1
    for i in range(count):
        key, low, high = struct.unpack(">hhh", body[6 + 6 * i : 12 + 6 * i])
        if key == 3:
            version = max(low, 4)
            return version if version <= min(high, 8) else -1
    return -1


def kafka_ready(port: int) -> bool:
    """True once the broker lists itself in Metadata, i.e. it is registered and unfenced.

    ApiVersions alone answers a little earlier, before clients can create topics.
    """
    try:
        version = _kafka_metadata_version(port)
        if version < 0:
            return False
        # No topics, no auto-creation, and (v8) no authorized-operations lists.
        body = struct.pack(">ib", 0, 0) + (b"\0\0" if version >= 8 else b"")
        response = _kafka_request(port, 3, version, body)
        return bool(struct.unpack(">i", response[4:8])[0] > 0)
    except (OSError, struct.error, ValueError):
        return False


def _bson_ping() -> bytes:
    # `ping`, not `hello`: mongo-java-server 1.47 knows only the older `isMaster` of the two.
    elements = b"\x10ping\x00" + struct.pack("<i", 1)
    elements += b"\x02$db\x00" + struct.pack("<i", 6) + b"admin\x00"
    return struct.pack("<i", len(elements) + 5) + elements + b"\x00"


# Sizes of the BSON values a reply holds: fixed ones, and those prefixed by an int32.
_BSON_FIXED = {0x01: 8, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8}
_BSON_PREFIXED = {0x02: 4, 0x03: 0, 0x04: 0, 0x05: 5}


def _bson_ok(doc: bytes) -> bool:
    """Whether a top-level BSON document has ok: 1.0 (walks the elements, no full decoder)."""
    pos = 4
    while pos < len(doc) - 1:
        kind, end = doc[pos], doc.index(b"\x00", pos + 1)
        name, pos = doc[pos + 1 : end], end + 1
        if kind == 0x01 and name == b"ok":
            return bool(struct.unpack("<d", doc[pos : pos + 8])[0] == 1.0)
        if kind in _BSON_FIXED:
            pos += _BSON_FIXED[kind]
        elif kind in _BSON_PREFIXED:
            pos += struct.unpack("<i", doc[pos : pos + 4])[0] + _BSON_PREFIXED[kind]
        else:
            return False
    return False


def mongo_ready(port: int) -> bool:
    """True when a `ping` command over OP_MSG (the MongoDB wire protocol) returns ok: 1."""
    message = struct.pack("<I", 0) + b"\x00" + _bson_ping()
    request = struct.pack("<iiii", 16 + len(message), 1, 0, 2013) + message
    try:
        reply = _exchange(port, request, lambda d: int(struct.unpack("<i", d[:4])[0]), 16)
        opcode = struct.unpack("<i", reply[12:16])[0]
        return opcode == 2013 and reply[20] == 0 and _bson_ok(reply[21:])
    except (OSError, struct.error, ValueError, IndexError):
        return False


# ---------------------------------------------------------------- Kafka


def kafka_classpath(cfg: Config) -> str:
    """The broker and tools classpath, resolved by Maven once per version of pom.xml."""
    return _maven_classpath(cfg, STACK_SRC / "pom.xml", "kafka")


def _maven_classpath(cfg: Config, pom: Path, name: str) -> str:
    cached = cfg.cache / f"{name}-classpath-{_digest(pom)}.txt"
    classpath = _cached_classpath(cached)
    if classpath is not None:
        return classpath
    with _building(cfg):
        return _cached_classpath(cached) or _resolve_classpath(cfg, pom, cached, name)


def _cached_classpath(cached: Path) -> str | None:
    if not cached.exists():
        return None
    classpath = cached.read_text().strip()
    # A cleaned ~/.m2 leaves the cached file pointing at nothing: resolve again then.
    if all(Path(jar).exists() for jar in classpath.split(os.pathsep)):
        return classpath
    return None


def _resolve_classpath(cfg: Config, pom: Path, cached: Path, name: str) -> str:
    mvn = _tool("mvn")
    _say(f"resolving the {name} jars with Maven (first run: downloads them)...")
    tmp = cached.with_suffix(".tmp")
    argv = [mvn, "-q", "-B", "-f", str(pom), "dependency:build-classpath"]
    argv.append(f"-Dmdep.outputFile={tmp}")
    _run_logged(argv, cfg.logs / "mvn.log", f"resolving the {name} jars with Maven")
    tmp.replace(cached)
    return cached.read_text().strip()


def _kafka_properties(cfg: Config) -> str:
    data = cfg.state / "kafka" / "data"
    return f"""# Written by stack/localstack.py on every start: edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{HOST}:{cfg.controller_port}
listeners=PLAINTEXT://{HOST}:{cfg.kafka_port},CONTROLLER://{HOST}:{cfg.controller_port}
advertised.listeners=PLAINTEXT://{HOST}:{cfg.kafka_port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=6
auto.create.topics.enable=true
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Local use: no waiting for more group members, and a small offsets topic that is quick to create.
group.initial.rebalance.delay.ms=0
offsets.topic.num.partitions=6
# After a kill -9 the restarted broker cannot register until the old registration's session
# expires, counted from the restarted controller's start (default 9 s; at 4 s it still cost a
# restart 4 to 5 s: docs/faults.md). Heartbeats to match: a live broker is fenced only after
# four are missed in a row.
broker.session.timeout.ms=2000
broker.heartbeat.interval.ms=500
# Consumers of the KIP-848 protocol (group.protocol=consumer) get their session and heartbeat
# from the broker: the same 10 s / 1 s as our classic consumers (docs/faults.md), not 45 s / 5 s.
group.consumer.min.session.timeout.ms=6000
group.consumer.session.timeout.ms=10000
group.consumer.min.heartbeat.interval.ms=1000
group.consumer.heartbeat.interval.ms=1000
"""


def _kafka_cluster_id() -> str:
    # Same format as `kafka-storage random-uuid` (base64url of 16 random bytes), without a JVM.
    while True:
        uid = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
        if not uid.startswith("-"):
            return uid


def _kafka_jvm(cfg: Config, classpath: str, heap: list[str], tool: bool) -> list[str]:
    logging = [f"-Dlog4j2.configurationFile={STACK_SRC / 'log4j2.xml'}"]
    if tool:
        # Tools keep stdout for their output (topics, messages): warnings go to stderr.
        logging += ["-Dstack.log.level=WARN", "-Dstack.log.target=SYSTEM_ERR"]
    crash = f"-XX:ErrorFile={cfg.logs / 'kafka-hs_err_%p.log'}"
    return [_tool("java"), *heap, "-Djava.awt.headless=true", crash, *logging, "-cp", classpath]


def _kafka_prepare(cfg: Config) -> tuple[list[str], dict[str, str]]:
    classpath = kafka_classpath(cfg)
    props = cfg.state / "kafka" / "server.properties"
    props.parent.mkdir(parents=True, exist_ok=True)
    props.write_text(_kafka_properties(cfg))
    if not (cfg.state / "kafka" / "data" / "meta.properties").exists():
        _say("formatting Kafka storage (first start only)...")
        argv = [*_kafka_jvm(cfg, classpath, TOOL_JVM, tool=True), "kafka.tools.StorageTool"]
        argv += ["format", "-t", _kafka_cluster_id(), "-c", str(props), "--ignore-formatted"]
        _run_logged(argv, cfg.logs / "kafka-format.log", "formatting Kafka storage")
    gc = ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError"]
    argv = _kafka_jvm(cfg, classpath, [*KAFKA_HEAP, *KAFKA_JIT, *gc], tool=False)
    return [*argv, "kafka.Kafka", str(props)], {}


# ---------------------------------------------------------------- FerretDB


def _go(args: list[str], cwd: Path, log: Path, what: str, toolchain: str = "local") -> str:
    # GOFLAGS from the caller's shell (e.g. -mod=vendor) would change what is built;
    # GOTOOLCHAIN=local stops Go from downloading another toolchain.
    env = {**os.environ, "GOFLAGS": "", "GOTOOLCHAIN": toolchain}
    return _run_logged([_tool("go"), *args], log, what, cwd=cwd, env=env)


def _ferretdb_source(cfg: Config) -> Path:
    """A writable copy of FerretDB's module source with build/version/version.txt added and
    stack/ferretdb/patches.json applied.

    FerretDB panics at start unless that generated file holds its version, but the module zip
    on the proxy lacks it and the Go module cache is read-only. So the build replaces the
    module with this copy (the dependencies are still checked against our go.sum).
    """
    src = STACK_SRC / "ferretdb"
    log = cfg.logs / "ferretdb-build.log"
    args = ["mod", "download", "-json", "github.com/FerretDB/FerretDB"]
    info = json.loads(_go(args, src, log, "downloading FerretDB"))
    copy = cfg.cache / "ferretdb-build" / f"src-{info['Version']}"
    if not (copy / "build" / "version" / "version.txt").exists():
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(info["Dir"], copy, copy_function=shutil.copyfile)
        for folder, _, _ in os.walk(copy):
            os.chmod(folder, 0o755)  # copytree kept the module cache's read-only folders
        (copy / "build" / "version" / "version.txt").write_text(f"{info['Version']}\n")
    _patch(copy, json.loads((src / "patches.json").read_text()))
    return copy


def _patch(source: Path, patches: list[dict[str, str]]) -> None:
    """Apply stack/ferretdb/patches.json (each says why); idempotent, and loud when one no
    longer applies (a new FerretDB version: check whether it is still needed)."""
    for patch in patches:
        path = source / patch["file"]
        text = path.read_text()
        if patch["new"] in text:
            continue
        if patch["old"] not in text:
            raise StackError(f"FerretDB patch for {patch['file']} no longer applies")
        path.write_text(text.replace(patch["old"], patch["new"]))


def ferretdb_binary(cfg: Config) -> Path:
    """The FerretDB binary, built once per version of stack/ferretdb/ (modules and patches)."""
    src = STACK_SRC / "ferretdb"
    binary = cfg.cache / "bin" / f"ferretdb-{_digest(*(src / f for f in _GO_FILES))}"
    if binary.exists():
        return binary
    with _building(cfg):
        if not binary.exists():
            _build_ferretdb(cfg, src, binary)
    return binary


def _build_ferretdb(cfg: Config, src: Path, binary: Path) -> None:
    _tool("go")
    _say("building FerretDB from the Go module proxy (first run: about a minute)...")
    copy = _ferretdb_source(cfg)
    build = copy.parent
    gomod = (src / "go.mod").read_text()
    (build / "build.mod").write_text(f"{gomod}\nreplace github.com/FerretDB/FerretDB => {copy}\n")
    shutil.copyfile(src / "go.sum", build / "build.sum")
    tmp = binary.with_suffix(".tmp")
    args = ["build", f"-modfile={build / 'build.mod'}", "-trimpath", "-buildvcs=false"]
    args += ["-o", str(tmp), "github.com/FerretDB/FerretDB/cmd/ferretdb"]
    _go(args, src, cfg.logs / "ferretdb-build.log", "building FerretDB")
    tmp.replace(binary)
    for old in binary.parent.glob("ferretdb-*"):
        if old != binary:
            old.unlink()  # built from an older go.mod: ~40 MB each


def _ferretdb_prepare(cfg: Config) -> tuple[list[str], dict[str, str]]:
    binary = ferretdb_binary(cfg)
    data, state = cfg.state / "ferretdb-data", cfg.state / "ferretdb-state"
    data.mkdir(parents=True, exist_ok=True)
    state.mkdir(parents=True, exist_ok=True)
    argv = [
        str(binary),
        "--handler=sqlite",
        f"--sqlite-url=file:{data}/",
        f"--listen-addr={HOST}:{cfg.mongo_port}",
        f"--state-dir={state}",
        "--telemetry=disable",
        # No debug/metrics HTTP listener: nothing to serve locally, one port less to clash.
        "--debug-addr=-",
        # Telemetry is disabled (and locked so no client can enable it); should that ever
        # change, reports would go to a closed loopback port rather than the internet.
        "--test-telemetry-url=http://127.0.0.1:9/",
    ]
    return argv, {"FERRETDB_TELEMETRY": "disable", "DO_NOT_TRACK": "1"}


# ---------------------------------------------------------------- the atomic MongoDB-API server


def atomic_mongo_classes(cfg: Config) -> tuple[Path, str]:
    """AtomicMongoServer compiled once per version of its source and pom, and its classpath."""
    src = STACK_SRC / "atomic-mongo"
    pom, source = src / "pom.xml", src / "AtomicMongoServer.java"
    classpath = _maven_classpath(cfg, pom, "atomic-mongo")
    classes = cfg.cache / f"atomic-mongo-classes-{_digest(pom, source)}"
    if (classes / "AtomicMongoServer.class").exists():
        return classes, classpath
    with _building(cfg):
        if not (classes / "AtomicMongoServer.class").exists():
            tmp = classes.with_suffix(".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            argv = [_tool("javac"), "-d", str(tmp), "-cp", classpath, str(source)]
            _run_logged(argv, cfg.logs / "atomic-mongo-build.log", "compiling AtomicMongoServer")
            tmp.replace(classes)
    return classes, classpath


def _atomic_mongo_prepare(cfg: Config) -> tuple[list[str], dict[str, str]]:
    classes, classpath = atomic_mongo_classes(cfg)
    crash = f"-XX:ErrorFile={cfg.logs / 'atomic-mongo-hs_err_%p.log'}"
    # Warnings only: at INFO it logs every connection the tests open and close.
    logging = "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn"
    argv = [_tool("java"), *ATOMIC_MONGO_JVM, crash, logging]
    argv += ["-cp", f"{classes}{os.pathsep}{classpath}", "AtomicMongoServer"]
    return [*argv, HOST, str(cfg.atomic_mongo_port)], {}


# ---------------------------------------------------------------- versitygw (S3)

# Its go.mod asks for a newer Go than FerretDB's; "auto" lets an older Go fetch that toolchain
# from the Go module proxy, as a module, checked against the checksum database.
_VERSITYGW_TOOLCHAIN = "auto"


def versitygw_binary(cfg: Config, build: bool = True) -> Path | None:
    """The versitygw binary, built once per version of stack/versitygw/; without `build`,
    None when it has not been built yet."""
    src = STACK_SRC / "versitygw"
    binary = cfg.cache / "bin" / f"versitygw-{_digest(*(src / f for f in _VERSITYGW_FILES))}"
    if binary.exists() or not build:
        return binary if binary.exists() else None
    with _building(cfg):
        if not binary.exists():
            _build_versitygw(cfg, src, binary)
    return binary


def _build_versitygw(cfg: Config, src: Path, binary: Path) -> None:
    _tool("go")
    _say("building versitygw from the Go module proxy (first run: a few minutes on 2 cores)...")
    started = time.monotonic()
    tmp = binary.with_suffix(".tmp")
    # -s -w: no symbol tables or DWARF, which would double the binary's size.
    args = ["build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", str(tmp)]
    args.append("github.com/versity/versitygw/cmd/versitygw")
    log = cfg.logs / "versitygw-build.log"
    _go(args, src, log, "building versitygw", _VERSITYGW_TOOLCHAIN)
    tmp.replace(binary)
    size_mb = binary.stat().st_size / 1e6
    _say(f"versitygw built in {time.monotonic() - started:.0f} s ({size_mb:.0f} MB)")
    for old in binary.parent.glob("versitygw-*"):
        if old != binary:
            old.unlink()


def s3_credentials(cfg: Config) -> tuple[str, str]:
    """The access key and secret of the local S3 server's root account, made once per state
    directory: the server checks every request's signature (SigV4), as AWS does."""
    path = cfg.state / "versitygw" / "credentials.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        made = {"access_key": secrets.token_hex(10), "secret_key": secrets.token_hex(20)}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(made, indent=2))
        tmp.chmod(0o600)
        tmp.replace(path)
    credentials = json.loads(path.read_text())
    return credentials["access_key"], credentials["secret_key"]


def s3_env(cfg: Config) -> dict[str, str]:
    """What a client of the local S3 server needs: the image-store settings and the standard
    AWS variables."""
    access_key, secret_key = s3_credentials(cfg)
    return {
        "IMAGE_STORE_S3_ENDPOINT": cfg.s3_endpoint,
        "IMAGE_STORE_S3_BUCKET": S3_BUCKET,
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_REGION": "us-east-1",
    }


def _versitygw_prepare(cfg: Config) -> tuple[list[str], dict[str, str]]:
    binary = versitygw_binary(cfg)
    assert binary is not None
    access_key, secret_key = s3_credentials(cfg)
    state = cfg.state / "versitygw"
    # The posix backend serves each directory of its root as a bucket: the image bucket is
    # there from the first start, as it would be provisioned on AWS.
    (state / "buckets" / S3_BUCKET).mkdir(parents=True, exist_ok=True)
    (state / "metadata").mkdir(exist_ok=True)
    # The root account's keys by environment, not argv: `ps` shows argv to every user.
    env = {"ROOT_ACCESS_KEY_ID": access_key, "ROOT_SECRET_ACCESS_KEY": secret_key}
    return versitygw_argv(cfg, binary), env


def versitygw_argv(cfg: Config, binary: Path) -> list[str]:
    """The S3 gateway on 127.0.0.1 only, over a directory of the state directory; object
    metadata (content type, checksums) in sidecar files, so no filesystem xattrs are needed."""
    state = cfg.state / "versitygw"
    return [
        str(binary),
        f"--port={HOST}:{cfg.s3_port}",
        "--health=/health",
        # Connections kept open between requests, as boto3's pool expects.
        "--keep-alive",
        # No line per request in the log: the tests make thousands.
        "--quiet",
        "posix",
        f"--sidecar={state / 'metadata'}",
        str(state / "buckets"),
    ]


# ---------------------------------------------------------------- platform services


def http_ready(port: int, path: str = "/readyz") -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _platform_prepare(cfg: Config, name: str) -> tuple[list[str], dict[str, str]]:
    program = REPO_ROOT / ".venv" / "bin" / name
    if not program.exists():
        raise StackError(f"{program} is missing: install the workspace first (`make install`)")
    # The services run from the state directory, so every path they read is made absolute.
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": cfg.kafka_bootstrap,
        "MONGODB_URI": cfg.mongodb_uri,
        "ASSETS_MANIFEST": str(REPO_ROOT / "assets" / "manifest.toml"),
        "ASSETS_CACHE_DIR": str(REPO_ROOT / ".cache" / "assets"),
        "OPENAPI_DIR": str(REPO_ROOT / "openapi"),
        "SERVICE_PORT": str(cfg.api_port),
        "EXECUTOR_HTTP_PORT": str(cfg.executor_port),
        # Both services see the same image store: this directory, or the local S3 server.
        "IMAGE_STORE_DIR": str(cfg.state / "images"),
    }
    if cfg.s3:
        env |= {"IMAGE_STORE": "s3", **s3_env(cfg)}
    return [str(program)], env


# ---------------------------------------------------------------- services


def _services(cfg: Config) -> dict[str, Service]:
    kafka = Service(
        name="kafka",
        ports={
            cfg.kafka_port: "STACK_KAFKA_PORT",
            cfg.controller_port: "STACK_KAFKA_CONTROLLER_PORT",
        },
        address=cfg.kafka_bootstrap,
        probe=lambda: kafka_ready(cfg.kafka_port),
        prepare=lambda: _kafka_prepare(cfg),
    )
    ferretdb = Service(
        name="ferretdb",
        ports={cfg.mongo_port: "STACK_MONGO_PORT"},
        address=f"{HOST}:{cfg.mongo_port}",
        probe=lambda: mongo_ready(cfg.mongo_port),
        prepare=lambda: _ferretdb_prepare(cfg),
    )
    atomic_mongo = Service(
        name=ATOMIC_MONGO,
        ports={cfg.atomic_mongo_port: "STACK_ATOMIC_MONGO_PORT"},
        address=f"{HOST}:{cfg.atomic_mongo_port}",
        probe=lambda: mongo_ready(cfg.atomic_mongo_port),
        prepare=lambda: _atomic_mongo_prepare(cfg),
    )
    versitygw = Service(
        name="versitygw",
        ports={cfg.s3_port: "STACK_S3_PORT"},
        address=cfg.s3_endpoint,
        probe=lambda: http_ready(cfg.s3_port, "/health"),
        prepare=lambda: _versitygw_prepare(cfg),
    )
    api = Service(
        name="inference-service",
        ports={cfg.api_port: "SERVICE_PORT"},
        address=f"http://{HOST}:{cfg.api_port}/api/v1/inference/ui/",
        probe=lambda: http_ready(cfg.api_port),
        prepare=lambda: _platform_prepare(cfg, "inference-service"),
    )
    executor = Service(
        name="executor-service",
        ports={cfg.executor_port: "EXECUTOR_HTTP_PORT"},
        address=f"http://{HOST}:{cfg.executor_port}/metrics",
        probe=lambda: http_ready(cfg.executor_port),
        prepare=lambda: _platform_prepare(cfg, "executor-service"),
    )
    services = (kafka, ferretdb, atomic_mongo, versitygw, api, executor)
    return {svc.name: svc for svc in services}


def _service(cfg: Config, name: str) -> Service:
    services = _services(cfg)
    if name not in services:
        raise StackError(f"unknown service {name!r}: one of {', '.join(services)}")
    return services[name]


def _check_ports(services: list[Service], grace: float = 15.0) -> None:
    # A service just killed may hold its port while the kernel tears it down (a broker with
    # thousands of open segment files takes seconds), so a busy port gets a grace period.
    deadline = time.monotonic() + grace
    for svc in services:
        for port, variable in svc.ports.items():
            while not _port_free(port) and time.monotonic() < deadline:
                time.sleep(0.2)
            if not _port_free(port):
                raise StackError(
                    f"{svc.name}: port {HOST}:{port} is already in use by a process this stack "
                    f"did not start (`ss -ltnp` shows which); stop it, or set {variable} to "
                    f"another port"
                )


def _start(cfg: Config, svc: Service) -> int:
    _pid_file(cfg, svc.name).unlink(missing_ok=True)  # stale: its process is gone
    argv, env = svc.prepare()
    pid = _spawn(cfg, svc.name, argv, env)
    _say(f"{svc.name}: started (pid {pid}), waiting for it on {svc.address}...")
    return pid


def _wait_ready(cfg: Config, svc: Service, pid: int, deadline: float) -> None:
    log = cfg.logs / f"{svc.name}.log"
    while not svc.probe():
        if _running_pid(cfg, svc.name) != pid:
            raise StackError(
                f"{svc.name} exited while starting; last lines of {log}:\n" + _tail(log)
            )
        if time.monotonic() > deadline:
            raise StackError(
                f"{svc.name} (pid {pid}) did not answer on {svc.address} within "
                f"{cfg.timeout:.0f} s; last lines of {log}:\n{_tail(log)}"
            )
        time.sleep(0.2)


def up(
    cfg: Config | None = None, platform: bool = False, atomic_mongo: bool = False
) -> dict[str, ServiceStatus]:
    """Starts whatever is not running, then waits until every service answers.

    Kafka and FerretDB always, the atomic MongoDB-API server with `atomic_mongo`, versitygw
    with `cfg.s3`; with `platform`, then the job service and an executor.
    """
    cfg = cfg or Config.from_env()
    infrastructure = (
        *INFRASTRUCTURE,
        *((ATOMIC_MONGO,) if atomic_mongo else ()),
        *(OBJECT_STORE if cfg.s3 else ()),
    )
    with _locked(cfg):
        _up_group(cfg, infrastructure)
        if platform:
            _up_group(cfg, PLATFORM)  # after the infrastructure: they connect at start
    return status(cfg, (*infrastructure, *(PLATFORM if platform else ())))


def up_s3(cfg: Config | None = None) -> ServiceStatus:
    """Starts versitygw alone (built on first use), for tests whose Kafka and MongoDB were
    given to them rather than started here."""
    cfg = cfg or Config.from_env()
    with _locked(cfg):
        _up_group(cfg, OBJECT_STORE)
    return status(cfg, OBJECT_STORE)["versitygw"]


def _up_group(cfg: Config, names: tuple[str, ...]) -> None:
    services = [svc for svc in _services(cfg).values() if svc.name in names]
    pids = {svc.name: _running_pid(cfg, svc.name) for svc in services}
    # Checked before anything starts, so that a clash leaves no service half up.
    _check_ports([svc for svc in services if pids[svc.name] is None])
    waiting: list[tuple[Service, int, float]] = []
    for svc in services:
        pid = pids[svc.name]
        if pid is not None and svc.probe():
            continue
        started = time.monotonic()
        waiting.append((svc, pid if pid is not None else _start(cfg, svc), started))
    # Services were all launched before this first wait: Kafka boots during the Go build.
    for svc, pid, started in waiting:
        _wait_ready(cfg, svc, pid, time.monotonic() + cfg.timeout)
        _say(f"{svc.name}: ready on {svc.address} ({time.monotonic() - started:.1f} s)")


def _signal_and_wait(pid: int, sig: int, timeout: float) -> bool:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    return _wait_gone(pid, timeout)


def stop_service(
    name: str, sig: int = signal.SIGTERM, timeout: float = 60.0, cfg: Config | None = None
) -> bool:
    """Stops one service started by up(); SIGKILL when it outlives the timeout.

    Returns whether it was running. Its pid file is removed.
    """
    cfg = cfg or Config.from_env()
    _service(cfg, name)
    pid = _running_pid(cfg, name)
    if pid is not None and not _signal_and_wait(pid, sig, timeout):
        _say(f"{name}: still running {timeout:.0f} s after signal {sig}, sending SIGKILL")
        _signal_and_wait(pid, signal.SIGKILL, 10.0)
    _pid_file(cfg, name).unlink(missing_ok=True)
    return pid is not None


def kill_service(name: str, cfg: Config | None = None) -> int | None:
    """kill -9 of one service, as a crash would: the pid file is left behind, stale.

    Returns the pid that was killed (None when it was not running). For fault tests.
    """
    cfg = cfg or Config.from_env()
    _service(cfg, name)
    pid = _running_pid(cfg, name)
    if pid is not None and not _signal_and_wait(pid, signal.SIGKILL, 10.0):
        raise StackError(f"{name} (pid {pid}) survived SIGKILL for 10 s")
    return pid


def down(cfg: Config | None = None) -> None:
    """Stops the services that up() started (by pid file), Kafka last."""
    cfg = cfg or Config.from_env()
    with _locked(cfg):
        for name in reversed(SERVICES):
            if stop_service(name, cfg=cfg):
                _say(f"{name}: stopped")


def status(
    cfg: Config | None = None, names: tuple[str, ...] = INFRASTRUCTURE
) -> dict[str, ServiceStatus]:
    """Kafka and FerretDB by default; pass SERVICES for the platform services too."""
    cfg = cfg or Config.from_env()
    result = {}
    for svc in _services(cfg).values():
        if svc.name not in names:
            continue
        pid = _running_pid(cfg, svc.name)
        answering = pid is not None and svc.probe()
        result[svc.name] = ServiceStatus(svc.name, pid is not None, pid, svc.address, answering)
    return result


# ---------------------------------------------------------------- command line


def _print_status(cfg: Config) -> None:
    for st in status(cfg, SERVICES).values():
        state = "stopped"
        if st.running:
            state = "running" if st.answering else "running (not answering yet)"
        extra = f" (controller {HOST}:{cfg.controller_port})" if st.name == "kafka" else ""
        pid = f"pid {st.pid}" if st.pid else "-"
        print(f"{st.name:<17} {state:<8} {pid:<10} {st.address}{extra}")


def _print_env(cfg: Config, atomic_mongo: bool) -> None:
    print(f"KAFKA_BOOTSTRAP_SERVERS={cfg.kafka_bootstrap}")
    print(f"MONGODB_URI={cfg.atomic_mongodb_uri if atomic_mongo else cfg.mongodb_uri}")
    if cfg.s3 or _running_pid(cfg, "versitygw") is not None:
        print("IMAGE_STORE=s3")
        for name, value in s3_env(cfg).items():
            print(f"{name}={value}")


def _show_logs(cfg: Config, lines: int, follow: bool) -> None:
    paths = [cfg.logs / f"{name}.log" for name in SERVICES]
    for path in paths:
        print(f"==> {path} <==\n{_tail(path, lines)}\n")
    if follow:
        _follow(paths, sys.stdout)


def _follow(paths: list[Path], out: IO[str]) -> None:
    offsets = {p: p.stat().st_size if p.exists() else 0 for p in paths}
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            for path in paths:
                size = path.stat().st_size if path.exists() else 0
                if size < offsets[path]:
                    offsets[path] = 0  # rotated or truncated
                if size > offsets[path]:
                    with path.open("rb") as handle:
                        handle.seek(offsets[path])
                        text = handle.read().decode("utf-8", "replace")
                    offsets[path] = size
                    for line in text.splitlines():
                        print(f"{path.stem}| {line}", file=out, flush=True)
            time.sleep(0.5)


def _kafka_tool(cfg: Config, main_class: str, args: Sequence[str]) -> int:
    if _running_pid(cfg, "kafka") is None:
        raise StackError("Kafka is not running: start it with `python3 stack/localstack.py up`")
    jvm = _kafka_jvm(cfg, kafka_classpath(cfg), TOOL_JVM, tool=True)
    argv = [*jvm, main_class, "--bootstrap-server", cfg.kafka_bootstrap, *args]
    try:
        return subprocess.call(argv)
    except KeyboardInterrupt:
        return 130


def _kafka_consume(cfg: Config, args: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="localstack.py kafka-consume")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--from-beginning", action="store_true")
    known, extra = parser.parse_known_args(args)
    argv = ["--topic", known.topic, *(["--from-beginning"] if known.from_beginning else [])]
    # Keys and headers shown, so CloudEvents' ce_* headers are visible next to each payload.
    argv += ["--formatter-property", "print.headers=true"]
    argv += ["--formatter-property", "print.key=true", *extra]
    return _kafka_tool(cfg, "org.apache.kafka.tools.consumer.ConsoleConsumer", argv)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localstack.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up", help="start Kafka and FerretDB (downloaded and built once)")
    start.add_argument(
        "--platform", action="store_true", help="then the job service and an executor (.venv)"
    )
    atomic_help = "also the atomic MongoDB-API test server (in memory, no durability)"
    start.add_argument("--atomic-mongo", action="store_true", help=atomic_help)
    start.add_argument(
        "--s3",
        action="store_true",
        help="versitygw too (built on first use), and the platform's images on it (STACK_S3=1)",
    )
    sub.add_parser("down", help="stop what `up` started")
    sub.add_parser("status", help="show each service, its pid and address")
    logs = sub.add_parser("logs", help="tail the services' logs")
    logs.add_argument("-n", "--lines", type=int, default=40)
    logs.add_argument("-f", "--follow", action="store_true")
    env = sub.add_parser(
        "env", help="print KAFKA_BOOTSTRAP_SERVERS, MONGODB_URI (and the S3 settings)"
    )
    env.add_argument(
        "--atomic-mongo", action="store_true", help="MONGODB_URI of the atomic test server"
    )
    # Listed for --help only: main() hands their arguments to the Kafka tool untouched.
    sub.add_parser("kafka-topics", help="Kafka's TopicCommand (default --list)")
    sub.add_parser("kafka-consume", help="Kafka's console consumer, keys and headers")
    return parser


def _dispatch(cfg: Config, ns: argparse.Namespace) -> int:
    if ns.command == "up":
        up(
            dataclasses.replace(cfg, s3=cfg.s3 or ns.s3),
            platform=ns.platform,
            atomic_mongo=ns.atomic_mongo,
        )
        _print_status(cfg)
    elif ns.command == "down":
        down(cfg)
    elif ns.command == "status":
        _print_status(cfg)
    elif ns.command == "logs":
        _show_logs(cfg, ns.lines, ns.follow)
    elif ns.command == "env":
        _print_env(cfg, ns.atomic_mongo)
    elif ns.command == "kafka-topics":
        return _kafka_tool(cfg, "org.apache.kafka.tools.TopicCommand", ns.args or ["--list"])
    elif ns.command == "kafka-consume":
        return _kafka_consume(cfg, ns.args)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("kafka-topics", "kafka-consume"):
        # argparse would claim options such as --describe or --topic as its own.
        ns = argparse.Namespace(command=args[0], args=args[1:])
    else:
        ns = _parser().parse_args(args)
    try:
        return _dispatch(Config.from_env(), ns)
    except StackError as error:
        print(f"localstack: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
