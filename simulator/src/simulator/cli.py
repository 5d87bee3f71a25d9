"""The `simulator` command: `simulate` (traffic through the public API), `watch` (event log)
and `batch` (a directory of images classified into SQLite).

Exit codes: 0 done (`batch`: it ran, failed files included); 1 `simulate` finished but some
job was not created, timed out or its result could not be read (FAILED jobs are an answer, not
a simulator error), or a demo step went unexpectedly; 2 bad usage, or the API or Kafka cannot
be reached; 130 interrupted `simulate` (after its partial summary). `watch` exits 0 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import signal
import socket
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console

from inference_client import (
    ApiFailure,
    ApiUnreachable,
    InferenceClient,
    Model,
    RetryPolicy,
    UnexpectedResponse,
)
from inference_common.assets import AssetStore
from simulator.batch import DEFAULT_MODEL, BatchOptions, BatchRun
from simulator.batch import opened as opened_batch
from simulator.demo import DemoScenario, digit_model_names
from simulator.images import NoImages, select_images
from simulator.progress import ProgressBar
from simulator.report import RunInfo, build_report, render_summary, write_json
from simulator.settings import SimulatorSettings
from simulator.traffic import JobOutcome, Pacing, TrafficRun, plan_jobs
from simulator.watch import EventLogWatcher, KafkaUnreachable, WatchOptions, parse_types

MAX_JOBS = 100_000
EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CannotRun(Exception):
    """Bad usage, or nothing to talk to: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simulator", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    _simulate_arguments(commands.add_parser("simulate", help="run inference jobs through the API"))
    _watch_arguments(commands.add_parser("watch", help="print the Kafka event log, readably"))
    _batch_arguments(
        commands.add_parser("batch", help="classify every image of a directory into SQLite")
    )
    return parser


def _simulate_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--api", help="API base URL (env API_URL; default the local service)")
    sub.add_argument("--api-key", help="sent as X-API-Key (env API_KEY)")
    sub.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow an API at a public address (loopback and private networks need no flag)",
    )
    sub.add_argument("--jobs", type=_positive_int, default=20, help="jobs to create (default 20)")
    pacing = sub.add_mutually_exclusive_group()
    pacing.add_argument("--concurrency", type=_positive_int, help="jobs in flight (default 4)")
    pacing.add_argument("--rate", type=_positive_float, help="new jobs per second (open loop)")
    sub.add_argument("--models", help="comma-separated model names (default: all, mixed)")
    sub.add_argument("--images", type=Path, help="upload these images instead of the samples")
    sub.add_argument("--duration", type=_positive_float, help="stop submitting after S seconds")
    sub.add_argument(
        "--result-timeout",
        type=_positive_float,
        default=120.0,
        help="give up on a job's result after S seconds (default 120)",
    )
    sub.add_argument("--json", type=Path, dest="json_path", help="write the report as JSON")
    sub.add_argument("--plot", type=Path, help="write latency and throughput PNGs here")
    sub.add_argument("--scenario", choices=["demo"], help="a scripted tour of every operation")
    _retry_argument(sub)
    sub.add_argument("--no-progress", action="store_true", help="no progress bar")


def _watch_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--from-beginning", action="store_true", help="replay the whole log")
    sub.add_argument("--job", action="append", default=[], help="only this job (id or prefix)")
    sub.add_argument("--type", dest="types", help="only these types, e.g. created,completed")
    sub.add_argument("--max-events", type=_at_least_one, help="exit after N lines")
    sub.add_argument("--idle-timeout", type=_positive_float, help="exit after S quiet seconds")
    sub.add_argument("--full-ids", action="store_true", help="print whole job ids")
    sub.add_argument(
        "--reorder-window",
        type=float,
        default=0.5,
        help="hold lines S seconds to print both topics in time order (default 0.5; 0: off)",
    )


def _batch_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("directory", type=Path, help="the images (JPEG, PNG, BMP, GIF, WebP, TIFF)")
    sub.add_argument("--db", type=Path, required=True, help="SQLite file (table `results`)")
    sub.add_argument("--log", type=Path, required=True, help="log file, one line per step")
    sub.add_argument("--model", default=DEFAULT_MODEL, help=f"model (default {DEFAULT_MODEL})")
    sub.add_argument("--concurrency", type=_positive_int, default=4, help="jobs in flight (4)")
    sub.add_argument("--recursive", action="store_true", help="also the subdirectories")
    sub.add_argument(
        "--batch-api",
        action="store_true",
        help="send the files through POST /batches instead of one job each",
    )
    sub.add_argument(
        "--batch-files",
        type=_positive_int,
        default=100,
        metavar="N",
        help="with --batch-api: files per batch request (default 100)",
    )
    sub.add_argument("--api", help="API base URL (env API_URL; default the local service)")
    sub.add_argument("--api-key", help="sent as X-API-Key (env API_KEY)")
    sub.add_argument(
        "--result-timeout",
        type=_positive_float,
        default=120.0,
        help="give up on a job's result after S seconds (default 120)",
    )
    _retry_argument(sub)
    sub.add_argument("--no-progress", action="store_true", help="no progress bar")


def _retry_argument(sub: argparse.ArgumentParser) -> None:
    default = RetryPolicy().ride_out_s
    sub.add_argument(
        "--retry-for",
        type=_positive_float,
        default=default,
        metavar="S",
        help=f"keep retrying a request through an API outage for up to S seconds ({default:g})",
    )


def _retry_policy(args: argparse.Namespace) -> RetryPolicy:
    return RetryPolicy(ride_out_s=args.retry_for)


def _positive_int(text: str) -> int:
    value = int(text)
    if not 0 < value <= MAX_JOBS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_JOBS}")
    return value


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    errors = Console(stderr=True, highlight=False)
    try:
        if args.command == "watch":
            return watch_command(args)
        commands = {"batch": batch_command}
        return asyncio.run(commands.get(args.command, simulate_command)(args))
    except CannotRun as exc:
        errors.print(f"simulator: {exc}", markup=False, soft_wrap=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK if args.command == "watch" else EXIT_INTERRUPTED
    except BrokenPipeError:
        # `simulator watch | head`: the reader left; that is not an error.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def watch_command(args: argparse.Namespace) -> int:
    try:
        types = parse_types(args.types) if args.types else None
    except ValueError as exc:
        raise CannotRun(str(exc)) from exc
    options = WatchOptions(
        from_beginning=args.from_beginning,
        job_prefixes=tuple(
            part.strip() for job in args.job for part in job.split(",") if part.strip()
        ),
        types=types,
        max_events=args.max_events,
        idle_timeout_s=args.idle_timeout,
        full_ids=args.full_ids,
        reorder_window_s=max(args.reorder_window, 0.0),
    )
    try:
        return EventLogWatcher(SimulatorSettings(), options, Console(highlight=False)).run()
    except KafkaUnreachable as exc:
        raise CannotRun(str(exc)) from exc


async def simulate_command(args: argparse.Namespace) -> int:
    settings = SimulatorSettings()
    api_url = args.api or settings.api_url
    if not args.allow_remote and not is_local_network(api_url):
        raise CannotRun(f"{api_url} is a public address; pass --allow-remote to load it")
    api_key = args.api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
    console = Console(highlight=False, soft_wrap=True)
    async with InferenceClient(api_url, api_key, policy=_retry_policy(args)) as client:
        try:
            available = await client.list_models()
        except (ApiFailure, UnexpectedResponse) as exc:
            raise CannotRun(str(exc)) from exc
        models = choose_models(available, args.models)
        store = _asset_store(settings)
        try:
            images = select_images(models, store, args.images)
        except NoImages as exc:
            raise CannotRun(str(exc)) from exc
        if args.scenario == "demo":
            digits = digit_model_names(models, store.manifest if store else None)
            return await DemoScenario(client, models, images, console, digits).run()
        pacing = Pacing(rate=args.rate) if args.rate else Pacing(concurrency=args.concurrency or 4)
        run = TrafficRun(
            client,
            plan_jobs(args.jobs, models, images.for_model),
            pacing,
            duration_s=args.duration,
            result_timeout_s=args.result_timeout,
        )
        started_at = datetime.now(UTC)
        show_progress = not args.no_progress and sys.stderr.isatty()
        with ProgressBar(args.jobs, Console(stderr=True), show_progress) as progress:
            run.observer = progress
            client.on_retry = progress.retry_notice
            outcomes = await _run_until_interrupted(run)
        run_info = RunInfo(
            api_url=api_url,
            models=[m.name for m in models],
            pacing_mode=pacing.mode,
            pacing_value=pacing.value,
            jobs_requested=args.jobs,
            duration_limit_s=args.duration,
            started_at=started_at,
            finished_at=datetime.now(UTC),
            elapsed_s=run.elapsed_s,
            interrupted=run.interrupted,
            event_stream_connected=run.stream_opened,
            event_stream_errors=run.stream_errors,
            request_retries=client.retries,
            request_errors=run.request_errors,
        )
    return _report(outcomes, run_info, args, console)


async def batch_command(args: argparse.Namespace) -> int:
    """0 once every file has a row (failures included); 2 when the API cannot be reached."""
    settings = SimulatorSettings()
    api_url = args.api or settings.api_url
    api_key = args.api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
    if not args.directory.is_dir():
        raise CannotRun(f"{args.directory} is not a directory")
    console = Console(highlight=False, soft_wrap=True)
    options = BatchOptions(
        args.directory,
        model=args.model,
        concurrency=args.concurrency,
        recursive=args.recursive,
        result_timeout_s=args.result_timeout,
        batch_api=args.batch_api,
        batch_files=args.batch_files,
    )
    show_progress = not args.no_progress and sys.stderr.isatty()
    async with InferenceClient(api_url, api_key, policy=_retry_policy(args)) as client:
        with (
            opened_batch(args.db, args.log) as (store, log),
            ProgressBar(0, Console(stderr=True), show_progress, unit="files") as progress,
        ):
            client.on_retry = progress.retry_notice
            try:
                models = [model.name for model in await client.list_models()]
                if args.model not in models:
                    raise CannotRun(
                        f"unknown model {args.model}; the API offers {', '.join(models)}"
                    )
                summary = await BatchRun(client, store, log, options, progress).run()
            except (ApiUnreachable, UnexpectedResponse, ApiFailure) as exc:
                log("error", detail=str(exc))
                raise CannotRun(str(exc)) from exc
    console.print(summary.line(), markup=False)
    return EXIT_OK


async def _run_until_interrupted(run: TrafficRun) -> list[JobOutcome]:
    """Ctrl-C once: stop and report what happened so far. Twice: the usual KeyboardInterrupt."""
    loop = asyncio.get_running_loop()

    def on_interrupt() -> None:
        run.interrupt()
        loop.remove_signal_handler(signal.SIGINT)

    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    try:
        return await run.run()
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def _report(
    outcomes: list[JobOutcome], run_info: RunInfo, args: argparse.Namespace, console: Console
) -> int:
    report = build_report(outcomes, run_info)
    render_summary(report, console)
    if args.json_path:
        write_json(report, args.json_path)
        console.print(f"report written to {args.json_path}", markup=False)
    if args.plot:
        from simulator.plots import write_plots  # matplotlib is slow to import: only when asked

        for path in write_plots(report, args.plot):
            console.print(f"plot written to {path}", markup=False)
    if run_info.interrupted:
        return EXIT_INTERRUPTED
    incomplete = [o for o in outcomes if o.error and not o.error.startswith("job ")]
    return EXIT_INCOMPLETE if incomplete else EXIT_OK


def choose_models(available: Sequence[Model], wanted: str | None) -> list[Model]:
    if not available:
        raise CannotRun("the API offers no models")
    if not wanted:
        return list(available)
    by_name = {m.name: m for m in available}
    names = [name.strip() for name in wanted.split(",") if name.strip()]
    unknown = [name for name in names if name not in by_name]
    if unknown or not names:
        named = ", ".join(unknown) or repr(wanted)
        raise CannotRun(f"unknown model {named}; the API offers {', '.join(by_name)}")
    return [by_name[name] for name in names]


def is_local_network(url: str) -> bool:
    """Loopback or a private network (a compose network, a LAN): never a public host.

    A load generator should not hit someone else's server by accident. A name that does not
    resolve passes: the first request then fails with the usual "cannot reach" message.
    """
    host = urlsplit(url).hostname or ""
    try:
        addresses = {ipaddress.ip_address(host)}
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None)
        except (socket.gaierror, UnicodeError):
            return True
        addresses = {ipaddress.ip_address(info[4][0]) for info in infos}
    return all(address.is_private for address in addresses)


def _asset_store(settings: SimulatorSettings) -> AssetStore | None:
    """The manifest's samples; None when there is no manifest here (then --images is needed)."""
    try:
        return AssetStore.from_settings(settings)
    except OSError:
        return None
