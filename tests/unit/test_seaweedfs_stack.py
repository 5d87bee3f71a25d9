"""How the local stack runs SeaweedFS: loopback only, fixed ports, no telemetry, and one
identity whose credentials the S3 image store's clients get as the standard AWS variables."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from tests.conftest import ROOT, load_localstack

localstack = load_localstack()


def config(tmp_path: Path, s3_port: int = 27333) -> object:
    return dataclasses.replace(
        localstack.Config.from_env(), state=tmp_path, cache=tmp_path, s3_port=s3_port
    )


def flags(argv: list[str]) -> dict[str, str]:
    return dict(a.lstrip("-").split("=", 1) for a in argv if a.startswith("-") and "=" in a)


def test_every_server_binds_loopback_on_its_own_fixed_port(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    given = flags(localstack.seaweedfs_argv(cfg, Path("/bin/weed")))
    assert given["ip"] == given["ip.bind"] == "127.0.0.1"
    ports = [int(v) for k, v in given.items() if re.fullmatch(r"\w+\.port(\.grpc)?", k)]
    assert sorted(ports) == sorted(localstack._seaweedfs_ports(cfg).values())
    assert len(set(ports)) == len(ports) == 8
    assert int(given["s3.port"]) == cfg.s3_port
    # Below the ephemeral range (SeaweedFS's own gRPC default, port + 10000, is not), and
    # clear of the other services of the stack.
    assert max(ports) < 32768
    others = {cfg.kafka_port, cfg.controller_port, cfg.mongo_port, cfg.api_port, cfg.executor_port}
    assert not others & set(ports)
    # The servers it would otherwise open on ports of their own.
    assert given["s3.port.iceberg"] == given["s3.port.lance"] == "0"


def test_no_usage_reports_and_sockets_stay_in_the_state_directory(tmp_path: Path) -> None:
    argv = localstack.seaweedfs_argv(config(tmp_path), Path("/bin/weed"))
    given = flags(argv)
    assert given["master.telemetry"] == "false"
    assert given["master.telemetry.url"].startswith("http://127.0.0.1:")
    for name in ("filer.localSocket", "s3.localSocket", "s3.config", "dir"):
        assert Path(given[name]).is_relative_to(tmp_path), name


def test_clients_get_the_one_identity_as_the_standard_aws_variables(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    env = localstack.s3_env(cfg)
    assert env["IMAGE_STORE_S3_ENDPOINT"] == "http://127.0.0.1:27333"
    identities = json.loads((tmp_path / "seaweedfs" / "s3.json").read_text())["identities"]
    [credentials] = identities[0]["credentials"]
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (
        credentials["accessKey"],
        credentials["secretKey"],
    )
    assert (tmp_path / "seaweedfs" / "s3.json").stat().st_mode & 0o077 == 0
    assert localstack.s3_env(cfg) == env  # made once, then kept


def test_the_binary_is_pinned_by_stack_seaweedfs(tmp_path: Path) -> None:
    gomod = (ROOT / "stack" / "seaweedfs" / "go.mod").read_text()
    gosum = (ROOT / "stack" / "seaweedfs" / "go.sum").read_text()
    [version] = re.findall(r"github\.com/seaweedfs/seaweedfs (v\S+)", gomod)
    assert f"github.com/seaweedfs/seaweedfs {version} h1:" in gosum
    assert localstack.seaweedfs_binary(config(tmp_path), build=False) is None  # nothing built
