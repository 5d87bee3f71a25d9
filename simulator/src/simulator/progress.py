"""The live progress bar of a run (rich), fed by the traffic loop's observer calls."""

from __future__ import annotations

from collections import Counter
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from simulator.traffic import JobOutcome


class ProgressBar:
    """Finished jobs out of those planned, with how many are in flight and how they ended."""

    def __init__(self, total: int, console: Console, enabled: bool = True) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("jobs"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not enabled,
        )
        self._task = self._progress.add_task("jobs", total=total, counts="")
        self.in_flight = 0
        self.ended: Counter[str] = Counter()

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
        self.in_flight += 1
        self._refresh()

    def finished(self, outcome: JobOutcome) -> None:
        self.in_flight -= 1
        self.ended[outcome.status if outcome.terminal else outcome.error or outcome.status] += 1
        self._progress.advance(self._task)
        self._refresh()

    def counts(self) -> str:
        parts = [f"in flight {self.in_flight}"]
        parts += [f"{name} {count}" for name, count in sorted(self.ended.items())]
        return " · ".join(parts)

    def _refresh(self) -> None:
        self._progress.update(self._task, counts=self.counts())
