"""Uploads and input references (issue 22), through the API handler under moto; the upstream via respx.

moto does not enforce a presigned request's terms, so the upload's own are checked here (the signed
headers of its PUT); real S3 refuses a PUT whose Content-Type or Content-Length differs from them."""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
import respx

from tests.conftest import load_event
from tests.http_fixtures import png_bytes
from tests.unit.test_api_handler import (
    GENERATE,
    RECORD_INFO,
    TASK_ID,
    details,
    get_task,
    invoke,
    submit_ok,
    with_body,
)

FLUX_GENERATE = "https://api.kie.ai/api/v1/flux/kontext/generate"
MARKET_CREATE = "https://api.kie.ai/api/v1/jobs/createTask"


def as_client(event: dict[str, Any], client: str | None) -> dict[str, Any]:
    event = copy.deepcopy(event)
    event["requestContext"]["identity"]["apiKeyId"] = client
    return event


def upload_event(body: Any, client: str | None = None) -> dict[str, Any]:
    event = load_event("api_submit_task")
    event.update(path="/uploads", resource="/uploads")
    event["requestContext"] = {**event["requestContext"], "path": "/Prod/uploads", "resourcePath": "/uploads"}
    return as_client(with_body(event, body), client)


def create_upload(
    context: Any, data: bytes, client: str | None = None, content_type: str = "image/png"
) -> dict:
    status, body, _ = invoke(upload_event({"contentType": content_type, "bytes": len(data)}, client), context)
    assert status == 201, body
    return body


def key_of(url: str, bucket: str) -> str:
    """The object key of a presigned URL, virtual-hosted (AWS) or path style (an endpoint: moto)."""
    path = urlsplit(url).path.lstrip("/")
    return path.removeprefix(f"{bucket}/")


def put_upload(aws_stack: Any, body: dict[str, Any], data: bytes) -> None:
    """What the client's PUT stores (moto in process: boto3 stands in for the presigned request)."""
    key = key_of(body["upload"]["url"], aws_stack.images_bucket)
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_object(
        Bucket=aws_stack.images_bucket,
        Key=key,
        Body=data,
        ContentType=body["upload"]["headers"]["Content-Type"],
    )


def uploaded(aws_stack: Any, context: Any, data: bytes, content_type: str = "image/png") -> dict:
    """POST /uploads, then its PUT made: an upload a client finished."""
    created = create_upload(context, data, content_type=content_type)
    put_upload(aws_stack, created, data)
    return created


def submit(context: Any, body: dict[str, Any], client: str | None = None) -> tuple[int, dict[str, Any]]:
    status, answer, _ = invoke(as_client(with_body(load_event("api_submit_task"), body), client), context)
    return status, answer


@pytest.fixture
def upstream() -> Any:
    with respx.mock(assert_all_called=False) as mock:
        mock.post(GENERATE).mock(return_value=submit_ok())
        mock.post(FLUX_GENERATE).mock(return_value=submit_ok())
        mock.post(MARKET_CREATE).mock(
            return_value=httpx.Response(
                200, json={"code": 200, "msg": "success", "data": {"taskId": TASK_ID}}
            )
        )
        mock.get(RECORD_INFO).mock(return_value=details())
        yield mock


def test_an_upload_is_a_put_signed_with_its_type_and_length(aws_stack: Any, lambda_context: Any) -> None:
    body = create_upload(lambda_context, b"x" * 1234)
    url = urlsplit(body["upload"]["url"])
    query = parse_qs(url.query)
    assert body["upload"]["method"] == "PUT" and body["reference"] == f"upload:{body['uploadId']}"
    assert key_of(body["upload"]["url"], aws_stack.images_bucket) == f"uploads/local/{body['uploadId']}"
    assert body["uploadId"].endswith(".png")
    # S3 checks a presigned request against what was signed: these headers must come exactly so
    assert query["X-Amz-SignedHeaders"] == ["content-length;content-type;host"]
    assert body["upload"]["headers"] == {"Content-Type": "image/png", "Content-Length": "1234"}
    assert query["X-Amz-Expires"] == ["900"]


def test_the_upload_event_file_answers_a_presigned_put(aws_stack: Any, lambda_context: Any) -> None:
    # events/api_create_upload.json is what `sam local invoke ApiFunction -e` sends
    status, body, _ = invoke(load_event("api_create_upload"), lambda_context)
    assert status == 201, body
    assert body["upload"]["headers"] == {"Content-Type": "image/png", "Content-Length": "48213"}
    assert body["reference"] == f"upload:{body['uploadId']}"


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"contentType": "image/gif", "bytes": 10}, "contentType"),
        ({"contentType": "image/png", "bytes": 30 * 1024 * 1024 + 1}, "bytes"),
        ({"contentType": "image/png", "bytes": 0}, "bytes"),
    ],
)
def test_an_upload_of_another_type_or_over_the_limit_is_refused(
    aws_stack: Any, lambda_context: Any, given: dict[str, Any], field: str
) -> None:
    status, body, _ = invoke(upload_event(given), lambda_context)
    assert status == 422 and [problem["field"] for problem in body["errors"]] == [field], body


def test_an_uploaded_image_goes_upstream_as_a_presigned_get_of_its_version(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    photo = png_bytes(40, 30)
    created = uploaded(aws_stack, lambda_context, photo)
    status, answer = submit(
        lambda_context, {"size": "1:1", "prompt": "night", "filesUrl": [created["reference"]]}
    )
    assert status == 202, answer
    sent = json.loads(upstream.calls[0].request.content)
    link = urlsplit(sent["filesUrl"][0])
    assert link.path.endswith(f"/uploads/local/{created['uploadId']}")
    query = parse_qs(link.query)
    assert query["X-Amz-Expires"] == ["3600"] and "versionId" in query
    # the task keeps the reference, never the link, and says which it used
    _, task, _ = get_task(answer["taskId"], lambda_context)
    assert task["inputs"] == [{"field": "filesUrl[0]", "ref": created["reference"]}]


def test_a_stored_image_is_edited_by_task_reference_with_flux(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    photo = png_bytes(32, 32)
    status, answer = submit(lambda_context, {"size": "1:1", "prompt": "a harbour"})
    task_id = answer["taskId"]
    key = f"images/{task_id}/0.png"
    boto3.client("s3", region_name="us-east-1").put_object(
        Bucket=aws_stack.images_bucket, Key=key, Body=photo
    )
    boto3.client("dynamodb", region_name="us-east-1").update_item(
        TableName=aws_stack.tasks_table,
        Key={"pk": {"S": f"task#{task_id}"}},
        UpdateExpression="SET images = :images, #s = :stored",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={
            ":stored": {"S": "stored"},
            ":images": {"M": {"0": {"M": {
                "index": {"N": "0"}, "key": {"S": key}, "contentType": {"S": "image/png"},
                "bytes": {"N": str(len(photo))}, "sha256": {"S": "0" * 64},
            }}}},
        },
    )  # fmt: skip
    status, edit = submit(
        lambda_context,
        {"model": "flux-kontext-pro", "prompt": "make it night", "inputImage": f"task:{task_id}/0"},
    )
    assert status == 202, edit
    sent = json.loads(upstream.calls.last.request.content)
    assert urlsplit(sent["inputImage"]).path.endswith(f"/{key}")


def test_another_clients_reference_is_404_exactly_as_an_unknown_one(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    photo = png_bytes()
    created = create_upload(lambda_context, photo, client="alice")
    put_upload(aws_stack, created, photo)
    unknown = "upload:" + "0" * 32 + ".png"
    answers = [
        submit(lambda_context, {"size": "1:1", "filesUrl": [reference]}, client="bob")
        for reference in (created["reference"], unknown, f"task:{TASK_ID}/0")
    ]
    assert [status for status, _ in answers] == [404, 404, 404]
    for (_, body), reference in zip(
        answers, (created["reference"], unknown, f"task:{TASK_ID}/0"), strict=True
    ):
        assert body == {
            "message": f"filesUrl[0]: {reference} not found",
            "errors": [{"field": "filesUrl[0]", "message": f"{reference} not found"}],
        }
    assert not upstream.calls  # nothing was generated


def test_an_upload_never_made_or_expired_is_422(aws_stack: Any, upstream: Any, lambda_context: Any) -> None:
    created = create_upload(lambda_context, png_bytes())  # no PUT followed (or the lifecycle rule removed it)
    status, body = submit(
        lambda_context,
        {
            "size": "1:1",
            "prompt": "x",
            "maskUrl": created["reference"],
            "filesUrl": ["https://example.com/a.png"],
        },
    )
    assert status == 422 and body["errors"][0]["field"] == "maskUrl", body
    assert "expired or was never uploaded" in body["errors"][0]["message"]


def test_an_upload_that_is_not_an_image_is_422_naming_its_field(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    good, bad = png_bytes(), b"<html>not an image</html>"
    first, second = create_upload(lambda_context, good), create_upload(lambda_context, bad)
    put_upload(aws_stack, first, good)
    put_upload(aws_stack, second, bad)
    status, body = submit(
        lambda_context, {"size": "1:1", "filesUrl": [first["reference"], second["reference"]]}
    )
    assert status == 422 and body["errors"][0]["field"] == "filesUrl[1]", body
    assert "not a usable image" in body["errors"][0]["message"]
    assert not upstream.calls


def test_an_upload_size_given_as_a_whole_float_is_that_integer(aws_stack: Any, lambda_context: Any) -> None:
    # 104.0 is an integer to JSON Schema: schemathesis sends it, and the contract takes it
    status, body, _ = invoke(upload_event({"contentType": "image/webp", "bytes": 104.0}), lambda_context)
    assert status == 201 and body["upload"]["headers"]["Content-Length"] == "104", body
    status, body, _ = invoke(upload_event({"contentType": "image/webp", "bytes": 104.5}), lambda_context)
    assert status == 422 and body["errors"][0]["field"] == "bytes"


@pytest.mark.parametrize(
    ("model", "given", "field", "sent"),
    [
        ("qwen/image-edit", "image_url", "input.image_url", lambda sent: sent["input"]["image_url"]),
        (
            "google/nano-banana-edit",
            "image_urls",
            "input.image_urls[0]",
            lambda sent: sent["input"]["image_urls"][0],
        ),
    ],
)
def test_a_market_models_image_field_takes_a_reference(
    aws_stack: Any, lambda_context: Any, model: str, given: str, field: str, sent: Any
) -> None:
    photo = png_bytes()
    created = uploaded(aws_stack, lambda_context, photo)
    value: Any = created["reference"] if given == "image_url" else [created["reference"]]
    with respx.mock(assert_all_called=False) as mock:
        create = mock.post(MARKET_CREATE).mock(
            return_value=httpx.Response(
                200, json={"code": 200, "msg": "success", "data": {"taskId": TASK_ID}}
            )
        )
        status, answer = submit(lambda_context, {"model": model, "input": {"prompt": "night", given: value}})
        assert status == 202, answer
        link = sent(json.loads(create.calls.last.request.content))
    assert key_of(link.split("?", 1)[0], aws_stack.images_bucket) == f"uploads/local/{created['uploadId']}"
    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=aws_stack.tasks_table, Key={"pk": {"S": f"task#{answer['taskId']}"}}
    )["Item"]
    assert item["inputs"]["L"][0]["M"]["field"]["S"] == field
    assert created["reference"] in json.dumps(item["options"])  # the record keeps the reference
    assert "X-Amz-Signature" not in json.dumps(item["options"])  # never the link


def _api_input_store() -> Any:
    """The InputStore the API handler uses (its real boto3 clients, which the tests below hook)."""
    from image_pipeline import wiring
    from image_pipeline.settings import api_settings

    settings = api_settings()
    return wiring.input_store(settings.tasks_table, settings.images_bucket, settings.record_ttl_days)


def _aws_answer(request: Any, status: int, body: bytes = b"") -> Any:
    """An answer from AWS as botocore reads it off the wire, for a before-send hook to return."""
    from botocore.awsrequest import AWSResponse

    class _Raw:
        def stream(self, **_: Any) -> Any:
            return iter([body])

    return AWSResponse(request.url, status, {"x-amzn-requestid": "test"}, _Raw())


def _count_upload_reads(aws_stack: Any) -> list[str]:
    """The S3 GETs of uploads/ the API makes (a hook on the real client it uses, not a stand-in)."""
    reads: list[str] = []
    _api_input_store()._s3.meta.events.register(
        "before-call.s3.GetObject", lambda params, **_: reads.append(params["url_path"]), unique_id="count"
    )
    return reads


def test_an_uploads_bytes_are_read_and_checked_once_however_often_it_is_used(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    # An upload may be 30 MiB: reading it on every edit that names it would cost each submit that read.
    photo = png_bytes(40, 30)
    created = uploaded(aws_stack, lambda_context, photo)
    reads = _count_upload_reads(aws_stack)
    twice = {"size": "1:1", "prompt": "night", "filesUrl": [created["reference"], created["reference"]]}
    assert submit(lambda_context, twice)[0] == 202
    assert (
        submit(lambda_context, {"size": "1:1", "prompt": "day", "filesUrl": [created["reference"]]})[0] == 202
    )
    assert len(reads) == 1, reads


def test_an_upload_overwritten_after_its_check_is_checked_again(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    # The presigned PUT stays usable until it expires: a second PUT of the same length is a new object.
    photo = png_bytes(40, 30)
    created = uploaded(aws_stack, lambda_context, photo)
    request = {"size": "1:1", "prompt": "night", "filesUrl": [created["reference"]]}
    assert submit(lambda_context, request)[0] == 202
    put_upload(aws_stack, created, b"\0" * len(photo))
    status, body = submit(lambda_context, request)
    assert status == 422 and body["errors"][0]["field"] == "filesUrl[0]", body
    assert "not a usable image" in body["errors"][0]["message"]


def test_a_presigned_input_link_longer_than_a_client_url_may_be_still_goes_upstream(
    aws_stack: Any, upstream: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Lambda role's session token makes a presigned link 1,300-1,700 characters; a long one, with a
    # long client id, passes the 2,048 a client's own URL may have. The link is ours: it is not refused.
    from image_pipeline import wiring
    from image_pipeline.adapters import aws

    photo = png_bytes(40, 30)
    created = uploaded(aws_stack, lambda_context, photo)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "IQoJb3JpZ2luX2VjE" + "A" * 1900)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # its credentials are read anew
    aws.reset_clients()
    wiring.reset()
    for body in (
        {
            "size": "1:1",
            "prompt": "night",
            "filesUrl": [created["reference"]],
            "maskUrl": created["reference"],
        },
        {"model": "flux-kontext-pro", "prompt": "night", "inputImage": created["reference"]},
        {"model": "qwen/image-edit", "input": {"prompt": "night", "image_url": created["reference"]}},
    ):
        status, answer = submit(lambda_context, body)
        assert status == 202, answer
    sent = [json.loads(call.request.content) for call in upstream.calls]
    links = [sent[0]["filesUrl"][0], sent[0]["maskUrl"], sent[1]["inputImage"], sent[2]["input"]["image_url"]]
    for link in links:
        assert len(link) > 2048 and "X-Amz-Security-Token=IQoJb3JpZ2luX2VjE" in link, link[:200]


def _as_real_s3_answers_a_missing_key_without_list_bucket(aws_stack: Any) -> None:
    """Real S3 answers a HEAD of a missing key with 403, not 404, to a role without s3:ListBucket (the
    API's has none); moto answers 404. This makes the API's own S3 client answer as real S3 does."""

    def forbidden(request: Any, **_: Any) -> Any:
        return _aws_answer(request, 403) if request.method == "HEAD" else None

    _api_input_store()._s3.meta.events.register_first("before-send.s3.HeadObject", forbidden)


def test_an_upload_never_put_is_422_also_where_s3_answers_403(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    created = create_upload(lambda_context, png_bytes())  # and its PUT never made
    _as_real_s3_answers_a_missing_key_without_list_bucket(aws_stack)
    status, body = submit(lambda_context, {"size": "1:1", "prompt": "x", "filesUrl": [created["reference"]]})
    assert status == 422 and body["errors"][0]["field"] == "filesUrl[0]", body
    assert "expired or was never uploaded" in body["errors"][0]["message"]
    assert not upstream.calls


MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("request_body", "field", "size", "limit"),
    [
        ({"size": "1:1", "prompt": "x", "filesUrl": ["REF"]}, "filesUrl[0]", 25 * MIB + 1, 26_214_400),
        ({"model": "google/nano-banana-edit", "input": {"prompt": "x", "image_urls": ["REF"]}},
         "input.image_urls[0]", 10 * MIB + 1, 10 * MIB),
        ({"model": "qwen/image-edit", "input": {"prompt": "x", "image_url": "REF"}},
         "input.image_url", 10 * MIB + 1, 10 * MIB),
    ],
)  # fmt: skip
def test_an_input_over_the_models_own_size_limit_is_422_before_anything_is_sent(
    aws_stack: Any,
    upstream: Any,
    lambda_context: Any,
    request_body: dict[str, Any],
    field: str,
    size: int,
    limit: int,
) -> None:
    # The upstream refuses a larger input only when the task runs (4o: code 400, at most 26,214,400
    # bytes; the Market models: each field's documented limit): the client hears it at once instead.
    created = uploaded(aws_stack, lambda_context, b"\0" * size)
    reads = _count_upload_reads(aws_stack)
    body = json.loads(json.dumps(request_body).replace('"REF"', json.dumps(created["reference"])))
    status, answer = submit(lambda_context, body)
    assert status == 422 and answer["errors"][0]["field"] == field, answer
    assert f"at most {limit} bytes" in answer["errors"][0]["message"], answer
    assert not upstream.calls and reads == []  # refused by its size alone


def test_a_model_that_takes_larger_inputs_is_not_held_to_another_models_limit(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    # nano-banana-pro takes 30 MB inputs: an 11 MiB upload passes the size rule and meets the bytes check
    created = uploaded(aws_stack, lambda_context, b"\0" * (11 * MIB))
    body = {"model": "nano-banana-pro", "input": {"prompt": "x", "image_input": [created["reference"]]}}
    status, answer = submit(lambda_context, body)
    assert status == 422 and "not a usable image" in answer["errors"][0]["message"], answer


def test_an_upload_whose_bytes_are_another_type_than_it_was_uploaded_as_is_422(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    # A JPEG PUT as image/png would reach the upstream named .png and served as image/png.
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 10, 10)).save(buffer, "JPEG")
    jpeg = buffer.getvalue()
    created = uploaded(aws_stack, lambda_context, jpeg, content_type="image/png")
    status, body = submit(lambda_context, {"size": "1:1", "prompt": "x", "filesUrl": [created["reference"]]})
    assert status == 422 and body["errors"][0]["field"] == "filesUrl[0]", body
    assert "image/jpeg" in body["errors"][0]["message"] and "image/png" in body["errors"][0]["message"]
    assert not upstream.calls


def test_a_refused_upload_is_refused_again_without_reading_it_again(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    bad = b"<html>not an image</html>" * 1000
    created = uploaded(aws_stack, lambda_context, bad)
    reads = _count_upload_reads(aws_stack)
    request = {"size": "1:1", "prompt": "x", "filesUrl": [created["reference"]]}
    answers = [submit(lambda_context, request) for _ in range(3)]
    assert [status for status, _ in answers] == [422, 422, 422]
    assert len({answer["errors"][0]["message"] for _, answer in answers}) == 1
    assert len(reads) == 1, reads


def test_a_fault_remembering_a_check_does_not_fail_the_submit(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    # Remembering the verdict saves a later read; DynamoDB refusing that write is no reason to refuse
    photo = png_bytes()
    created = uploaded(aws_stack, lambda_context, photo)
    denied = b'{"__type":"com.amazonaws.dynamodb.v20120810#AccessDeniedException","message":"no"}'

    def refuse_the_mark(request: Any, **_: Any) -> Any:
        return _aws_answer(request, 400, denied) if b"checkedObject" in (request.body or b"") else None

    _api_input_store()._db.meta.events.register_first("before-send.dynamodb.UpdateItem", refuse_the_mark)
    status, answer = submit(
        lambda_context, {"size": "1:1", "prompt": "x", "filesUrl": [created["reference"]]}
    )
    assert status == 202, answer


def test_get_models_states_the_input_size_limit_post_tasks_enforces() -> None:
    # A client can check a file before uploading it: the catalogue's figure is the one the API applies.
    from image_pipeline.client_requests import TaskRequest
    from image_pipeline.model_catalog import model_catalog

    for entry in model_catalog()["models"]:
        request = TaskRequest.model_construct(model=entry["model"])  # the limits depend on the model alone
        enforced = {name.removeprefix("input."): limit for name, limit in request.input_byte_limits().items()}
        assert entry["maxInputBytes"] == enforced, entry["model"]
        assert set(enforced) <= set(entry["imageUrlFields"]), entry["model"]
    by_model = {entry["model"]: entry for entry in model_catalog()["models"]}
    assert by_model["gpt-4o-image"]["maxInputBytes"] == {"filesUrl": 26_214_400, "maskUrl": 26_214_400}
    assert by_model["nano-banana-pro"]["maxInputBytes"] == {"image_input": 30 * MIB}


def test_a_4o_task_records_its_references_beside_its_urls_never_the_links(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    photo = png_bytes(40, 30)
    created = uploaded(aws_stack, lambda_context, photo)
    ref = created["reference"]
    url = "https://img.example.com/a.png"
    status, answer = submit(
        lambda_context, {"size": "1:1", "prompt": "x", "filesUrl": [url, ref], "maskUrl": ref}
    )
    assert status == 202, answer
    sent = json.loads(upstream.calls[0].request.content)
    assert (
        sent["filesUrl"][0] == url
        and sent["filesUrl"][1].startswith("https://")
        and "versionId" in sent["maskUrl"]
    )
    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=aws_stack.tasks_table, Key={"pk": {"S": f"task#{answer['taskId']}"}}
    )["Item"]
    options = json.dumps(item["options"])
    assert ref in options and url in options and "X-Amz-Signature" not in options
    _, task, _ = get_task(answer["taskId"], lambda_context)
    assert task["inputs"] == [{"field": "filesUrl[1]", "ref": ref}, {"field": "maskUrl", "ref": ref}]
