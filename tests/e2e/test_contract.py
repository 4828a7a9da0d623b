"""The published contract, checked by a client nobody here wrote: schemathesis reads GET /openapi.json
from the local stack and sends every operation generated requests, checking that every answer is one
the document declares (status, content type, body schema) and that nothing answers 5xx."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from devstack.local.stack import LocalStack, StackConfig
from tests.e2e.conftest import stack_fixture

pytestmark = pytest.mark.e2e
CONTRACT_KEY = "contract-test-key"


contract_stack = stack_fixture(
    StackConfig(
        api_port=0,
        generation_seconds=120.0,  # submitted tasks stay submitted: the contract, not the pipeline
        workers=2,
        reconcile_interval_seconds=0,
        access_log=False,
        api_keys={CONTRACT_KEY: "contract-client"},  # keys checked as API Gateway does
    )
)


def operations(stack: LocalStack) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{stack.api_url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_the_document_lists_every_route(contract_stack: LocalStack) -> None:
    labels = {operation.label for operation in operations(contract_stack)}
    assert labels == set(LABELS)


LABELS = [
    "POST /tasks",
    "GET /tasks",
    "GET /tasks/{taskId}",
    "DELETE /tasks/{taskId}",
    "GET /models",
    "POST /uploads",
]
UPLOAD_MAX_BYTES = 30 * 1024 * 1024  # the deployment's setting, not the schema's: larger is a 422


def holds_reference(body: Any) -> bool:
    """An input reference (upload:, task:) in an image field: one that fits its pattern names no image
    this client holds, and is a 404 by design."""
    if not isinstance(body, dict):
        return False
    values = [*(body.get("filesUrl") or [] if isinstance(body.get("filesUrl"), list) else [])]
    values += [body.get("maskUrl"), body.get("inputImage")]
    return any(isinstance(value, str) and value.startswith(("upload:", "task:")) for value in values)


@pytest.mark.parametrize("label", LABELS)
def test_every_operation_answers_as_documented(contract_stack: LocalStack, label: str) -> None:
    [operation] = [op for op in operations(contract_stack) if op.label == label]

    # Bounded: a few dozen generated requests per operation, each checked against the document.
    @settings(
        max_examples=30,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def answers_as_documented(case: schemathesis.Case) -> None:
        # A list cursor is opaque: a forged one that happens to fit its schema is refused (400) by
        # design, so "schema-valid data is accepted" cannot hold for requests that carry one.
        # Likewise a webhookUrl: whether its host is a public address is checked beyond any schema
        # (https://10.0.0.1/ fits the pattern and is refused, by design).
        # And a Market model's input: its fields are checked against the model's registry entry (GET
        # /models), which the request schema cannot hold for every model at once.
        # An input reference names an image the client must hold (else 404), and an upload's size is
        # bounded by the deployment's UPLOAD_MAX_BYTES, not by the schema.
        opaque = (
            (case.query or {}).get("cursor") is not None
            or (
                isinstance(case.body, dict)
                and (case.body.get("webhookUrl") is not None or case.body.get("input") is not None)
            )
            or holds_reference(case.body)
            or (
                isinstance(case.body, dict)
                and isinstance(case.body.get("bytes"), int | float)
                and case.body["bytes"] > UPLOAD_MAX_BYTES
            )
        )
        excluded = [positive_data_acceptance] if opaque else []
        # Reusing an Idempotency-Key with another body is a 422 by design (tests/unit/test_client_safety.py);
        # generated keys repeat, so each generated request gets a key of its own.
        for name in list(case.headers or {}):
            if name.lower() == "idempotency-key":
                case.headers[name] = uuid.uuid4().hex
        # A shared, loaded machine can take seconds to answer: a slow answer is not a wrong one.
        case.call_and_validate(
            base_url=contract_stack.api_url,
            headers={"x-api-key": CONTRACT_KEY},
            excluded_checks=excluded,
            timeout=60,
        )

    answers_as_documented()


def test_schemathesis_run_with_its_default_phases_and_checks(contract_stack: LocalStack) -> None:
    """The CLI a user would run (`schemathesis run`): every phase (examples, coverage with unsupported
    methods and missing keys, fuzzing, stateful links) and every default check, but one: "schema-valid
    data is accepted", which the test above applies case by case (a forged cursor, a webhook host, a
    Market model's input are refused beyond any schema, by design)."""
    import subprocess
    import sys
    from pathlib import Path

    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{contract_stack.api_url}/openapi.json",
        "--url",
        contract_stack.api_url,
        "-H",
        f"x-api-key: {CONTRACT_KEY}",
        "--max-examples",
        "10",
        "--exclude-checks",
        "positive_data_acceptance",
        "--request-timeout",
        "30",
        "--no-color",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
