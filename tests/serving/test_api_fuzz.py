"""Property-based fuzzing of every operation in the OpenAPI spec (schemathesis): whatever a client
sends, the server answers with a 2xx or a 4xx, never a 5xx."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from serving_support import ADMIN_KEY, KeywordSearcher, make_settings

from shopfusion.serving.app import create_app


def test_no_input_makes_the_server_fail(sample_artifact: Path, tmp_path: Path) -> None:
    app = create_app(
        make_settings(sample_artifact, tmp_path, rate_limit_per_s=1e6, rate_limit_burst=10**6),
        searcher_loader=KeywordSearcher.from_artifact,
    )
    with TestClient(app):  # runs the lifespan: the model is loaded for the fuzzer's calls
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        results = list(schema.get_all_operations())
        operations = [result.ok() for result in results if isinstance(result, Ok)]
        assert len(operations) == len(results), "the OpenAPI spec has operations schemathesis cannot read"
        assert len(operations) >= 10
        for operation in operations:
            _fuzz(operation)


def _fuzz(operation: Any) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: Any) -> None:
        # The admin key opens every operation, so the fuzzer reaches the handlers, not just the 401s.
        case.headers = {**(case.headers or {}), "X-API-Key": ADMIN_KEY}
        case.call_and_validate(checks=[not_a_server_error])

    run()
