"""Acceptance 3: schema-driven fuzzing of the whole API (schemathesis against the served OpenAPI schema):
valid-per-schema and schema-violating requests, with and without a key; no 5xx, no status code, content type
or body outside the schema. A bounded number of examples per operation and mode."""
from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis import checks as st_checks  # noqa: E402

from robustkit.serve import KeyStore, add_key, create_app, load_served_model  # noqa: E402

MAX_EXAMPLES = 30
CHECKS = [st_checks.not_a_server_error, st_checks.status_code_conformance, st_checks.content_type_conformance,
          st_checks.response_schema_conformance, st_checks.response_headers_conformance,
          st_checks.negative_data_rejection]


@pytest.fixture(scope="module")
def fuzz_target(runs, tmp_path_factory):
    vision_run, text_run = runs
    keys_file = tmp_path_factory.mktemp("fuzz") / "keys.json"
    key = add_key(keys_file, "fuzz")
    app = create_app([load_served_model(vision_run, name="digits"), load_served_model(text_run, name="text")],
                     keys=KeyStore(keys_file), rate_limit=0, max_request_batch=8, max_certify_samples=2000,
                     max_body_bytes=200_000)
    return schemathesis.openapi.from_asgi("/openapi.json", app), key


def _fuzz(schema, mode: GenerationMode, headers: dict, max_examples: int) -> int:
    calls = 0
    for result in schema.get_all_operations():
        op = result.ok()

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=True, database=None)
        def run(case):
            nonlocal calls
            calls += 1
            case.call_and_validate(headers=headers, checks=CHECKS)
        try:
            run()
        except Unsatisfiable:  # nothing of this operation can violate its schema (e.g. GET /v2/health/live)
            assert mode == GenerationMode.NEGATIVE
    return calls


def test_api_fuzz_with_key(fuzz_target):
    schema, key = fuzz_target
    assert _fuzz(schema, GenerationMode.POSITIVE, {"Authorization": f"Bearer {key}"}, MAX_EXAMPLES) > 100


def test_api_fuzz_schema_violations_with_key(fuzz_target):
    schema, key = fuzz_target
    assert _fuzz(schema, GenerationMode.NEGATIVE, {"X-API-Key": key}, MAX_EXAMPLES) > 50


def test_api_fuzz_without_key(fuzz_target):
    schema, _ = fuzz_target
    assert _fuzz(schema, GenerationMode.POSITIVE, {}, 5) > 10
