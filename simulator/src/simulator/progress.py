"""The live progress bar of a run (rich): jobs (`simulate`) or files (`batch`) done out of
those planned, how they ended, and what the API client is going through (a restart of the
job service shows as "job service unreachable, retrying (12 s)").

Disabled (no terminal, or `--no-progress`), it draws nothing but still prints the client's
retry notices as plain lines, a few seconds apart, so a log shows an outage too.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import Final

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from inference_client import RetryNotice
from simulator.traffic import JobOutcome

NOTICE_EVERY_S: Final = 5.0


class ProgressBar:
    """Finished out of planned, with how many are in flight and how they ended."""

    def __init__(
        self,
        total: int,
        console: Console,
        enabled: bool = True,
        unit: str = "jobs",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn(unit),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not enabled,
        )
        self._task = self._progress.add_task(unit, total=total, counts="")
        self._console = console
        self._enabled = enabled
        self._clock = clock
        self._last_line_at: float | None = None
        self.in_flight = 0
        self.ended: Counter[str] = Counter()
        self.trouble = ""  # the client's latest retry notice, while the trouble lasts

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def submitted(self, outcome: JobOutcome) -> None:
        self.started()

    def finished(self, outcome: JobOutcome) -> None:
        self.done(outcome.status if outcome.terminal else outcome.error or outcome.status)

    def planned(self, total: int) -> None:
        """The total, when it is known only once the run has started (a directory's files)."""
        self._progress.update(self._task, total=total)

    def started(self) -> None:
        self.in_flight += 1
        self._refresh()

    def done(self, how: str) -> None:
        """One more finished, counted under `how` (a status, or what went wrong)."""
        self.in_flight -= 1
        self.ended[how] += 1
        self._progress.advance(self._task)
        self._refresh()

    def retry_notice(self, notice: RetryNotice) -> None:
        """The API client's `on_retry`."""
        self.trouble = "" if notice.recovered else notice.describe()
        if not self._enabled:
            self._print_notice(notice)
        self._refresh()

    def counts(self) -> str:
        parts = [self.trouble] if self.trouble else []
        parts.append(f"in flight {self.in_flight}")
        parts += [f"{name} {count}" for name, count in sorted(self.ended.items())]
        return " · ".join(parts)

    def _print_notice(self, notice: RetryNotice) -> None:
        now = self._clock()
        last = self._last_line_at
        if notice.recovered or last is None or now - last >= NOTICE_EVERY_S:
            self._console.print(notice.describe(), markup=False, highlight=False)
            self._last_line_at = None if notice.recovered else now

    def _refresh(self) -> None:
        self._progress.update(self._task, counts=self.counts())
