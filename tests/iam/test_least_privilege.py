"""Least privilege, proven both ways: every AWS call a function makes is allowed by its own role as
deployed, and every grant of that role is used by some call or kept for a reason written here.

The calls come from a scenario this module runs itself (tests/iam/scenario.py: every handler,
configured as deployed, through the paths that call AWS), not from whatever else ran before it: the
verdict is the same alone, in any order and under pytest-xdist (each worker that gets a test of
this module runs the scenario once, in its own moto). To check the calls of the whole suite too,
run it with IAM_RECORD_DIR set (tests/iam/plugin.py).

The roles are template.yaml translated by the SAM translator and resolved for the scenario's stack
(tests/iam/policy.py). The README's table of grants is generated from the same data and checked
here: IAM_WRITE_README=1 rewrites it.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.iam.policy import (
    DEPLOYED_PARAMETERS,
    Deployment,
    Grant,
    Role,
    Statement,
    UnresolvedValue,
    decide,
    denials,
    deployed_roles,
    grants,
    uses,
)
from tests.iam.recorder import Call, Permission, permissions_for
from tests.sam.test_policies import function_roles, translated_template

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "docs" / "security.md"  # the table of grants lives in the security page
FUNCTIONS = (
    "ApiFunction",
    "CallbackFunction",
    "DownloaderFunction",
    "ReconcilerFunction",
    "CreditMonitorFunction",
    "NotifierFunction",
)

# -- the grants no call of the scenario uses, each kept for a reason ------------------------------
# Keyed by (function, action, resource as the README names it). A grant no call uses and that is
# not here fails the check: remove it from template.yaml, or write down here why it stays. (No role
# grants X-Ray: Tracing is off, see template.yaml's Globals.)
LAMBDA_WRITES_LOGS = (
    "Lambda writes the function's stdout (its JSON logs and Powertools' EMF metrics) to its log group "
    "as this role; no code of the function calls CloudWatch Logs"
)


def _event_source_mapping(queue: str) -> str:
    return (
        f"the SQS event source mapping polls {queue} as this role (ReceiveMessage, GetQueueAttributes, "
        "and DeleteMessage of each batch's successes); the function's own code never does"
    )


KEPT_UNUSED: dict[tuple[str, str, str], str] = {
    **{
        (function, action, f"{function}LogGroup"): LAMBDA_WRITES_LOGS
        for function in FUNCTIONS
        for action in ("logs:CreateLogStream", "logs:PutLogEvents")
    },
    **{
        ("DownloaderFunction", action, "DownloadQueue"): _event_source_mapping("DownloadQueue")
        for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
    },
    **{
        ("NotifierFunction", action, "NotificationQueue"): _event_source_mapping("NotificationQueue")
        for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
    },
    ("DownloaderFunction", "ssm:GetParameter", "parameter/imagegen/kie-api-key"): (
        "the upstream key is read only when a result link has expired and the upstream renews it "
        "(wiring.OnDemandUpstream makes the client on its first call); the scenario's links never expire"
    ),
}


@pytest.fixture(scope="module")
def recorded() -> list[Call]:
    from tests.iam.scenario import deployed_stack, run

    with deployed_stack() as stack:
        run(stack)
    _check_names_match(stack.resources)
    return stack.recorder.calls


@pytest.fixture(scope="module")
def roles() -> dict[str, Role]:
    return deployed_roles(parameters=DEPLOYED_PARAMETERS)


@pytest.fixture(scope="module")
def deployment() -> Deployment:
    return Deployment(translated_template(), parameters=DEPLOYED_PARAMETERS)


def _check_names_match(resources: Any) -> None:
    """The resolver names the resources as devstack/common/aws_resources.py created them."""
    found = Deployment(translated_template()).attributes
    assert found("TasksTable")["Ref"] == resources.tasks_table
    assert found("IdempotencyTable")["Ref"] == resources.idempotency_table
    assert found("ImagesBucket")["Ref"] == resources.images_bucket
    assert found("EventBus")["Ref"] == resources.event_buses["EventBus"]
    for queue_id, queue in resources.queues.items():
        assert (found(queue_id)["Ref"], found(queue_id)["Arn"]) == (queue.url, queue.arn)


# -- the verdict --------------------------------------------------------------------------------


def test_every_call_a_function_makes_is_allowed_by_its_own_role(
    recorded: list[Call], roles: dict[str, Role]
) -> None:
    assert set(roles) == set(FUNCTIONS)
    assert {call.function for call in recorded} == set(FUNCTIONS), "a function made no AWS call at all"
    found = denials(roles, recorded)
    assert not found, "calls their function's role does not allow:\n" + "\n".join(map(str, found))


def test_every_grant_is_used_or_kept_for_a_written_reason(
    recorded: list[Call], roles: dict[str, Role], deployment: Deployment
) -> None:
    unused = {
        (grant.function, grant.action, deployment.display(grant.resource)): grant
        for role in roles.values()
        for grant in grants(role)
        if not uses(grant, recorded)
    }
    print("\nGrants no recorded call used:")
    for key in sorted(unused):
        print(f"  {' '.join(key)}: " + KEPT_UNUSED.get(key, "NO REASON - remove it or write one down"))
    unexplained = sorted(set(unused) - set(KEPT_UNUSED))
    assert not unexplained, f"grants no call uses and no reason keeps (remove them): {unexplained}"
    stale = sorted(set(KEPT_UNUSED) - set(unused))
    assert not stale, f"kept as unused, but now used or no longer granted (drop the reason): {stale}"


def test_presigned_links_are_recorded_as_the_get_they_allow(recorded: list[Call]) -> None:
    presigned = {
        (call.function, permission.action)
        for call in recorded
        if call.operation == "s3.presign GetObject"
        for permission in call.permissions
    }
    # an input image (upload:, task:) goes upstream as a GET of exactly one version
    assert presigned == {
        ("ApiFunction", "s3:GetObject"),
        ("ApiFunction", "s3:GetObjectVersion"),
        ("NotifierFunction", "s3:GetObject"),
    }


def test_an_upload_is_recorded_as_the_put_its_link_allows_on_uploads_only(recorded: list[Call]) -> None:
    puts = {
        (
            call.function,
            permission.action,
            permission.resource.split(":::", 1)[1].split("/", 1)[1].split("/", 1)[0],
        )
        for call in recorded
        if call.operation == "s3.presign PutObject"
        for permission in call.permissions
    }
    assert puts == {("ApiFunction", "s3:PutObject", "uploads")}


def test_the_hmac_grant_exists_only_when_its_parameter_is_set() -> None:
    defaults, configured = deployed_roles(), deployed_roles(parameters=DEPLOYED_PARAMETERS)
    assert {f: r for f, r in defaults.items() if f != "CallbackFunction"} == {
        f: r for f, r in configured.items() if f != "CallbackFunction"
    }
    only_configured = set(configured["CallbackFunction"].statements) - set(
        defaults["CallbackFunction"].statements
    )
    [statement] = only_configured
    assert statement.actions == ("ssm:GetParameter",) and statement.when == ("HasHmacKey",)
    assert statement.resources == (
        "arn:aws:ssm:us-east-1:123456789012:parameter/imagegen/kie-webhook-hmac-key",
    )


# -- the check catches what it must -------------------------------------------------------------


def test_a_role_with_one_statement_removed_fails_the_check(recorded: list[Call]) -> None:
    """The Downloader's s3:PutObject statement dropped from a translated copy of the template."""
    template = copy.deepcopy(translated_template())
    policy = template["Resources"]["DownloaderFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    kept = [s for s in policy["Statement"] if s.get("Action") != "s3:PutObject"]
    assert len(kept) == len(policy["Statement"]) - 1
    policy["Statement"] = kept
    found = [str(d) for d in denials(deployed_roles(template, parameters=DEPLOYED_PARAMETERS), recorded)]
    print("\n" + "\n".join(found))
    assert found and all(
        line.startswith(
            "DownloaderFunction: s3.PutObject needs s3:PutObject on arn:aws:s3:::test-imagesbucket/images/"
        )
        for line in found
    ), found


def test_a_new_call_without_a_grant_fails_the_check(roles: dict[str, Role]) -> None:
    """The notifier made to list the task's stored images (s3:ListBucket) on its real code path."""
    from image_pipeline.adapters.aws import client
    from image_pipeline.adapters.notifications import EventBus
    from image_pipeline.adapters.tasks_table import TasksTable
    from image_pipeline.task_records import TaskError, utc_now

    from tests.iam.scenario import deployed_stack
    from tests.task_fixtures import record_task, upstream_id_of

    with deployed_stack() as stack, pytest.MonkeyPatch.context() as patch:
        publish = EventBus.publish

        def publish_after_listing(
            bus: EventBus, detail_type: str, detail: dict[str, Any], resources: Any
        ) -> None:
            client("s3").list_objects_v2(
                Bucket=stack.resources.images_bucket, Prefix=f"images/{detail['taskId']}/"
            )
            publish(bus, detail_type, detail, resources)

        patch.setattr(EventBus, "publish", publish_after_listing)
        store = TasksTable(stack.resources.tasks_table)
        record_task(store, "f" * 32)
        assert store.fail_from_callback(
            "f" * 32, upstream_id_of("f" * 32), TaskError(code=400, message="no"), utc_now()
        )
        with stack.step("notify message"):
            assert stack.notify([stack.notify_record("f" * 32)]) == []
    found = [str(d) for d in denials(roles, stack.recorder.calls)]
    print("\n" + "\n".join(found))
    assert len(found) == 1 and found[0].startswith(
        "NotifierFunction: s3.ListObjectsV2 needs s3:ListBucket on arn:aws:s3:::test-imagesbucket "
        f"with s3:prefix=images/{'f' * 32}/ (no statement allows it; called from "
    ), found


# -- the evaluator and the mapping, case by case -------------------------------------------------


def _allow(action: str, resource: str, effect: str = "Allow", condition: str = "") -> Statement:
    return Statement(effect, (action,), (resource,), condition=condition)


@pytest.mark.parametrize(
    ("statement", "permission", "allowed"),
    [
        (
            _allow("s3:GetObject", "arn:aws:s3:::b/images/*"),
            Permission("s3:GetObject", "arn:aws:s3:::b/images/t/0.png"),
            True,
        ),
        (
            _allow("s3:GetObject", "arn:aws:s3:::b/images/*"),
            Permission("s3:GetObject", "arn:aws:s3:::b/other/0.png"),
            False,
        ),
        (_allow("s3:getobject", "arn:aws:s3:::b/*"), Permission("s3:GetObject", "arn:aws:s3:::b/k"), True),
        (_allow("s3:GetObject", "arn:aws:s3:::B/*"), Permission("s3:GetObject", "arn:aws:s3:::b/k"), False),
        (_allow("s3:Get*", "*"), Permission("s3:GetObjectVersion", "arn:aws:s3:::b/k"), True),
        (_allow("sqs:SendMessage?", "*"), Permission("sqs:SendMessage", "q"), False),
        (
            _allow("sqs:SendMessag?", "arn:aws:sqs:*:123456789012:q?"),
            Permission("sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:q1"),
            True,
        ),
        (_allow("dynamodb:Query", "arn:t/x"), Permission("dynamodb:Query", "arn:t/x/index/i"), False),
        (_allow("dynamodb:Query", "arn:t/x/index/*"), Permission("dynamodb:Query", "arn:t/x/index/i"), True),
        (Statement("Allow", (), ("*",), not_actions=("iam:*",)), Permission("s3:GetObject", "x"), True),
        (Statement("Allow", (), ("*",), not_actions=("iam:*",)), Permission("iam:PassRole", "x"), False),
        (
            Statement("Allow", ("*",), (), not_resources=("arn:a",)),
            Permission("s3:GetObject", "arn:a"),
            False,
        ),
    ],
)
def test_the_evaluator_follows_iam_wildcards(
    statement: Statement, permission: Permission, allowed: bool
) -> None:
    assert decide([statement], permission).allowed is allowed


def test_an_explicit_deny_wins_and_a_deny_whose_condition_fails_does_not() -> None:
    permission = Permission("s3:ListBucketVersions", "arn:aws:s3:::b", (("s3:prefix", "images/t/"),))
    allow = _allow("s3:ListBucketVersions", "arn:aws:s3:::b", condition=_json(IMAGES_ONLY))
    assert decide([allow], permission).allowed
    assert not decide([allow, _allow("s3:*", "*", effect="Deny")], permission).allowed
    elsewhere = _json({"StringLike": {"s3:prefix": "other/*"}})
    assert decide([allow, _allow("s3:*", "*", effect="Deny", condition=elsewhere)], permission).allowed
    assert not decide([], permission).allowed


def _json(condition: dict[str, Any]) -> str:
    return json.dumps(condition, sort_keys=True)


TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/t"
IMAGES_ONLY = {"StringLike": {"s3:prefix": "images/*"}}
SUBMISSIONS_ONLY = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["sub#*"]}}


@pytest.mark.parametrize(
    ("condition", "keys", "allowed"),
    [
        (SUBMISSIONS_ONLY, ["sub#s1"], True),
        (SUBMISSIONS_ONLY, ["task#t1"], False),
        (SUBMISSIONS_ONLY, ["sub#s1", "task#t1"], False),  # every key of the request must fit
        (SUBMISSIONS_ONLY, [], True),  # as IAM has it: ForAllValues of no value holds (never grant Scan so)
        ({"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": "task#t1"}}, ["task#t1"], True),
        ({"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": "task#t1"}}, ["task#T1"], False),
        ({"ForAnyValue:StringEquals": {"dynamodb:LeadingKeys": ["task#t1", "task#t2"]}}, ["task#t2"], True),
        ({"ForAnyValue:StringEquals": {"dynamodb:LeadingKeys": ["task#t1"]}}, [], False),
        ({"ForAllValues:StringNotLike": {"dynamodb:LeadingKeys": "task#*"}}, ["sub#s1"], True),
        ({"ForAllValues:StringNotLike": {"dynamodb:LeadingKeys": "task#*"}}, ["task#t1"], False),
        ({"StringLike": {"dynamodb:LeadingKeys": "task#*"}}, ["task#t1"], True),
        ({"StringLike": {"dynamodb:LeadingKeys": "task#*"}}, [], False),  # a key the request lacks
    ],
)
def test_leading_keys_conditions_are_evaluated(
    condition: dict[str, Any], keys: list[str], allowed: bool
) -> None:
    permission = Permission("dynamodb:DeleteItem", TABLE, tuple(("dynamodb:LeadingKeys", k) for k in keys))
    statement = _allow("dynamodb:DeleteItem", TABLE, condition=_json(condition))
    assert decide([statement], permission).allowed is allowed


@pytest.mark.parametrize(
    ("condition", "prefix", "allowed"),
    [
        (IMAGES_ONLY, "images/t/", True),
        (IMAGES_ONLY, "images/", True),
        (IMAGES_ONLY, "other/images/", False),
        (IMAGES_ONLY, "", False),
        (IMAGES_ONLY, None, False),  # a listing with no prefix at all: the whole bucket
        ({"StringLikeIfExists": {"s3:prefix": "images/*"}}, None, True),
        ({"StringEquals": {"s3:prefix": ["images/a/", "images/b/"]}}, "images/b/", True),
        ({"StringNotLike": {"s3:prefix": "images/*"}}, "other/", True),
        ({"StringNotLike": {"s3:prefix": "images/*"}}, "images/t/", False),
        (
            {"StringLike": {"s3:prefix": "images/*"}, "StringNotLike": {"s3:prefix": "images/x*"}},
            "images/x/",
            False,
        ),
    ],
)
def test_s3_prefix_conditions_are_evaluated(
    condition: dict[str, Any], prefix: str | None, allowed: bool
) -> None:
    context = (("s3:prefix", prefix),) if prefix is not None else ()
    permission = Permission("s3:ListBucketVersions", "arn:aws:s3:::b", context)
    statement = _allow("s3:ListBucketVersions", "arn:aws:s3:::b", condition=_json(condition))
    assert decide([statement], permission).allowed is allowed


@pytest.mark.parametrize(
    "condition",
    [{"Bool": {"aws:SecureTransport": "true"}}, {"StringEquals": {"aws:SourceVpce": "vpce-1"}}],
)
def test_a_condition_the_evaluator_cannot_judge_is_an_error_not_a_pass(condition: dict[str, Any]) -> None:
    statement = _allow("dynamodb:GetItem", TABLE, condition=_json(condition))
    with pytest.raises(UnresolvedValue, match="not evaluated here"):
        decide([statement], Permission("dynamodb:GetItem", TABLE))


def _api_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    role = template["Resources"]["ApiFunctionRole"]["Properties"]
    return role["Policies"][0]["PolicyDocument"]["Statement"]  # type: ignore[no-any-return]


def _delete_item_only_for(template: dict[str, Any], pattern: str) -> dict[str, Any]:
    """A copy of the template whose API may DeleteItem in IdempotencyTable only where the key fits
    `pattern`."""
    template = copy.deepcopy(template)
    statements = _api_statements(template)
    table = {"Fn::GetAtt": ["IdempotencyTable", "Arn"]}
    [claims] = [s for s in statements if "dynamodb:DeleteItem" in s["Action"] and s["Resource"] == table]
    claims["Action"] = [action for action in claims["Action"] if action != "dynamodb:DeleteItem"]
    statements.append(
        {
            "Effect": "Allow",
            "Action": "dynamodb:DeleteItem",
            "Resource": table,
            "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [pattern]}},
        }
    )
    return template


def test_a_call_outside_a_leading_keys_condition_fails_the_check(recorded: list[Call]) -> None:
    """The API frees an Idempotency-Key claim (of a refused submit) only for the client that made it:
    scoped to that client's items it passes, scoped to another client's its real DeleteItem is named."""
    deletes = [
        value
        for call in recorded
        if call.function == "ApiFunction"
        for permission in call.permissions
        if permission.action == "dynamodb:DeleteItem" and permission.resource.endswith("IdempotencyTable")
        for key, value in permission.context
        if key == "dynamodb:LeadingKeys"
    ]
    assert deletes, "the scenario frees no Idempotency-Key claim"
    owner = deletes[0].split("#", 1)[0]
    assert all(value.startswith(f"{owner}#") for value in deletes), deletes
    scoped = deployed_roles(
        _delete_item_only_for(translated_template(), f"{owner}#*"), parameters=DEPLOYED_PARAMETERS
    )
    assert not denials(scoped, recorded)
    wrong = deployed_roles(
        _delete_item_only_for(translated_template(), "another-client#*"), parameters=DEPLOYED_PARAMETERS
    )
    found = [str(d) for d in denials(wrong, recorded)]
    assert found and all(
        line.startswith(
            "ApiFunction: dynamodb.DeleteItem needs dynamodb:DeleteItem on "
            "arn:aws:dynamodb:us-east-1:123456789012:table/test-IdempotencyTable "
            f"with dynamodb:LeadingKeys={owner}#"
        )
        for line in found
    ), found


def test_a_listing_outside_an_s3_prefix_condition_fails_the_check(
    recorded: list[Call], roles: dict[str, Role]
) -> None:
    """DELETE /tasks/{id} lists the versions under images/<id>/: allowed by the API's s3:prefix
    condition; the same listing of the whole bucket is not."""
    listings = [
        call
        for call in recorded
        if call.function == "ApiFunction" and call.operation == "s3.ListObjectVersions"
    ]
    assert listings and not denials(roles, listings)
    whole_bucket = [
        Call(
            call.function,
            call.operation,
            tuple(Permission(p.action, p.resource) for p in call.permissions),
            call.site,
        )
        for call in listings
    ]
    found = [str(d) for d in denials(roles, whole_bucket)]
    assert found and all(
        "s3:ListBucketVersions on arn:aws:s3:::test-imagesbucket (" in line for line in found
    ), found


@pytest.mark.parametrize(
    ("service", "operation", "params", "expected"),
    [
        (
            "sqs",
            "SendMessageBatch",
            {"QueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/q", "Entries": []},
            [("sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:q")],
        ),
        (
            "sqs",
            "ChangeMessageVisibility",
            {"QueueUrl": "http://127.0.0.1:5000/123456789012/q"},
            [("sqs:ChangeMessageVisibility", "arn:aws:sqs:us-east-1:123456789012:q")],
        ),
        (
            "s3",
            "HeadObject",
            {"Bucket": "b", "Key": "images/k"},
            [("s3:GetObject", "arn:aws:s3:::b/images/k")],
        ),
        (
            "s3",
            "GetObject",
            {"Bucket": "b", "Key": "k", "VersionId": "v"},
            [("s3:GetObjectVersion", "arn:aws:s3:::b/k")],
        ),
        (
            "s3",
            "ListObjectVersions",
            {"Bucket": "b", "Prefix": "images/t/"},
            [("s3:ListBucketVersions", "arn:aws:s3:::b")],
        ),
        ("s3", "ListObjectsV2", {"Bucket": "b"}, [("s3:ListBucket", "arn:aws:s3:::b")]),
        (
            "s3",
            "DeleteObjects",
            {"Bucket": "b", "Delete": {"Objects": [{"Key": "a", "VersionId": "1"}, {"Key": "c"}]}},
            [("s3:DeleteObjectVersion", "arn:aws:s3:::b/a"), ("s3:DeleteObject", "arn:aws:s3:::b/c")],
        ),
        (
            "events",
            "PutEvents",
            {"Entries": [{"EventBusName": "bus"}]},
            [("events:PutEvents", "arn:aws:events:us-east-1:123456789012:event-bus/bus")],
        ),
        (
            "events",
            "PutEvents",
            {"Entries": [{}]},
            [("events:PutEvents", "arn:aws:events:us-east-1:123456789012:event-bus/default")],
        ),
        (
            "ssm",
            "GetParameter",
            {"Name": "/imagegen/k", "WithDecryption": True},
            [("ssm:GetParameter", "arn:aws:ssm:us-east-1:123456789012:parameter/imagegen/k")],
        ),
        (
            "dynamodb",
            "Query",
            {"TableName": "t", "IndexName": "i"},
            [("dynamodb:Query", "arn:aws:dynamodb:us-east-1:123456789012:table/t/index/i")],
        ),
        (
            "dynamodb",
            "Query",
            {"TableName": "t"},
            [("dynamodb:Query", "arn:aws:dynamodb:us-east-1:123456789012:table/t")],
        ),
        (
            "dynamodb",
            "BatchGetItem",
            {"RequestItems": {"t": {}}},
            [("dynamodb:BatchGetItem", "arn:aws:dynamodb:us-east-1:123456789012:table/t")],
        ),
        (
            "dynamodb",
            "TransactWriteItems",
            {"TransactItems": [{"Put": {"TableName": "t"}}, {"ConditionCheck": {"TableName": "u"}}]},
            [
                ("dynamodb:PutItem", "arn:aws:dynamodb:us-east-1:123456789012:table/t"),
                ("dynamodb:ConditionCheckItem", "arn:aws:dynamodb:us-east-1:123456789012:table/u"),
            ],
        ),
        ("kinesis", "PutRecord", {"StreamName": "s"}, [("kinesis:PutRecord", "*")]),
    ],
)
def test_each_operation_maps_to_what_iam_checks(
    service: str, operation: str, params: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert [
        (p.action, p.resource) for p in permissions_for(service, operation, params, "us-east-1")
    ] == expected


TASKS = "test-TasksTable"


@pytest.mark.parametrize(
    ("operation", "params", "leading_keys"),
    [
        ("GetItem", {"TableName": TASKS, "Key": {"pk": {"S": "task#1"}}}, ["task#1"]),
        ("UpdateItem", {"TableName": TASKS, "Key": {"pk": {"S": "sub#1"}}}, ["sub#1"]),
        (
            "PutItem",
            {"TableName": TASKS, "Item": {"pk": "task#2", "status": "x"}},
            ["task#2"],
        ),  # resource API
        ("DeleteItem", {"TableName": "test-IdempotencyTable", "Key": {"id": {"S": "k"}}}, ["k"]),
        (
            "Query",
            {
                "TableName": TASKS,
                "IndexName": "owner-createdAt",
                "KeyConditionExpression": "#owner = :owner AND createdAt < :c",
                "ExpressionAttributeNames": {"#owner": "owner"},
                "ExpressionAttributeValues": {":owner": {"S": "alice"}, ":c": {"S": "2026"}},
            },
            ["alice"],  # the index's partition key
        ),
        (
            "Query",
            {
                "TableName": TASKS,
                "KeyConditions": {"pk": {"ComparisonOperator": "EQ", "AttributeValueList": ["a"]}},
            },
            ["a"],
        ),
        (
            "BatchGetItem",
            {"RequestItems": {TASKS: {"Keys": [{"pk": {"S": "task#1"}}, {"pk": {"S": "task#2"}}]}}},
            ["task#1", "task#2"],
        ),
        ("Scan", {"TableName": TASKS}, []),
        ("GetItem", {"TableName": "not-declared", "Key": {"pk": {"S": "x"}}}, []),
    ],
)
def test_dynamodb_calls_carry_their_partition_keys_as_leading_keys(
    operation: str, params: dict[str, Any], leading_keys: list[str]
) -> None:
    [permission] = permissions_for("dynamodb", operation, params, "us-east-1")
    assert permission.context == tuple(("dynamodb:LeadingKeys", key) for key in leading_keys)


def test_each_item_of_a_transaction_carries_its_own_leading_key() -> None:
    params = {
        "TransactItems": [
            {"Put": {"TableName": TASKS, "Item": {"pk": {"S": "task#1"}}}},
            {"Delete": {"TableName": TASKS, "Key": {"pk": {"S": "sub#1"}}}},
        ]
    }
    assert [
        (p.action, p.context) for p in permissions_for("dynamodb", "TransactWriteItems", params, "us-east-1")
    ] == [
        ("dynamodb:PutItem", (("dynamodb:LeadingKeys", "task#1"),)),
        ("dynamodb:DeleteItem", (("dynamodb:LeadingKeys", "sub#1"),)),
    ]


# -- the README's table -------------------------------------------------------------------------
TABLE_START, TABLE_END = "<!-- iam-grants:start -->", "<!-- iam-grants:end -->"


def _resource_cell(grant: Grant, deployment: Deployment) -> str:
    cell = f"`{deployment.display(grant.resource)}`"
    if grant.statement.condition:
        cell += f" if `{grant.statement.condition}`"
    if grant.statement.when:
        cell += f" (only with {', '.join(grant.statement.when)})"
    return cell


def grants_table(calls: list[Call], roles: dict[str, Role], deployment: Deployment) -> str:
    """One row per function, resource and reason; actions that share them share a row."""
    step_order = {step: position for position, step in enumerate(dict.fromkeys(call.step for call in calls))}
    rows: dict[tuple[str, str, str, str], list[str]] = {}
    for function in FUNCTIONS:
        for grant in grants(roles[function]):
            used = uses(grant, calls)
            if used:
                steps = ", ".join(sorted({call.step for call, _ in used}, key=step_order.__getitem__))
                by_operation: dict[str, set[str]] = {}
                for call, _ in used:
                    by_operation.setdefault(call.operation.split(".", 1)[1], set()).add(call.site)
                why = "; ".join(
                    f"`{op}` in {', '.join(sorted(sites))}" for op, sites in sorted(by_operation.items())
                )
            else:
                steps = "not called by the function's code"
                why = KEPT_UNUSED.get(
                    (function, grant.action, deployment.display(grant.resource)), "NO REASON"
                )
            key = (function.removesuffix("Function"), _resource_cell(grant, deployment), steps, why)
            rows.setdefault(key, []).append(f"`{grant.action}`")
    lines = ["| Function | Action | Resource | Used by | Why granted |", "|---|---|---|---|---|"]
    lines += [f"| {f} | {', '.join(actions)} | {r} | {s} | {w} |" for (f, r, s, w), actions in rows.items()]
    return "\n".join(lines)


def test_the_readme_table_is_the_roles_as_checked(
    recorded: list[Call], roles: dict[str, Role], deployment: Deployment
) -> None:
    expected = grants_table(recorded, roles, deployment) + "\n"
    text = README.read_text(encoding="utf-8")
    found = re.search(re.escape(TABLE_START) + r"\n(.*?)" + re.escape(TABLE_END), text, re.DOTALL)
    assert found, f"docs/security.md has no {TABLE_START} ... {TABLE_END} section"
    if found.group(1) != expected and os.environ.get("IAM_WRITE_README") == "1":
        README.write_text(text[: found.start(1)] + expected + text[found.end(1) :], encoding="utf-8")
        return
    assert found.group(1) == expected, (
        "docs/security.md's table of grants is not the roles as checked; IAM_WRITE_README=1 rewrites it:\n"
        + expected
    )


def test_every_function_role_is_checked() -> None:
    assert set(function_roles(translated_template())) == set(FUNCTIONS)
