"""Idempotency-Key on POST /tasks: a client that retries gets the first answer back and never pays
for a second generation. Powertools idempotency keeps the records in their own DynamoDB table."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

ONE_DAY_SECONDS = 24 * 3600


@cache
def persistence(table_name: str) -> Any:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    from image_pipeline.adapters.aws import client

    return DynamoDBPersistenceLayer(table_name=table_name, boto3_client=client("dynamodb"))


def run_once(
    idempotency_key: str,
    request: dict[str, Any],
    action: Callable[[], str],
    *,
    table_name: str,
    lambda_context: Any = None,
    expires_after_seconds: int = ONE_DAY_SECONDS,
) -> str:
    """`action()` the first time `idempotency_key` is seen; its saved result every later time.

    The same key with a different request raises IdempotencyValidationError; one still running
    raises IdempotencyAlreadyInProgressError. A failed action leaves no record, so it can be retried.
    """
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
    from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyPersistenceLayerError

    config = IdempotencyConfig(
        event_key_jmespath="key",
        payload_validation_jmespath="request",
        expires_after_seconds=expires_after_seconds,
        raise_on_no_idempotency_key=True,
    )
    if lambda_context is not None:
        config.register_lambda_context(lambda_context)  # an in-progress record expires with the invocation

    @idempotent_function(
        data_keyword_argument="submission", persistence_store=persistence(table_name), config=config
    )
    def submit_tasks_once(submission: dict[str, Any]) -> str:
        done.append(action())
        return done[0]

    done: list[str] = []
    try:
        result: str = submit_tasks_once(submission={"key": idempotency_key, "request": request})
    except IdempotencyPersistenceLayerError:
        if done:
            # The generation happened and is paid for; only remembering the answer failed. Failing
            # now would make the client retry, and a retry after the in-progress record expires
            # would pay again: answer with what we have.
            return done[0]
        raise
    return result
