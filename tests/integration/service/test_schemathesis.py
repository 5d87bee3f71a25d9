"""Property-based: generated requests for every operation; no 5xx, answers as the spec says.

The two event streams are left out (they stay open by design); test_live_events covers them.
CI runs FUZZ_EXAMPLES=25 per operation (a few hundred requests, about half a minute);
`make fuzz` runs 250 per operation, over 3,000 requests (docs/api.md has the figures).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import positive_data_acceptance

from inference_common.kafka import ensure_topics
from inference_service.api.app import load_spec
from tests.integration.service.harness import (
    ROOT,
    RunningService,
    service_settings,
    start_service,
)

pytestmark = pytest.mark.integration

# Generated requests per operation; 13 operations, so a few hundred requests in all.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
API_KEY = "fuzzer-key"


@pytest.fixture
def api(isolated_env: dict[str, str]) -> Iterator[RunningService]:
    # With API keys, as in production: every request is checked for its key.
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


# The service runs with API keys and every request carries a valid one, so the schema given to
# schemathesis has no security requirement: otherwise a negative case whose invalid part was a
# dropped key reaches the service valid (the test adds the key back), and a 200 for it reads as
# "schema-violating request accepted". 401 is tested in test_errors and the unit tests.
schema = schemathesis.openapi.from_dict(load_spec(ROOT / "openapi", with_api_keys=False)).exclude(
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
