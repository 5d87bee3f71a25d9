"""The fault-injection run: simulated traffic through the REST API while the platform is broken
on purpose, then an audit of the database, the API and both topics read from the beginning.

    python -m tests.faults.runner --jobs 1000            # make faults JOBS=1000

Faults come at fixed shares of the jobs submitted (not at fixed times, so a slow machine gets
the same run): SIGKILL of an executor (restarted at once) several times, and one each of a
SIGKILL of the Kafka broker, of the job service and of FerretDB, each restarted after a short
outage. Every process belongs to a private stack on free loopback ports, never the shared one.
Exit code 0 when nothing was lost or applied twice, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference_client import ApiFailure, InferenceClient
from inference_common.assets import AssetStore
from inference_common.mongo import sync_client
from inference_common.settings import CommonSettings
from simulator.images import select_images
from simulator.traffic import JobOutcome, Pacing, TrafficRun, plan_jobs
from tests.conftest import ROOT
from tests.faults.audit import TERMINAL, AuditReport, audit, read_topic
from tests.faults.platform import FaultPlatform

EXECUTOR, KAFKA, SERVICE, DATABASE = "executor SIGKILL", "kafka", "job service", "database"
MAX_ATTEMPTS = 3  # the job service's default MAX_ATTEMPTS, which the platform keeps


@dataclass(frozen=True)
class FaultPlan:
    jobs: int = 1000
    executors: int = 3
    executor_kills: int = 4
    concurrency: int = 8
    outage_s: float = 3.0
    # Faults spread over this share of the submissions; the rest shows the recovery.
    first_at: float = 0.1
    last_at: float = 0.75
    recovery_timeout_s: float = 600.0

    def schedule(self) -> list[tuple[int, str]]:
        """(jobs submitted, fault): executor kills interleaved with the other three."""
        others = [KAFKA, SERVICE, DATABASE]
        kinds: list[str] = []
        for n in range(max(self.executor_kills, len(others))):
            if n < self.executor_kills:
                kinds.append(EXECUTOR)
            if n < len(others):
                kinds.append(others[n])
        span = self.last_at - self.first_at
        steps = max(len(kinds) - 1, 1)
        return [
            (int(self.jobs * (self.first_at + span * i / steps)), kind)
            for i, kind in enumerate(kinds)
        ]


@dataclass
class FaultLog:
    """What was injected, when (seconds into the traffic), and how long each took to recover."""

    injected: list[tuple[str, float, float]] = field(default_factory=list)
    last_ready_at: float | None = None

    def counts(self) -> Counter[str]:
        return Counter(kind for kind, _, _ in self.injected)


@dataclass
class Figures:
    jobs_planned: int
    outcomes: list[JobOutcome]
    faults: FaultLog
    report: AuditReport
    recovery_s: float | None
    drain_s: float
    traffic_s: float
    total_s: float
    client_retries: Counter[str]

    @property
    def not_created(self) -> int:
        return sum(1 for outcome in self.outcomes if outcome.job_id is None)

    @property
    def ok(self) -> bool:
        return self.report.ok and self.not_created == 0

    def lines(self) -> list[str]:
        report = self.report
        faults = ", ".join(f"{kind} x{n}" for kind, n in self.faults.counts().items())
        recovered = ", ".join(f"{k} {took:.1f} s" for k, _, took in self.faults.injected)
        statuses = ", ".join(f"{s} {n}" for s, n in sorted(report.statuses.items()))
        recovery = "n/a" if self.recovery_s is None else f"{self.recovery_s:.1f} s"
        retries = ", ".join(f"{k} {n}" for k, n in self.client_retries.most_common()) or "none"
        return [
            "fault-injection run",
            f"  jobs                  {self.jobs_planned} planned, "
            f"{report.jobs_in_database} created, {self.not_created} refused to the client",
            f"  statuses              {statuses}",
            f"  faults                {len(self.faults.injected)}: {faults}",
            f"  back up after         {recovered}",
            f"  lost                  {len(report.lost)}",
            f"  duplicated in effect  {len(report.duplicated_in_effect)}",
            "  duplicate deliveries  "
            + ", ".join(f"{topic} {n}" for topic, n in report.redeliveries.items())
            + " (same event id read again; deduplicated)",
            f"  jobs run twice        {report.jobs_run_more_than_once} "
            "(executed again after a kill; one outcome applied)",
            f"  jobs retried          {report.jobs_retried} (a new attempt after a deadline)",
            f"  events of no job      {report.events_of_unknown_jobs}",
            f"  client retries        {retries}",
            f"  recovery time         {recovery} after the last fault, until every job "
            "submitted before it was final",
            f"  drain                 {self.drain_s:.1f} s after the traffic, until the "
            "database had every job final and every outbox empty",
            f"  time                  traffic {self.traffic_s:.0f} s, total {self.total_s:.0f} s",
            f"  verdict               {'PASS' if self.ok else 'FAIL'}",
        ]


class FaultRun:
    def __init__(self, plan: FaultPlan, workdir: Path, say: Callable[[str], None]) -> None:
        self.plan = plan
        self.workdir = workdir
        self.say = say
        self.platform = FaultPlatform(workdir, executors=plan.executors)
        self.settings = CommonSettings(
            kafka_bootstrap_servers=self.platform.cfg.kafka_bootstrap,
            mongodb_uri=self.platform.cfg.mongodb_uri,
            assets_manifest=ROOT / "assets" / "manifest.toml",
            assets_cache_dir=ROOT / ".cache" / "assets",
        )
        self.faults = FaultLog()

    def run(self) -> Figures:
        started = time.monotonic()
        self.say(f"starting a private stack in {self.workdir}")
        self.platform.start()
        try:
            return self._run(started)
        finally:
            self.platform.close()

    def _run(self, started: float) -> Figures:
        outcomes, traffic, retries = asyncio.run(self._traffic())
        self.say(f"traffic done in {traffic.elapsed_s:.0f} s; waiting for the last jobs")
        drain_started = time.monotonic()
        self._await_quiet()
        drain = time.monotonic() - drain_started
        self.say("auditing the database, the API and both topics")
        jobs = self._stored_jobs()
        report = audit(
            jobs,
            {o.job_id for o in outcomes if o.job_id is not None},
            read_topic(self.settings, self.settings.topic_jobs),
            read_topic(self.settings, self.settings.topic_results),
            asyncio.run(self._api_statuses([str(job["_id"]) for job in jobs])),
            max_attempts=MAX_ATTEMPTS,
        )
        return Figures(
            jobs_planned=self.plan.jobs,
            outcomes=outcomes,
            faults=self.faults,
            report=report,
            recovery_s=self._recovery(outcomes),
            drain_s=drain,
            traffic_s=traffic.elapsed_s,
            total_s=time.monotonic() - started,
            client_retries=retries,
        )

    # --- traffic and faults ---

    async def _traffic(self) -> tuple[list[JobOutcome], TrafficRun, Counter[str]]:
        # The client's own policy rides out a restart of the job service (up to 90 s).
        async with InferenceClient(self.platform.api_url) as client:
            models = await client.list_models()
            images = select_images(models, AssetStore.from_settings(self.settings))
            run = TrafficRun(
                client,
                plan_jobs(self.plan.jobs, models, images.for_model),
                Pacing(concurrency=self.plan.concurrency),
                result_timeout_s=self.plan.recovery_timeout_s,
            )
            self.say(
                f"{self.plan.jobs} jobs over {len(models)} models, "
                f"{self.plan.concurrency} in flight; faults at {self.plan.schedule()}"
            )
            injector = asyncio.create_task(self._inject(run))
            outcomes = await run.run()
            await injector  # all faults come before the last submission
            return outcomes, run, client.retries

    async def _inject(self, run: TrafficRun) -> None:
        kills = 0
        for threshold, kind in self.plan.schedule():
            while len(run.outcomes) < threshold:
                await asyncio.sleep(0.1)
            at = run.now()
            self.say(f"{at:6.1f} s  {len(run.outcomes)} jobs submitted: {kind}")
            if kind == EXECUTOR:
                await asyncio.to_thread(self.platform.kill_executor, kills)
                kills += 1
            elif kind == KAFKA:
                await asyncio.to_thread(self.platform.restart_kafka, self.plan.outage_s)
            elif kind == SERVICE:
                await asyncio.to_thread(self.platform.restart_service, self.plan.outage_s)
            else:
                await asyncio.to_thread(self.platform.restart_database, self.plan.outage_s)
            ready = run.now()
            self.faults.injected.append((kind, at, ready - at))
            self.faults.last_ready_at = ready
            self.say(f"{ready:6.1f} s  back up after {ready - at:.1f} s")

    def _recovery(self, outcomes: Sequence[JobOutcome]) -> float | None:
        """From the last restart until every job submitted before it was seen final."""
        last = self.faults.last_ready_at
        if last is None:
            return None
        before = [o for o in outcomes if o.submitted_at is not None and o.submitted_at <= last]
        finished = [o.finished_at for o in before if o.finished_at is not None]
        if len(finished) < len(before):
            return None  # some never finished: the audit says which
        return max([last, *finished]) - last

    # --- after the traffic ---

    def _await_quiet(self) -> None:
        """Until every stored job is final and no outbox holds an event (bounded)."""
        deadline = time.monotonic() + self.plan.recovery_timeout_s
        client = sync_client(self.settings)
        try:
            jobs = client[self.settings.mongodb_database]["jobs"]
            while time.monotonic() < deadline:
                busy = jobs.count_documents({"status": {"$nin": sorted(TERMINAL)}})
                pending = jobs.count_documents({"outbox_pending": True})
                if busy == 0 and pending == 0:
                    return
                time.sleep(2.0)
            self.say(f"still {busy} job(s) not final, {pending} outbox(es) pending: giving up")
        finally:
            client.close()

    def _stored_jobs(self) -> list[dict[str, Any]]:
        client = sync_client(self.settings)
        try:
            return list(client[self.settings.mongodb_database]["jobs"].find({}))
        finally:
            client.close()

    async def _api_statuses(self, job_ids: list[str]) -> dict[str, str]:
        """Each job's status as GET /jobs/{id} answers it; DONE ones must also give a result."""
        statuses: dict[str, str] = {}
        async with InferenceClient(self.platform.api_url) as client:
            gate = asyncio.Semaphore(8)

            async def one(job_id: str) -> None:
                async with gate:
                    try:
                        job = await client.get_job(job_id)
                        if job.status == "DONE":
                            await client.get_result(job_id)
                    except ApiFailure as exc:
                        statuses[job_id] = f"unreadable ({exc})"
                        return
                    statuses[job_id] = job.status

            await asyncio.gather(*(one(job_id) for job_id in job_ids))
        return statuses


def run_faults(plan: FaultPlan, workdir: Path | None = None, keep: bool = False) -> Figures:
    """Runs the whole thing in a temporary directory (kept with `keep` or on failure)."""
    directory = workdir or Path(tempfile.mkdtemp(prefix="faults-"))

    def say(message: str) -> None:
        print(f"faults: {message}", file=sys.stderr, flush=True)

    try:
        figures = FaultRun(plan, directory, say).run()
    except BaseException:
        say(f"the run broke off; logs and data kept in {directory}")
        raise
    if figures.ok and not keep and workdir is None:
        shutil.rmtree(directory, ignore_errors=True)
    else:
        say(f"logs and data kept in {directory}")
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.runner", description=__doc__)
    parser.add_argument("--jobs", type=int, default=FaultPlan.jobs)
    parser.add_argument("--executors", type=int, default=FaultPlan.executors)
    parser.add_argument("--executor-kills", type=int, default=FaultPlan.executor_kills)
    parser.add_argument("--concurrency", type=int, default=FaultPlan.concurrency)
    parser.add_argument("--outage", type=float, default=FaultPlan.outage_s, help="seconds down")
    parser.add_argument("--keep", action="store_true", help="keep the logs and data")
    args = parser.parse_args(argv)
    plan = FaultPlan(
        jobs=args.jobs,
        executors=args.executors,
        executor_kills=args.executor_kills,
        concurrency=args.concurrency,
        outage_s=args.outage,
    )
    figures = run_faults(plan, keep=args.keep)
    print("\n".join(figures.lines()))
    for line in figures.report.problems():
        print(f"  ! {line}")
    return 0 if figures.ok else 1


if __name__ == "__main__":
    sys.exit(main())
