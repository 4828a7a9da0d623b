"""A representative run of every function, configured as deployed, for the least-privilege check.

moto holds the stack's resources (devstack/common/aws_resources.py, prefix "test"); the secrets
are SSM SecureString parameters as in a deployed stack (the upstream key, the callback HMAC key, a
client's webhook secret), not the plain values local runs use, and the list cursors' key is the one
the stack makes and keeps in its tasks table; the upstream is respx; result images come from a local
HTTP server and webhooks go to a local receiver. Each handler is driven with its events/ file, the
way Lambda would, through its happy path and the error paths that call AWS differently (an upstream
refusal, a retried Idempotency-Key, the rate limit, DynamoDB down after a paid submit, a submit the
upstream never confirms, a failing image host, no time left, a callback racing the sweep, a webhook
that fails).

Every step is labelled, and the parameter cache is emptied before each: in Lambda each function is
its own process, so one function's cached secret must not hide another's GetParameter.
"""

from __future__ import annotations

import contextlib
import copy
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
import respx

from tests.conftest import load_event, template_environment
from tests.http_fixtures import ImageServer, Reply, image_server, png_bytes
from tests.iam.policy import DEPLOYED_PARAMETERS, Deployment
from tests.iam.recorder import Recorder, recording
from tests.unit.webhooks.receiver import Receiver, status

UPSTREAM = "https://api.kie.ai"
GENERATE = f"{UPSTREAM}/api/v1/gpt4o-image/generate"
RECORD_INFO = f"{UPSTREAM}/api/v1/gpt4o-image/record-info"
CREDIT = f"{UPSTREAM}/api/v1/chat/credit"
CLIENT = "clientkey1"  # API Gateway's id of the client's API key: the tasks' owner
UPSTREAM_KEY = "upstream-test-key"
HMAC_KEY = "webhook-hmac-key-for-tests"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Context:
    function_name = "scenario"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:scenario"
    aws_request_id = "11111111-2222-3333-4444-555555555555"

    def __init__(self, remaining_seconds: float = 30) -> None:
        self._remaining_ms = int(remaining_seconds * 1000)

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining_ms


@dataclass
class Upstream:
    """The 4o Image API through respx: each generate gets the next taskId (the upstream's, not ours);
    record-info per task, by the upstream's id."""

    generated: list[str] = field(default_factory=list)
    callback_urls: dict[str, str] = field(default_factory=dict)  # the upstream's taskId -> callBackUrl
    ids: dict[str, str] = field(default_factory=dict)  # our taskId (its callBackUrl's) -> the upstream's
    details: dict[str, Any] = field(default_factory=dict)  # taskId -> data, or a callable returning it
    refuse_next: bool = False
    no_answer_next: bool = False

    def generate(self, request: httpx.Request) -> httpx.Response:
        if self.refuse_next:
            self.refuse_next = False
            return httpx.Response(200, json={"code": 402, "msg": "insufficient credits"})
        task_id = f"up{len(self.generated) + 1:030x}"
        self.generated.append(task_id)
        callback_url = json.loads(request.content)["callBackUrl"]
        self.callback_urls[task_id] = callback_url
        self.ids[urlsplit(callback_url).path.rsplit("/", 1)[1]] = task_id
        if self.no_answer_next:  # it made the task, but its answer is lost (a proxy's 502 page)
            self.no_answer_next = False
            return httpx.Response(502, text="<html>bad gateway</html>")
        return httpx.Response(200, json={"code": 200, "msg": "success", "data": {"taskId": task_id}})

    def id_of(self, our_task_id: str) -> str:
        """The upstream's id of one of our tasks."""
        return self.ids[our_task_id]

    def record_info(self, request: httpx.Request) -> httpx.Response:
        task_id = request.url.params["taskId"]
        data = self.details.get(task_id, {"successFlag": 0, "status": "GENERATING", "progress": "0.40"})
        data = data() if callable(data) else data
        return httpx.Response(200, json={"code": 200, "msg": "success", "data": {"taskId": task_id, **data}})


@dataclass
class Stack:
    resources: Any
    recorder: Recorder
    upstream: Upstream
    images: ImageServer
    webhooks: Receiver

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[None]:
        from aws_lambda_powertools.utilities.parameters import base

        base.DEFAULT_PROVIDERS.clear()  # each function is its own process in Lambda
        with self.recorder.labelled(label):
            yield

    @contextlib.contextmanager
    def unrecorded(self) -> Iterator[None]:
        """What another party does meanwhile (a racing callback): not the function's call."""
        self.recorder.active = False
        try:
            yield
        finally:
            self.recorder.active = True

    # -- driving the handlers ----------------------------------------------------------------
    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        from api_handler import lambda_handler

        event = load_event("api_submit_task" if method == "POST" else "api_get_task")
        event["httpMethod"] = method
        event["path"] = path
        event["resource"] = "/tasks/{taskId}" if path.count("/") == 2 else path
        event["pathParameters"] = {"taskId": path.split("/")[2]} if path.count("/") == 2 else None
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
        if body is not None:
            event["body"] = json.dumps(body)
        elif method != "POST":
            event["body"] = None
        event["headers"] = {**event["headers"], **(headers or {})}
        event["multiValueHeaders"] = {
            **event["multiValueHeaders"],
            **{k: [v] for k, v in (headers or {}).items()},
        }
        event["requestContext"]["identity"]["apiKeyId"] = CLIENT
        response = lambda_handler(event, Context())
        return response["statusCode"], json.loads(response["body"]) if response.get("body") else None

    def callback(self, task_id: str, urls: list[str] | None) -> tuple[int, Any]:
        """The upstream's signed callback for our task `task_id` (to its callBackUrl, naming the
        upstream's id): success with `urls`, or a failure (None)."""
        from callback_handler import lambda_handler
        from image_pipeline.tokens import webhook_signature

        upstream_id = self.upstream.id_of(task_id)
        parts = urlsplit(self.upstream.callback_urls[upstream_id])
        assert parts.path.rsplit("/", 1)[1] == task_id
        token = parse_qs(parts.query)["token"][0]
        event = load_event("callback_4o_success" if urls else "callback_4o_failure")
        event["path"] = f"/callbacks/{task_id}"
        event["pathParameters"] = {"taskId": task_id}
        event["requestContext"]["path"] = f"/Prod/callbacks/{task_id}"
        event["queryStringParameters"] = {"token": token}
        event["multiValueQueryStringParameters"] = {"token": [token]}
        document = json.loads(event["body"])
        document["data"]["taskId"] = upstream_id
        if urls:
            document["data"]["info"] = {"result_urls": urls}
        event["body"] = json.dumps(document)
        timestamp = str(int(time.time()))
        event["headers"] = {
            **event["headers"],
            "X-Webhook-Timestamp": timestamp,
            "X-Webhook-Signature": webhook_signature(HMAC_KEY, upstream_id, timestamp),
        }
        response = lambda_handler(event, Context())
        return response["statusCode"], json.loads(response["body"])

    def receive(self, queue_url: str) -> list[dict[str, Any]]:
        """What the event source mapping hands the function: SQS records, as in events/ files."""
        sqs = boto3.client("sqs", region_name="us-east-1")
        template = load_event("sqs_download_batch")["Records"][0]
        records = []
        for _ in range(5):
            got = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["ApproximateReceiveCount"]
            ).get("Messages", [])
            if not got:
                break
            for message in got:
                record = copy.deepcopy(template)
                record.update(
                    messageId=message["MessageId"],
                    receiptHandle=message["ReceiptHandle"],
                    body=message["Body"],
                )
                record["attributes"]["ApproximateReceiveCount"] = message["Attributes"][
                    "ApproximateReceiveCount"
                ]
                records.append(record)
        return records

    def download(self, records: list[dict[str, Any]], remaining_seconds: float = 30) -> list[str]:
        from downloader_handler import lambda_handler

        answer = lambda_handler({"Records": records}, Context(remaining_seconds))
        return [failure["itemIdentifier"] for failure in answer["batchItemFailures"]]

    @staticmethod
    def notify_record(task_id: str) -> dict[str, Any]:
        record = copy.deepcopy(load_event("sqs_download_batch")["Records"][0])
        record.update(messageId=f"notify-{task_id}", body=json.dumps({"notifyTask": task_id}))
        return record

    def notify(self, records: list[dict[str, Any]], remaining_seconds: float = 30) -> list[str]:
        from notifier_handler import lambda_handler

        answer = lambda_handler({"Records": records}, Context(remaining_seconds))
        return [failure["itemIdentifier"] for failure in answer["batchItemFailures"]]

    def sweep(self) -> dict[str, Any]:
        from reconciler_handler import lambda_handler

        result: dict[str, Any] = lambda_handler(load_event("reconciler_scheduled"), Context(240))
        return result

    def credit(self) -> dict[str, Any]:
        from credit_handler import lambda_handler

        result: dict[str, Any] = lambda_handler(load_event("credit_monitor_scheduled"), Context())
        return result

    def task(self, task_id: str) -> Any:
        from image_pipeline.adapters.tasks_table import TasksTable

        return TasksTable(self.resources.tasks_table).get_task(task_id)


@contextlib.contextmanager
def deployed_stack() -> Iterator[Stack]:
    """moto with the stack's resources and its secrets in SSM; every function's environment as the
    template declares it, the secrets named by parameter as deployed; the recorder on."""
    from image_pipeline import wiring
    from image_pipeline.adapters import aws
    from image_pipeline.settings import reset_settings_cache
    from moto import mock_aws

    from devstack.common.aws_resources import create_stack_resources
    from devstack.common.moto_atomic import serialize_in_process_requests
    from tests.sam.test_policies import translated_template

    parameters = Deployment(translated_template(), parameters=DEPLOYED_PARAMETERS).parameters
    serialize_in_process_requests()
    with (
        pytest.MonkeyPatch.context() as env,
        mock_aws(),
        image_server() as images,
        contextlib.closing(Receiver({"/ok": status(200), "/down": status(503)})) as webhooks,
        respx.mock(assert_all_called=False) as router,
    ):
        env.delenv("AWS_ENDPOINT_URL", raising=False)
        resources = create_stack_resources(boto3.Session(region_name="us-east-1"), prefix="test")
        for name, value in template_environment(resources).items():
            env.setenv(name, value)
        ssm = boto3.client("ssm", region_name="us-east-1")
        secrets = {
            parameters["UpstreamApiKeyParameter"]: UPSTREAM_KEY,
            parameters["WebhookHmacKeyParameter"]: HMAC_KEY,
            f"{parameters['WebhookSecretParameterPrefix']}/{CLIENT}": WEBHOOK_SECRET,
        }
        for name, value in secrets.items():
            ssm.put_parameter(Name=name, Value=value, Type="SecureString")
        # As deployed: secrets by parameter name, never in the environment.
        env.setenv("KIE_API_KEY_PARAMETER", parameters["UpstreamApiKeyParameter"])
        env.setenv("KIE_WEBHOOK_HMAC_KEY_PARAMETER", parameters["WebhookHmacKeyParameter"])
        env.setenv("WEBHOOK_SECRET_PARAMETER_PREFIX", parameters["WebhookSecretParameterPrefix"])
        for plain in ("KIE_API_KEY", "KIE_WEBHOOK_HMAC_KEY", "WEBHOOK_SECRET", "CURSOR_KEY"):
            env.delenv(plain, raising=False)
        # Local stand-ins the functions may reach over plain http on loopback, and test pacing.
        env.setenv("DOWNLOAD_TRUSTED_ORIGINS", images.origin)
        env.setenv("DOWNLOAD_DEADLINE_SECONDS", "10")
        env.setenv("WEBHOOK_TRUSTED_ORIGINS", webhooks.origin)
        env.setenv("RECONCILE_AFTER_SECONDS", "0")
        # A submit the upstream never confirms is given up at the first sweep after it.
        env.setenv("SUBMIT_UNCONFIRMED_AFTER_SECONDS", "0.001")
        env.setenv("RECONCILE_QUERIES_PER_SECOND", "50")
        env.setenv("SUBMIT_RATE_WINDOW_SECONDS", "600")
        upstream = Upstream()
        router.route(host="127.0.0.1").pass_through()
        router.post(GENERATE).mock(side_effect=upstream.generate)
        router.get(RECORD_INFO).mock(side_effect=upstream.record_info)
        router.get(CREDIT).mock(
            return_value=httpx.Response(200, json={"code": 200, "msg": "success", "data": 88})
        )

        def fresh() -> None:
            from aws_lambda_powertools.utilities.parameters import base

            reset_settings_cache()
            aws.reset_clients()
            wiring.reset()
            base.DEFAULT_PROVIDERS.clear()

        fresh()  # no client built before the recorder: every one is hooked
        try:
            with recording() as recorder:
                yield Stack(resources, recorder, upstream, images, webhooks)
        finally:
            fresh()


def run(stack: Stack) -> None:
    """Every function through the paths that call AWS, in the order a task goes through them."""
    from image_pipeline.adapters.submit_guard import SubmitGuard
    from image_pipeline.adapters.tasks_table import TasksTable
    from image_pipeline.errors import RateLimited
    from image_pipeline.logic import submission
    from image_pipeline.settings import reset_settings_cache
    from image_pipeline.task_records import TaskError, utc_now

    upstream, images = stack.upstream, stack.images
    submit = {"prompt": "a red fox in snow, watercolor", "size": "3:2", "nVariants": 2}
    with stack.step("POST /tasks refused by the upstream"):
        upstream.refuse_next = True
        answer = stack.api("POST", "/tasks", submit, {"Idempotency-Key": "refused-1"})
        assert answer[0] == 402, answer
    with_webhook = {**submit, "webhookUrl": f"{stack.webhooks.origin}/ok"}
    with stack.step("POST /tasks"):
        answer = stack.api("POST", "/tasks", with_webhook, {"Idempotency-Key": "k-1"})
        assert answer[0] == 202, answer
        stored_task = answer[1]["taskId"]
    with stack.step("POST /tasks retried with its Idempotency-Key"):
        answer = stack.api("POST", "/tasks", with_webhook, {"Idempotency-Key": "k-1"})
        assert answer[1]["taskId"] == stored_task, answer
    with stack.step("POST /tasks"):
        swept_task = stack.api("POST", "/tasks", submit)[1]["taskId"]
        failing_webhook = {**submit, "webhookUrl": f"{stack.webhooks.origin}/down"}
        failed_task = stack.api("POST", "/tasks", failing_webhook)[1]["taskId"]
        flagged_task = stack.api("POST", "/tasks", submit)[1]["taskId"]
    with stack.step("POST /tasks while DynamoDB refuses the upstream's id (the outbox)"):
        working = TasksTable.confirm_submitted

        def broken(*_args: Any, **_kwargs: Any) -> bool:
            raise RuntimeError("DynamoDB unavailable")

        TasksTable.confirm_submitted = broken  # type: ignore[method-assign]
        backoff, submission.CONFIRM_BACKOFF_SECONDS = submission.CONFIRM_BACKOFF_SECONDS, 0
        try:
            answer = stack.api("POST", "/tasks", submit)
        finally:
            TasksTable.confirm_submitted = working  # type: ignore[method-assign]
            submission.CONFIRM_BACKOFF_SECONDS = backoff
        # Accepted upstream: the client has its task, `submitting` until the outbox confirms it.
        assert answer[0] == 202 and answer[1]["status"] == "submitting", answer
        raced_task = answer[1]["taskId"]
    with stack.step("POST /tasks whose generate answer is lost"):
        upstream.no_answer_next = True
        answer = stack.api("POST", "/tasks", submit)
        assert answer[0] == 202 and answer[1]["status"] == "submitting", answer
        unconfirmed_task = answer[1]["taskId"]
    with stack.step("POST /tasks over the account's rate limit"), pytest.MonkeyPatch.context() as env:
        env.setenv("SUBMIT_RATE_LIMIT", "1")
        reset_settings_cache()
        with stack.unrecorded(), contextlib.suppress(RateLimited):  # another instance took the one slot
            SubmitGuard(stack.resources.tasks_table, limit=1, window_seconds=600).acquire()
        answer = stack.api("POST", "/tasks", submit)
        assert answer[0] == 429, answer
    reset_settings_cache()
    with stack.step("GET /tasks/{taskId} while generating"):
        assert stack.api("GET", f"/tasks/{stored_task}")[1]["status"] == "submitted"

    urls = [images.serve(f"/s/{stored_task}_{i}.png", Reply(body=png_bytes())) for i in range(2)]
    images.routes[f"/s/{stored_task}_1.png"].insert(0, Reply(503, b"busy", "text/plain"))
    with stack.step("signed success callback"):
        assert stack.callback(stored_task, urls) == (200, {"status": "accepted"})
    with stack.step("the same callback again"):
        assert stack.callback(stored_task, urls) == (200, {"status": "duplicate"})
    with stack.step("signed failure callback"):
        assert stack.callback(flagged_task, None) == (200, {"status": "accepted"})

    jobs = stack.receive(stack.resources.download_queue_url)
    with stack.step("download jobs (one image host busy) and the outbox's confirmation"):
        failed = stack.download(jobs)
        assert len(jobs) == 3 and len(failed) == 1, (jobs, failed)
    assert stack.task(raced_task).upstream_id == upstream.id_of(raced_task)
    retried = [job for job in jobs if job["messageId"] in failed]
    with stack.step("download job with no time left to start"):
        assert stack.download(retried, remaining_seconds=6) == []
    with stack.step("download job retried"):
        assert stack.download(retried) == []
    assert stack.task(stored_task).status == "stored"

    swept_urls = [images.serve(f"/s/{swept_task}_0.png", Reply(body=png_bytes()))]

    def callback_meanwhile() -> dict[str, Any]:
        with stack.unrecorded():  # the failure callback lands between the sweep's query and its poll
            TasksTable(stack.resources.tasks_table).fail_from_callback(
                raced_task, upstream.id_of(raced_task), TaskError(code=501, message="x"), utc_now()
            )
        return {"successFlag": 2, "errorCode": 501, "errorMessage": "generation failed"}

    upstream.details.update(
        {
            upstream.id_of(swept_task): {
                "successFlag": 1,
                "status": "SUCCESS",
                "response": {"resultUrls": swept_urls},
            },
            upstream.id_of(failed_task): {
                "successFlag": 2,
                "errorCode": 400,
                "errorMessage": "content policy",
            },
            upstream.id_of(raced_task): callback_meanwhile,
        }
    )
    with stack.step("scheduled sweep"):
        report = stack.sweep()
        assert report["completed"] == 1 and report["failed"] >= 1, report
        assert report["unconfirmed"] == 1 and report["errors"] == [], report
    assert stack.task(unconfirmed_task).error.code == "submit_unconfirmed"

    notices = stack.receive(stack.resources.queues["NotificationQueue"].url)
    with stack.step("notify messages with no time left to start"):
        assert stack.notify(notices, remaining_seconds=4) == []  # handed back as fresh copies
    with stack.step("notify messages (one webhook down)"):
        failed = stack.notify(notices)
        assert len(notices) == 4 and len(failed) == 1, (notices, failed)
    assert sorted(r.path for r in stack.webhooks.received) == ["/down", "/ok"]

    with stack.step("GET /tasks/{taskId} of a stored task"):
        answer = stack.api("GET", f"/tasks/{stored_task}")
        assert answer[0] == 200 and len(answer[1]["images"]) == 2, answer
    # An upload, then an edit of it and of the stored image by reference (issue 22).
    with stack.step("POST /uploads"):
        photo = png_bytes()
        status, upload = stack.api("POST", "/uploads", {"contentType": "image/png", "bytes": len(photo)})
        assert status == 201, upload
    with stack.unrecorded():  # the client's presigned PUT
        key = f"uploads/{CLIENT}/{upload['uploadId']}"
        boto3.client("s3").put_object(Bucket=stack.resources.images_bucket, Key=key, Body=photo)
    with stack.step("POST /tasks with input references (upload:, task:)"):
        edit = {"size": "1:1", "prompt": "night", "filesUrl": [upload["reference"], f"task:{stored_task}/0"]}
        answer = stack.api("POST", "/tasks", edit)
        assert answer[0] == 202, answer
    with stack.step("GET /tasks"):
        answer = stack.api("GET", "/tasks", query={"limit": "1"})
        assert answer[0] == 200 and answer[1]["nextCursor"], answer
        assert stack.api("GET", "/tasks", query={"cursor": answer[1]["nextCursor"]})[0] == 200
    with stack.step("DELETE /tasks/{taskId}"):
        assert stack.api("DELETE", f"/tasks/{stored_task}")[0] == 204

    # The reconciler gave up on a slow image host and the client deleted the failed task while the
    # download still ran: the image it then writes is deleted again, by the version it wrote.
    with stack.step("POST /tasks"):
        late_task = stack.api("POST", "/tasks", submit)[1]["taskId"]
    late_url = images.serve(f"/s/{late_task}_0.png", Reply(body=png_bytes(), delay_seconds=1.0))
    with stack.step("signed success callback"):
        assert stack.callback(late_task, [late_url]) == (200, {"status": "accepted"})
    late_jobs = stack.receive(stack.resources.download_queue_url)
    with stack.step("a download that ends after its task was deleted"):
        finished: list[list[str]] = []
        download = threading.Thread(target=lambda: finished.append(stack.download(late_jobs)))
        download.start()
        deadline = time.monotonic() + 10
        while f"/s/{late_task}_0.png" not in images.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        with stack.unrecorded():  # the reconciler's part
            TasksTable(stack.resources.tasks_table).mark_failed(
                late_task, TaskError(code="download_timeout", message="gave up"), utc_now()
            )
        assert stack.api("DELETE", f"/tasks/{late_task}")[0] == 204
        download.join(30)
        assert finished == [[]], finished
    with stack.step("hourly credit read"):
        assert stack.credit() == {"credits": 88}
