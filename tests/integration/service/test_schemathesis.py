"""Property-based: generated requests for every operation; no 5xx, answers as the spec says.

The two event streams are left out (they stay open by design); test_live_events covers them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import positive_data_acceptance

from inference_common.kafka import ensure_topics
from tests.integration.service.harness import (
    ROOT,
    RunningService,
    service_settings,
    start_service,
)

pytestmark = pytest.mark.integration

# Generated requests per operation; 13 operations, so a few hundred requests in all.
EXAMPLES = 25
API_KEY = "fuzzer-key"


@pytest.fixture
def api(isolated_env: dict[str, str]) -> Iterator[RunningService]:
    # With API keys, as in production: the spec's security requirement is checked too.
    settings = service_settings(
        run_live=False,
        run_folder=False,
        api_keys=f"{API_KEY}:fuzzer",
        classify_timeout_seconds=0.5,
    )
    ensure_topics(settings)
    service = start_service(settings, wait_live=False)
    try:
        yield service
    finally:
        service.stop()


schema = schemathesis.openapi.from_path(ROOT / "openapi" / "inference-api.yaml").exclude(
    path_regex=r"events$"
)


def no_server_error_but_classify_timeouts(
    ctx: CheckContext, response: Response, case: Case
) -> bool | None:
    """No executor runs here, so a valid image sent to a classify operation ends in its
    documented 504 (the job goes on); every other 5xx is still a failure."""
    if response.status_code == 504 and case.operation.path.endswith("/classify"):
        return True
    return not_a_server_error(ctx, response, case)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_api_keeps_its_contract(case: Case, api: RunningService) -> None:
    case.call_and_validate(
        base_url=api.url + "/api/v1/inference",
        headers={"X-API-Key": API_KEY},
        timeout=30,
        # Schema-valid is not always acceptable here: a cursor this service never gave out
        # (400) or a model the manifest lacks (422) cannot be expressed in the schema.
        excluded_checks=[positive_data_acceptance, not_a_server_error],
        additional_checks=[no_server_error_but_classify_timeouts],
    )
