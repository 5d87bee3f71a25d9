"""The fault-injection run: simulated traffic through the REST API while the platform is broken
on purpose, then an audit of the database, the API and both topics read from the beginning.

    python -m tests.faults.runner --jobs 1000 --rate 10     # make faults: the open loop
    python -m tests.faults.runner --concurrency 8           # the closed loop

Open loop: jobs start at a fixed rate whether or not the platform keeps up, as traffic would;
closed loop: a fixed number of jobs in flight. Faults come at fixed shares of the jobs submitted
(not at fixed times, so a slow machine gets the same run): a SIGKILL of an executor (restarted
at once), of FerretDB, of the Kafka broker and of the job service (each restarted after a short
outage), in that order, with more executor kills interleaved when asked. For each fault the
summary gives the time from the restart to the first job submitted after it being done, and to
every job submitted before it being done (the backlog drained). Every process belongs to a
private stack on free loopback ports, never the shared one. Exit code 0 when nothing was lost,
applied twice or left uncreated, 1 otherwise.
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
from datetime import UTC, datetime
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
# What tests/faults/platform.py kills and restarts for each fault.
PROCESS = {EXECUTOR: "executor", KAFKA: "kafka", SERVICE: "service", DATABASE: "ferretdb"}
MAX_ATTEMPTS = 3  # the job service's default MAX_ATTEMPTS, which the platform keeps
# Issue 13's goal after a restart: new jobs done within 10 s, the backlog within 15 s.
GOAL_FIRST_NEW_S, GOAL_DRAINED_S = 10.0, 15.0


@dataclass(frozen=True)
class FaultPlan:
    jobs: int = 1000
    executors: int = 3
    executor_kills: int = 4
    # The faults besides the executor kills, in this order (a subset to study one of them).
    others: tuple[str, ...] = (DATABASE, KAFKA, SERVICE)
    # Exactly one of: a rate (open loop, jobs per second) or a concurrency (closed loop).
    rate: float | None = None
    concurrency: int | None = 8
    outage_s: float = 3.0
    # Faults spread over this share of the submissions; the rest shows the recovery.
    first_at: float = 0.1
    last_at: float = 0.75
    recovery_timeout_s: float = 600.0

    def schedule(self) -> list[tuple[int, str]]:
        """(jobs submitted, fault): executor kills interleaved with the other three."""
        others = self.others
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

    @property
    def pacing(self) -> Pacing:
        return Pacing(concurrency=self.concurrency, rate=self.rate)

    def describe_pacing(self) -> str:
        if self.rate is not None:
            return f"open loop, {self.rate:g} jobs/s"
        return f"closed loop, {self.concurrency} in flight"


@dataclass(frozen=True)
class Fault:
    """One fault; times in seconds since the traffic started."""

    kind: str
    killed_at: float
    restarted_at: float  # the restart began (the process was started again)
    ready_at: float  # the restarted process answered its readiness probe


@dataclass(frozen=True)
class Recovery:
    """After one restart, from the client's view: seconds from the restart until..."""

    first_new_done_s: float | None  # ...the first job submitted after it was done
    drained_s: float | None  # ...every job submitted before it was done (None: some never were)

    @property
    def within_goal(self) -> bool:
        return (
            self.first_new_done_s is not None
            and self.drained_s is not None
            and self.first_new_done_s <= GOAL_FIRST_NEW_S
            and self.drained_s <= GOAL_DRAINED_S
        )


def recovery_after(
    restarted_at: float, outcomes: Sequence[JobOutcome], until: float = float("inf")
) -> Recovery:
    """From one restart until the next fault (`until`), which would add its own delays: a
    figure not reached by then is None."""
    new: list[float] = []
    before: list[float | None] = []
    for outcome in outcomes:
        if outcome.submitted_at is None or outcome.submitted_at >= until:
            continue
        if outcome.submitted_at < restarted_at:
            before.append(outcome.finished_at)
        elif outcome.finished_at is not None:
            new.append(outcome.finished_at)
    first_new = min(new) if new else None
    drained = None
    if None not in before:
        drained = max([restarted_at, *(f for f in before if f is not None)])
    return Recovery(
        None if first_new is None or first_new > until else first_new - restarted_at,
        None if drained is None or drained > until else drained - restarted_at,
    )


@dataclass(frozen=True)
class Stages:
    """Where one job was when, from the database, in seconds since the traffic started: the
    create stored, the executor's result, the result folded (the job final)."""

    created: float | None
    executed: float | None
    folded: float | None

    @classmethod
    def of(cls, job: dict[str, Any], wall_zero: float) -> Stages:
        def since(moment: datetime | None) -> float | None:
            if moment is None:
                return None
            aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            return aware.timestamp() - wall_zero

        result = job.get("result") or {}
        final = job.get("status") in TERMINAL
        return cls(
            since(job.get("created_at")),
            since(result.get("completed_at")),
            since(job.get("updated_at")) if final else None,
        )


def stages_after(
    restarted_at: float,
    outcomes: Sequence[JobOutcome],
    stages: dict[str, Stages],
    until: float = float("inf"),
) -> str:
    """Where the seconds of one recovery went: each stage of the first new job done, and the
    last of each stage among the jobs submitted before the restart, from the restart (n/a:
    not before the next fault)."""
    before = [
        o
        for o in outcomes
        if o.submitted_at is not None and o.submitted_at < restarted_at and o.job_id
    ]
    new = [
        o
        for o in outcomes
        if o.submitted_at is not None
        and restarted_at <= o.submitted_at < until
        and o.finished_at is not None
    ]

    def shown(moment: float | None) -> str:
        # Past the next fault, which adds delays of its own: not this fault's figure.
        if moment is None or moment > until:
            return "n/a"
        return f"{max(moment - restarted_at, 0.0):.1f}"

    def path(stage: Stages | None, seen: float | None) -> str:
        stage = stage or Stages(None, None, None)
        return (
            f"created {shown(stage.created)}, executed {shown(stage.executed)}, "
            f"folded {shown(stage.folded)}, seen {shown(seen)}"
        )

    first = min(new, key=lambda o: o.finished_at or 0.0, default=None)
    first_text = (
        "none" if first is None else path(stages.get(first.job_id or ""), first.finished_at)
    )
    last = [stages.get(o.job_id or "") or Stages(None, None, None) for o in before]

    def latest(values: list[float | None]) -> float | None:
        return None if not values or None in values else max(v for v in values if v is not None)

    backlog = Stages(
        latest([s.created for s in last]),
        latest([s.executed for s in last]),
        latest([s.folded for s in last]),
    )
    seen = latest([o.finished_at for o in before])
    return f"first new job: {first_text}; backlog, last: {path(backlog, seen)}"


@dataclass
class FaultLog:
    """What was injected, and when."""

    injected: list[Fault] = field(default_factory=list)

    @property
    def last_ready_at(self) -> float | None:
        return self.injected[-1].ready_at if self.injected else None

    def counts(self) -> Counter[str]:
        return Counter(fault.kind for fault in self.injected)


@dataclass
class Figures:
    jobs_planned: int
    outcomes: list[JobOutcome]
    faults: FaultLog
    report: AuditReport
    drain_s: float
    traffic_s: float
    total_s: float
    client_retries: Counter[str]
    pacing: str
    stages: dict[str, Stages] = field(default_factory=dict)

    @property
    def not_created(self) -> int:
        return sum(1 for outcome in self.outcomes if outcome.job_id is None)

    @property
    def ok(self) -> bool:
        return self.report.ok and self.not_created == 0

    def recoveries(self) -> list[tuple[Fault, Recovery]]:
        faults = self.faults.injected
        ends = [f.killed_at for f in faults[1:]] + [float("inf")]
        return [
            (fault, recovery_after(fault.restarted_at, self.outcomes, end))
            for fault, end in zip(faults, ends, strict=True)
        ]

    def recovery_lines(self) -> list[str]:
        """One line per fault: seconds from its restart (n/a: not before the next fault)."""

        def seconds(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.1f}"

        lines = [
            "  recovery per fault    (s from the restart; goal: first new job done "
            f"<= {GOAL_FIRST_NEW_S:g}, backlog drained <= {GOAL_DRAINED_S:g})"
        ]
        ends = [f.killed_at for f in self.faults.injected[1:]] + [float("inf")]
        for (fault, recovery), end in zip(self.recoveries(), ends, strict=True):
            lines.append(
                f"    {fault.kind:<17} killed at {fault.killed_at:5.1f}, down "
                f"{fault.restarted_at - fault.killed_at:4.1f}, ready after "
                f"{fault.ready_at - fault.restarted_at:4.1f}, first new job done "
                f"{seconds(recovery.first_new_done_s):>5}, backlog drained "
                f"{seconds(recovery.drained_s):>5}"
                f"{'' if recovery.within_goal else '  (over the goal)'}"
            )
            lines.append(
                "      " + stages_after(fault.restarted_at, self.outcomes, self.stages, end)
            )
        return lines

    def lines(self) -> list[str]:
        report = self.report
        faults = ", ".join(f"{kind} x{n}" for kind, n in self.faults.counts().items())
        statuses = ", ".join(f"{s} {n}" for s, n in sorted(report.statuses.items()))
        retries = ", ".join(f"{k} {n}" for k, n in self.client_retries.most_common()) or "none"
        return [
            f"fault-injection run ({self.pacing})",
            f"  jobs                  {self.jobs_planned} planned, "
            f"{report.jobs_in_database} created, {self.not_created} not created",
            f"  statuses              {statuses}",
            f"  faults                {len(self.faults.injected)}: {faults}",
            *self.recovery_lines(),
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
        # time.time() when the traffic's clock read 0, to place database times on it
        self.wall_zero = time.time()

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
            drain_s=drain,
            traffic_s=traffic.elapsed_s,
            total_s=time.monotonic() - started,
            client_retries=retries,
            pacing=self.plan.describe_pacing(),
            stages={str(job["_id"]): Stages.of(job, self.wall_zero) for job in jobs},
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
                self.plan.pacing,
                result_timeout_s=self.plan.recovery_timeout_s,
            )
            self.say(
                f"{self.plan.jobs} jobs over {len(models)} models, "
                f"{self.plan.describe_pacing()}; faults at {self.plan.schedule()}"
            )
            injector = asyncio.create_task(self._inject(run))
            outcomes = await run.run()
            await injector  # all faults come before the last submission
            return outcomes, run, client.retries

    async def _inject(self, run: TrafficRun) -> None:
        self.wall_zero = time.time() - run.now()
        kills = 0
        for threshold, kind in self.plan.schedule():
            while len(run.outcomes) < threshold:
                await asyncio.sleep(0.1)
            self.say(f"{run.now():6.1f} s  {len(run.outcomes)} jobs submitted: {kind}")
            # An executor comes back at once, as its supervisor would restart it.
            outage = 0.0 if kind == EXECUTOR else self.plan.outage_s
            fault = await asyncio.to_thread(self._break, run, kind, kills, outage)
            if kind == EXECUTOR:
                kills += 1
            self.faults.injected.append(fault)
            took = fault.ready_at - fault.restarted_at
            self.say(f"{fault.ready_at:6.1f} s  ready {took:.1f} s after its restart")

    def _break(self, run: TrafficRun, kind: str, kills: int, outage: float) -> Fault:
        """Kill, wait out the outage, restart: in a thread, so a busy event loop does not
        stretch the outage."""
        process = PROCESS[kind]
        killed_at = run.now()
        self.platform.kill(process, kills)
        time.sleep(outage)
        restarted_at = run.now()
        self.platform.restart(process, kills)
        return Fault(kind, killed_at, restarted_at, run.now())

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


def fault_kinds(value: str) -> tuple[str, ...]:
    """`kafka,service` -> (KAFKA, SERVICE); an empty string: executor kills only."""
    names = {"database": DATABASE, "kafka": KAFKA, "service": SERVICE}
    kinds = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in kinds if name not in names]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown fault {unknown[0]!r}: one of {', '.join(names)}")
    return tuple(names[name] for name in kinds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.runner", description=__doc__)
    parser.add_argument("--jobs", type=int, default=FaultPlan.jobs)
    parser.add_argument("--executors", type=int, default=FaultPlan.executors)
    parser.add_argument("--executor-kills", type=int, default=1)
    pacing = parser.add_mutually_exclusive_group()
    pacing.add_argument("--rate", type=float, default=10.0, help="open loop: jobs per second")
    pacing.add_argument("--concurrency", type=int, help="closed loop: jobs in flight")
    parser.add_argument(
        "--faults",
        type=fault_kinds,
        default=FaultPlan.others,
        help="besides the executor kills, in this order (default: database,kafka,service)",
    )
    parser.add_argument("--outage", type=float, default=FaultPlan.outage_s, help="seconds down")
    parser.add_argument("--keep", action="store_true", help="keep the logs and data")
    args = parser.parse_args(argv)
    plan = FaultPlan(
        jobs=args.jobs,
        executors=args.executors,
        executor_kills=args.executor_kills,
        others=args.faults,
        rate=None if args.concurrency else args.rate,
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
