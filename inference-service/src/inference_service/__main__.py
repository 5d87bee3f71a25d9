"""`inference-service`: the API, the outbox relay, the result folder and the deadline
sweeper in one process (each can be switched off with RUN_* settings)."""

from __future__ import annotations

from types import FrameType

import uvicorn

from inference_common import logs, tracing
from inference_service.api.app import create_app
from inference_service.runtime import Runtime
from inference_service.settings import ServiceSettings


class Server(uvicorn.Server):
    """uvicorn, which on SIGTERM/SIGINT first ends the open event streams so it can drain."""

    def __init__(self, config: uvicorn.Config, runtime: Runtime) -> None:
        super().__init__(config)
        self.runtime = runtime

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.runtime.end_streams()
        super().handle_exit(sig, frame)


def main(argv: list[str] | None = None) -> int:
    settings = ServiceSettings()
    logs.configure(settings.log_level)
    tracing.configure("inference-service")  # off unless OTEL_* variables ask for traces
    runtime = Runtime(settings)
    app = create_app(settings, runtime)
    config = uvicorn.Config(
        app,
        host=settings.service_host,
        port=settings.service_port,
        log_level=settings.log_level.lower(),
        # uvicorn's loggers go through the JSON formatter too; its access log stays off
        # (requests are counted in the metrics).
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        proxy_headers=False,
    )
    Server(config, runtime).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
