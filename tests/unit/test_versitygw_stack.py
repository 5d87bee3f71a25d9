"""How the local stack runs versitygw: loopback only, on one port, over a directory of its state,
and one root account whose keys reach the S3 image store's clients as the standard AWS
variables and the server by its environment, never its command line."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT, load_localstack

localstack = load_localstack()


def config(tmp_path: Path, s3_port: int = 27333) -> object:
    return dataclasses.replace(
        localstack.Config.from_env(), state=tmp_path, cache=tmp_path, s3_port=s3_port
    )


def test_the_gateway_binds_loopback_and_serves_a_directory_of_the_state(tmp_path: Path) -> None:
    argv = localstack.versitygw_argv(config(tmp_path), Path("/bin/versitygw"))
    backend = argv.index("posix")
    flags = dict(a.lstrip("-").split("=", 1) for a in argv[1:backend] if "=" in a)
    assert flags["port"] == "127.0.0.1:27333"
    assert flags["health"] == "/health"
    # Sidecar metadata and the bucket root, both in the state directory.
    sidecar, root = argv[backend + 1 :]
    assert Path(sidecar.removeprefix("--sidecar=")).is_relative_to(tmp_path)
    assert Path(root).is_relative_to(tmp_path)
    # Nothing else opens a port: no admin API, web UI or profiler.
    assert not {"admin-port", "webui", "pprof"} & set(flags)


def test_clients_get_the_root_keys_as_the_standard_aws_variables(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    env = localstack.s3_env(cfg)
    assert env["IMAGE_STORE_S3_ENDPOINT"] == "http://127.0.0.1:27333"
    assert env["IMAGE_STORE_S3_BUCKET"] == localstack.S3_BUCKET
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == localstack.s3_credentials(
        cfg
    )
    assert (tmp_path / "versitygw" / "credentials.json").stat().st_mode & 0o077 == 0
    assert localstack.s3_env(cfg) == env  # made once, then kept
    argv = localstack.versitygw_argv(cfg, Path("/bin/versitygw"))
    assert not any(env["AWS_SECRET_ACCESS_KEY"] in arg for arg in argv)


def test_the_binary_is_pinned_by_stack_versitygw(tmp_path: Path) -> None:
    gomod = (ROOT / "stack" / "versitygw" / "go.mod").read_text()
    gosum = (ROOT / "stack" / "versitygw" / "go.sum").read_text()
    [version] = re.findall(r"github\.com/versity/versitygw (v\S+)", gomod)
    assert f"github.com/versity/versitygw {version} h1:" in gosum
    assert localstack.versitygw_binary(config(tmp_path), build=False) is None  # nothing built


def test_the_image_bucket_is_there_before_the_first_request_and_the_keys_go_by_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(tmp_path)
    monkeypatch.setattr(localstack, "versitygw_binary", lambda _: Path("/bin/versitygw"))
    argv, env = localstack._versitygw_prepare(cfg)
    assert (Path(argv[-1]) / localstack.S3_BUCKET).is_dir()  # a directory of the root: a bucket
    access_key, secret_key = localstack.s3_credentials(cfg)
    assert env == {"ROOT_ACCESS_KEY_ID": access_key, "ROOT_SECRET_ACCESS_KEY": secret_key}
