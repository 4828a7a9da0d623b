"""AWS faults leave the adapters as our AwsFault, never as botocore's errors: the handlers catch only ours
(the import contract "handlers-see-no-sdk" holds them to not importing botocore at all)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from image_pipeline import adapters
from image_pipeline.adapters.aws import AwsAdapter
from image_pipeline.adapters.download_queue import DownloadQueue
from image_pipeline.adapters.tasks_table import TasksTable
from image_pipeline.errors import AwsFault

THROTTLED = ClientError(
    {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "UpdateItem"
)
CONDITION_FAILED = ClientError(
    {"Error": {"Code": "ConditionalCheckFailedException", "Message": "no"}}, "UpdateItem"
)


class Probe(AwsAdapter):
    def __init__(self, error: Exception | None = None) -> None:
        if isinstance(error, EndpointConnectionError):
            raise error
        self.error = error or THROTTLED

    def fail(self) -> None:
        raise self.error

    def code_seen_inside(self) -> str:
        """An adapter method calling another still sees botocore's error (and may take it as an answer)."""
        try:
            self.fail()
        except ClientError as error:
            return str(error.response["Error"]["Code"])
        return "none"

    def rows(self) -> Iterator[int]:
        yield 1
        raise self.error


class Subclass(Probe):
    def fail_too(self) -> None:
        raise self.error


def test_a_client_error_leaves_a_public_method_as_an_aws_fault_with_its_code() -> None:
    with pytest.raises(AwsFault) as caught:
        Probe().fail()
    assert caught.value.code == "ProvisionedThroughputExceededException"
    assert caught.value.message == "slow down"
    assert caught.value.__cause__ is THROTTLED  # logged with the traceback of what botocore raised


def test_a_fault_before_any_answer_is_named_by_botocore_s_class() -> None:
    unreachable = EndpointConnectionError(endpoint_url="https://dynamodb.example")
    with pytest.raises(AwsFault) as caught:
        Probe(unreachable)  # the constructor, which makes the client, too
    assert caught.value.code == "EndpointConnectionError"


def test_only_the_outermost_adapter_call_translates() -> None:
    assert Probe().code_seen_inside() == "ProvisionedThroughputExceededException"
    with pytest.raises(AwsFault):
        Subclass().fail_too()  # a subclass's own methods are translated as well


def test_a_generator_s_faults_are_translated_as_it_is_iterated() -> None:
    rows = Probe().rows()
    assert next(rows) == 1
    with pytest.raises(AwsFault):
        next(rows)


class RefusingClient:
    """A boto3 client stand-in whose every operation fails with `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, operation: str) -> Any:
        def call(**_params: Any) -> Any:
            raise self.error

        return call


def test_the_real_adapters_raise_aws_faults_and_keep_failed_conditions_as_answers() -> None:
    with pytest.raises(AwsFault, match="ProvisionedThroughputExceededException"):
        DownloadQueue("https://sqs.example/queue", sqs=RefusingClient(THROTTLED)).send_again("{}")
    refused = TasksTable("tasks", dynamodb=RefusingClient(CONDITION_FAILED))
    assert refused.mark_stored("t1", datetime.now(UTC)) is False  # not yet all stored: an answer
    with pytest.raises(AwsFault):
        TasksTable("tasks", dynamodb=RefusingClient(THROTTLED)).get_task("t1")


def test_every_adapter_that_holds_an_aws_client_is_an_aws_adapter() -> None:
    missing = []
    for info in pkgutil.iter_modules(adapters.__path__):
        module = importlib.import_module(f"image_pipeline.adapters.{info.name}")
        source = inspect.getsource(module)
        if 'client("' not in source and "client(service" not in source:
            continue  # no boto3 client made here (the upstream's httpx client, SSM through Powertools)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and value.__module__ == module.__name__
                and not issubclass(value, Exception)
                and value is not AwsAdapter
                and not issubclass(value, AwsAdapter)
            ):
                missing.append(f"{module.__name__}.{name}")
    assert missing == []
