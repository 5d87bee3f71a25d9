from __future__ import annotations

import json
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from inference_client import Model
from simulator import cli
from tests.unit.simulator.fake_api import FakeApi

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fake_api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    """`simulator simulate` talking to the in-memory API instead of a socket."""
    api = FakeApi(run_s=0.02)
    monkeypatch.setattr(cli, "InferenceClient", lambda url, key, **_: api.client())
    return api


@pytest.fixture
def images(tmp_path: Path) -> Path:
    directory = tmp_path / "images"
    directory.mkdir()
    (directory / "cat.jpg").write_bytes(b"\xff\xd8jpeg")
    return directory


def test_an_api_that_cannot_be_reached_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{free_port()}/api/v1/inference"
    assert cli.main(["simulate", "--api", url, "--jobs", "1"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"simulator: cannot reach the inference API at {url}: ")


def test_a_public_api_needs_to_be_allowed(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["simulate", "--api", "http://93.184.215.14/api/v1/inference"]) == 2
    assert "is a public address; pass --allow-remote" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8080/x", True),
        ("http://localhost/x", True),
        ("http://[::1]:8080/x", True),
        ("http://10.0.0.1/x", True),
        ("http://172.18.0.5:8080/x", True),  # a compose network
        ("http://inference-service.invalid:8080/x", True),  # unresolvable: the request says so
        ("http://93.184.215.14/x", False),
        ("http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/x", False),
    ],
)
def test_only_loopback_and_private_networks_need_no_permission(url: str, local: bool) -> None:
    assert cli.is_local_network(url) is local


def test_models_are_chosen_by_name_from_what_the_api_offers() -> None:
    available = [Model("a", "", "classification"), Model("b", "", "object_detection")]
    assert cli.choose_models(available, None) == available
    assert [m.name for m in cli.choose_models(available, "b, a")] == ["b", "a"]
    with pytest.raises(cli.CannotRun, match="unknown model c; the API offers a, b"):
        cli.choose_models(available, "a,c")
    with pytest.raises(cli.CannotRun, match="offers no models"):
        cli.choose_models([], None)


@pytest.mark.parametrize(
    "argv",
    [
        ["--jobs", "0"],
        ["--jobs", "100001"],
        ["--rate", "-1"],
        ["--rate", "1", "--concurrency", "2"],
    ],
)
def test_bad_arguments_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["simulate", *argv])
    assert caught.value.code == 2


def test_simulate_prints_a_summary_and_writes_the_json_report_and_plots(
    fake_api: FakeApi, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_path, plots = tmp_path / "report.json", tmp_path / "plots"
    code = cli.main(
        [
            "simulate",
            "--jobs",
            "6",
            "--concurrency",
            "2",
            "--images",
            str(images),
            "--json",
            str(report_path),
            "--plot",
            str(plots),
        ]
    )
    assert code == 0
    report: dict[str, Any] = json.loads(report_path.read_text())
    assert report["jobs"] == {"requested": 6, "submitted": 6, "created": 6, "terminal": 6}
    assert report["statuses"] == {"DONE": 6}
    assert report["models"] == ["cls", "det"]
    assert report["pacing"] == {"mode": "concurrency", "value": 2.0}
    assert report["latency_s"]["count"] == 6
    assert {r["job_id"] for r in report["job_records"]} == set(fake_api.jobs)
    for name in ("latency.png", "throughput.png"):
        assert (plots / name).read_bytes().startswith(PNG_MAGIC)
    out = capsys.readouterr().out
    assert "6 of 6 jobs submitted, 6 finished" in out
    assert f"report written to {report_path}" in out


def test_jobs_that_were_not_created_make_exit_code_1(
    fake_api: FakeApi, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_api.rejected_models = {"det"}
    assert cli.main(["simulate", "--jobs", "2", "--images", str(images)]) == 1
    out = capsys.readouterr().out
    assert "NOT_CREATED" in out and "HTTP 422 unknown-model" in out


def test_failed_jobs_are_an_answer_not_a_simulator_error(
    fake_api: FakeApi, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_api.failing_models = {"cls"}
    assert cli.main(["simulate", "--jobs", "2", "--images", str(images)]) == 0
    assert "job image_unreadable" in capsys.readouterr().out


def test_ctrl_c_prints_a_partial_summary_and_exits_130(
    fake_api: FakeApi, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_api.stuck_models = {"cls", "det"}
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        code = cli.main(
            [
                "simulate",
                "--jobs",
                "1000",
                "--rate",
                "20",
                "--images",
                str(images),
                "--json",
                str(tmp_path / "r.json"),
            ]
        )
    finally:
        timer.cancel()
    assert code == 130
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["interrupted"] is True
    assert 0 < report["jobs"]["submitted"] < 1000
    assert report["errors"] == {"interrupted": report["jobs"]["submitted"]}
    assert "interrupted: partial results" in capsys.readouterr().out


def test_demo_scenario_does_every_operation_and_says_so(
    fake_api: FakeApi, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["simulate", "--scenario", "demo", "--images", str(images)]) == 0
    out = capsys.readouterr().out
    for expected in (
        "GET /models",
        "POST /jobs without execute",
        "409 job-not-done: the job is NEW",
        "202 Accepted",
        "GET /jobs/",
        "Egyptian cat 0.82",
        "POST /jobs with execute=true: det",
        "CANCELLED",
        "204 No Content",
        "404 not-found",
        "422 image-unreadable: cannot identify image file",
        "received io.cvinference.job.completed.v1",
        "signature verified",
        "delivered in 1 attempt(s)",
        "steps as expected",
    ):
        assert expected in out, expected
    methods = {method for method, _ in fake_api.requests}
    assert methods == {"GET", "POST", "DELETE"}
    assert fake_api.count("POST", r"/jobs/\w+/execution") == 1
    assert fake_api.count("POST", r"/jobs/\w+/cancellation") == 1
    assert fake_api.count("DELETE", r"/jobs/\w+") == 1


def test_demo_reports_a_step_that_goes_wrong(
    fake_api: FakeApi, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_api.failing_models = {"det"}
    assert cli.main(["simulate", "--scenario", "demo", "--images", str(images)]) == 1
    out = capsys.readouterr().out
    assert "unexpected:" in out and "ended FAILED" in out


def test_how_long_requests_ride_out_an_outage_is_an_option() -> None:
    parser = cli.build_parser()
    for command in (["simulate"], ["batch", "dir", "--db", "d", "--log", "l"]):
        assert cli._retry_policy(parser.parse_args(command)).ride_out_s == 90.0
        longer = parser.parse_args([*command, "--retry-for", "300"])
        assert cli._retry_policy(longer).ride_out_s == 300.0
