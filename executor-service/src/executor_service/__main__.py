"""`executor-service`: run the executor until SIGTERM or SIGINT."""

from __future__ import annotations

import signal
import sys
from types import FrameType

from executor_service.bootstrap import Executor
from executor_service.settings import ExecutorSettings
from inference_common import logs, tracing


def main() -> int:
    settings = ExecutorSettings()
    logs.configure(settings.log_level)
    tracing.configure("executor-service")  # off unless OTEL_* variables ask for traces
    executor = Executor(settings)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        executor.stop()  # stop fetching; in-flight jobs finish, publish and commit

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return executor.run()


if __name__ == "__main__":
    sys.exit(main())
