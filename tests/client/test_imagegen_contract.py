"""imagegen's models held to the API's contract (openapi.json): any drift between what the client sends or
reads and what the API's routes declare fails here.

openapi.json is generated from the API's routes and models (tests/unit/test_openapi.py fails when it is
stale), and the client package installs without the Lambda layer, so the client keeps its own models in
imagegen.models and these tests compare them with the document: every request field with its type, enum,
limits and cross-field rules, and every documented answer of every route.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import imagegen_contract as contract
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from imagegen.api import (
    API_KEY_HEADER,
    ASPECT_RATIOS,
    DEFAULT_ASPECT_RATIO,
    DEFAULT_MODEL,
    DEFAULT_OUTPUT_FORMAT,
    DEFAULT_SAFETY_TOLERANCE,
    FALLBACK_MODELS,
    FLUX_FIELDS,
    FLUX_MODELS,
    FOUR_O_FIELDS,
    IDEMPOTENCY_HEADER,
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    LIST_LIMIT_MIN,
    MAX_EDIT_SAFETY_TOLERANCE,
    MAX_FILES,
    MAX_SAFETY_TOLERANCE,
    MAX_WATERMARK_CHARS,
    MODELS,
    NOTIFICATION_STATES,
    OUTPUT_FORMATS,
    SIZES,
    TASK_STATUSES,
    VARIANTS,
    ApiError,
    ConflictError,
    ErrorBody,
    ForbiddenError,
    ImageApiClient,
    InsufficientCreditsError,
    RateLimitedError,
    RequestValidationError,
    ServiceUnavailableError,
    Submission,
    Task,
    TaskNotFoundError,
    TaskPage,
    TaskRequest,
    Upload,
    UpstreamAuthError,
)
from imagegen.client import _models as read_models
from imagegen_fakes import API_URL

OPTIONS = contract.request_schema("POST", "/tasks")
FIELDS = contract.resolve(OPTIONS)["properties"]
IMAGE = "https://example.com/photo.png"
MASK = "https://example.com/mask.webp"
WEBHOOK = "https://hooks.example.com/imagegen"
EVERY_FOUR_O = TaskRequest(
    "a fox",
    model="gpt-4o-image",
    size="3:2",
    files=(IMAGE,),
    mask=MASK,
    variants=2,
    enhance=True,
    fallback=True,
    fallback_model="FLUX_MAX",
    webhook=WEBHOOK,
)
EVERY_FLUX = TaskRequest(
    "a fox",
    model="flux-kontext-max",
    aspect_ratio="21:9",
    input_image="https://example.com/photo.jpg?v=1",
    output_format="png",
    translate=False,
    upsample_prompt=True,
    safety_tolerance=MAX_EDIT_SAFETY_TOLERANCE,
    watermark="acme",
    webhook=WEBHOOK,
)


def market_rule() -> tuple[list[str], dict[str, Any]]:
    """The request schema's first switch: (the Market models, their branch)."""
    (switch,) = contract.resolve(OPTIONS)["allOf"]
    return switch["if"]["properties"]["model"]["enum"], switch["then"]


EVERY_MARKET = TaskRequest(
    "a fox",
    model="google/nano-banana",
    input={"output_format": "jpeg", "image_size": "16:9"},
    webhook=WEBHOOK,
)


def model_rules() -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    """The request schema's switch between 4o and Flux (the Market's else): (the Flux models, the Flux
    branch, the 4o branch)."""
    (switch,) = contract.resolve(OPTIONS)["allOf"]
    flux_or_four_o = next(rule for rule in switch["else"]["allOf"] if "if" in rule)
    return flux_or_four_o["if"]["properties"]["model"]["enum"], flux_or_four_o["then"], flux_or_four_o["else"]


def refused_fields(branch: dict[str, Any]) -> list[str]:
    """The fields a branch refuses: those it allows only as null (the other model's)."""
    return [
        name
        for rule in branch["allOf"]
        for name, schema in rule.get("properties", {}).items()
        if schema == {"type": "null"}
    ]


def required_fields(branch: dict[str, Any]) -> set[str]:
    """What a branch requires unconditionally."""
    return {name for rule in branch["allOf"] if "if" not in rule for name in rule.get("required", ())}


# ---------------------------------------------------------------------------------------------- requests


def test_the_client_sends_every_request_field_of_the_contract_and_no_other():
    # Given a request on each model that sets every option the client has for it
    bodies = [EVERY_FOUR_O.to_json(), EVERY_FLUX.to_json(), EVERY_MARKET.to_json()]
    # Then together they name every field of the request schema, and the API accepts each
    assert sorted(set(bodies[0]) | set(bodies[1]) | set(bodies[2])) == sorted(FIELDS)
    assert set(bodies[2]) == {"model", "input", "webhookUrl"} and bodies[2]["input"]["prompt"] == "a fox"
    for request, body in zip((EVERY_FOUR_O, EVERY_FLUX, EVERY_MARKET), bodies, strict=True):
        assert request.problems() == []
        assert contract.problems(OPTIONS, body) == []
    # and each carries only its own model's fields
    assert not set(bodies[0]) & set(FLUX_FIELDS) and not set(bodies[1]) & set(FOUR_O_FIELDS)


def test_the_models_and_their_fields_are_the_contracts():
    flux_models, flux, four_o = model_rules()
    market_models, market = market_rule()
    # the client knows the 4o and Flux models; any other the contract lists is a Market model
    assert FIELDS["model"]["enum"] == [*MODELS, *market_models]
    assert not set(market_models) & set(MODELS)
    assert all(TaskRequest("x", model=name).is_market for name in market_models)
    assert sorted(refused_fields(market)) == sorted({"prompt", *FOUR_O_FIELDS, *FLUX_FIELDS})
    assert FIELDS["model"]["default"] == DEFAULT_MODEL
    assert list(FLUX_MODELS) == flux_models
    # each model refuses exactly the other one's fields
    assert sorted(FOUR_O_FIELDS) == sorted(refused_fields(flux))
    assert sorted(FLUX_FIELDS) == sorted(refused_fields(four_o))
    assert set(FIELDS) == {"model", "prompt", "webhookUrl", "input", *FOUR_O_FIELDS, *FLUX_FIELDS}
    # a field of the other model is refused by the client too, naming it
    for request, other in ((EVERY_FOUR_O, EVERY_FLUX), (EVERY_FLUX, EVERY_FOUR_O)):
        mixed = TaskRequest(**{**vars(other), "model": request.model})
        named = {problem.field for problem in mixed.problems()}
        assert set(other.given()) <= named, (named, other.given())
        assert contract.problems(OPTIONS, mixed.to_json()) != []


def test_the_request_enums_limits_and_defaults_are_the_contracts():
    assert list(SIZES) == contract.non_null(FIELDS["size"])["enum"]
    assert list(VARIANTS) == contract.non_null(FIELDS["nVariants"])["enum"]
    assert list(FALLBACK_MODELS) == contract.non_null(FIELDS["fallbackModel"])["enum"]
    assert contract.non_null(FIELDS["filesUrl"])["maxItems"] == MAX_FILES
    assert list(ASPECT_RATIOS) == contract.non_null(FIELDS["aspectRatio"])["enum"]
    assert list(OUTPUT_FORMATS) == contract.non_null(FIELDS["outputFormat"])["enum"]
    tolerance = contract.non_null(FIELDS["safetyTolerance"])
    assert (tolerance["minimum"], tolerance["maximum"]) == (0, MAX_SAFETY_TOLERANCE)
    _, flux, four_o = model_rules()
    (edit,) = [rule["then"] for rule in flux["allOf"] if "if" in rule]
    assert edit["properties"]["safetyTolerance"]["maximum"] == MAX_EDIT_SAFETY_TOLERANCE
    assert contract.non_null(FIELDS["watermark"])["maxLength"] == MAX_WATERMARK_CHARS
    # the defaults the client sends or shows are the API's own (the contract says them in words)
    plain = TaskRequest("a fox").to_json()
    assert f"{plain['nVariants']} when absent" in FIELDS["nVariants"]["description"]
    assert (plain["isEnhance"], plain["enableFallback"]) == (False, False)
    for name, default in (
        ("aspectRatio", DEFAULT_ASPECT_RATIO),
        ("outputFormat", DEFAULT_OUTPUT_FORMAT),
        ("safetyTolerance", DEFAULT_SAFETY_TOLERANCE),
    ):
        assert f"{default} when absent" in FIELDS[name]["description"], name
    # what each model's branch requires is in every body the client sends for it
    assert required_fields(four_o) <= set(plain)
    assert required_fields(flux) <= set(TaskRequest("a fox", model="flux-kontext-pro").to_json())


def test_the_client_checks_prompts_and_image_urls_with_the_contracts_own_rules():
    from imagegen import models

    prompt = contract.non_null(FIELDS["prompt"])
    assert (prompt["maxLength"], prompt["pattern"]) == (models.MAX_PROMPT_CHARS, models.PROMPT_PATTERN)
    # an image field takes a URL or a reference to an image the bundle holds (upload:, task:)
    images = (
        contract.non_null(FIELDS["filesUrl"])["items"]["anyOf"],
        [branch for branch in FIELDS["maskUrl"]["anyOf"] if branch.get("type") != "null"],
    )
    for url, reference in images:
        assert (
            url["minLength"],
            url["maxLength"],
            url["pattern"],
        ) == (models.URL_MIN_CHARS, models.URL_MAX_CHARS, models.IMAGE_URL_PATTERN)
        assert reference["pattern"] == models.REFERENCE_PATTERN
    assert re.search(models.IMAGE_URL_PATTERN, IMAGE)
    flux_image, flux_reference = [b for b in FIELDS["inputImage"]["anyOf"] if b.get("type") != "null"]
    assert flux_reference["pattern"] == models.REFERENCE_PATTERN
    assert (flux_image["minLength"], flux_image["maxLength"], flux_image["pattern"]) == (
        models.URL_MIN_CHARS,
        models.URL_MAX_CHARS,
        models.HTTP_URL_PATTERN,
    )
    for name in ("webhookUrl",):
        url = contract.non_null(FIELDS[name])
        assert (
            url["minLength"],
            url["maxLength"],
            url["pattern"],
        ) == (models.URL_MIN_CHARS, models.URL_MAX_CHARS, models.HTTP_URL_PATTERN)
    # and a webhook is https to a host name, besides
    assert FIELDS["webhookUrl"]["pattern"] == models.WEBHOOK_URL_PATTERN
    assert re.search(models.WEBHOOK_URL_PATTERN, WEBHOOK)


URLS = st.sampled_from(
    [
        IMAGE,
        MASK,
        "http://example.com/dir/photo.JPEG?v=2",
        "https://example.com:8443/dir/ph%20oto.jpg#frag",
        "https://exa_mple.com/photo.png",  # not a plain host name
        "https://user@example.com/photo.png",  # credentials in the URL
        "https://[::1]/photo.png",
        "https://example.com/a<b>.png",  # not URL characters
        "https://example.com/photo.png?q=a b",
        "https://example.com/photo.gif",  # not an image type the API takes
        "https://example.com/photo",  # no extension
        "https://photo.png",  # a host, not a file
        "ftp://example.com/photo.png",
        "https://example.com/a photo.png",
        "https://example.com/" + "x" * 2048 + ".png",  # too long
        "not a url",
    ]
)
PROMPTS = st.one_of(
    st.none(),
    st.sampled_from(["", "  \n\t", "a red fox in snow", "x" * 5000, "x" * 5001]),
    st.text(max_size=12),
)


WEBHOOKS = st.sampled_from(
    [
        WEBHOOK,
        "https://hooks.example.com:8443",
        "http://hooks.example.com/imagegen",  # not https
        "https://user@hooks.example.com/x",
        "https://a.b",
        "http://a.b",
        "https://",
        "ftp://x.com/h",
    ]
)


def maybe[T](values: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    return st.one_of(st.none(), values)


@st.composite
def four_o_fields(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "size": draw(maybe(st.sampled_from(["1:1", "3:2", "2:3", "4:3"]))),
        "files": tuple(draw(st.lists(st.one_of(st.just(IMAGE), URLS), max_size=MAX_FILES + 1))),
        "mask": draw(maybe(st.one_of(st.just(MASK), URLS))),
        "variants": draw(maybe(st.sampled_from([1, 2, 3, 4]))),
        "enhance": draw(maybe(st.booleans())),
        "fallback": draw(maybe(st.booleans())),
        "fallback_model": draw(maybe(st.sampled_from(["GPT_IMAGE_1", "FLUX_MAX", "DALL_E"]))),
    }


@st.composite
def flux_fields(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "aspect_ratio": draw(maybe(st.sampled_from(["16:9", "21:9", "9:16", "3:2", "2:1"]))),
        "input_image": draw(maybe(st.one_of(URLS, st.sampled_from(["https://example.com/photo"])))),
        "output_format": draw(maybe(st.sampled_from(["jpeg", "png", "webp"]))),
        "translate": draw(maybe(st.booleans())),
        "upsample_prompt": draw(maybe(st.booleans())),
        "safety_tolerance": draw(maybe(st.sampled_from([-1, 0, 2, 3, 6, 7]))),
        "watermark": draw(maybe(st.sampled_from(["", "acme", "x" * 200, "x" * 201]))),
    }


@st.composite
def requests(draw: st.DrawFn, models: st.SearchStrategy[str | None] | None = None) -> TaskRequest:
    model = draw(models if models is not None else maybe(st.sampled_from(list(MODELS))))
    # mostly only the model's own fields (or the default model's), sometimes the other model's too
    fields = draw(flux_fields()) if model in FLUX_MODELS else draw(four_o_fields())
    if models is None and draw(st.integers(0, 3)) == 0:
        fields |= {k: v for k, v in draw(st.one_of(four_o_fields(), flux_fields())).items() if v}
    prompt = draw(st.one_of(st.just("a red fox"), PROMPTS))
    return TaskRequest(
        prompt, model=model, webhook=draw(maybe(st.one_of(st.just(WEBHOOK), WEBHOOKS))), **fields
    )


@settings(max_examples=400, deadline=None)
@given(st.one_of(requests(), requests(st.sampled_from(FLUX_MODELS))))
def test_the_client_refuses_exactly_the_requests_the_contract_refuses(request: TaskRequest):
    # Given any request, good or bad in any of the ways the API distinguishes
    body = request.to_json()
    # Then the client finds a problem in it exactly when the API's schema does
    refused_by_api = contract.problems(OPTIONS, body)
    assert bool(request.problems()) == bool(refused_by_api), (body, request.problems(), refused_by_api)


# ---------------------------------------------------------------------------------------------- routes

# Each route of the contract, and how the client calls it.
OPERATIONS: dict[tuple[str, str], Callable[[ImageApiClient], Any]] = {
    ("POST", "/tasks"): lambda client: client.submit_task(TaskRequest("a fox")),
    ("GET", "/tasks/{taskId}"): lambda client: client.get_task("t-1"),
    ("GET", "/tasks"): lambda client: client.list_tasks(),
    ("DELETE", "/tasks/{taskId}"): lambda client: client.delete_task("t-1"),
    ("GET", "/models"): lambda client: client.list_models(),
    ("POST", "/uploads"): lambda client: client.create_upload("image/png", 1234),
}
# Each success answer, read by the client's model and written back as the API wrote it.
SUCCESSES: dict[tuple[str, str, int], Callable[[Any], Any] | None] = {
    ("POST", "/tasks", 202): lambda body: Submission.from_json(body, idempotency_key="k").to_json(),
    ("GET", "/tasks/{taskId}", 200): lambda body: Task.from_json(body).to_json(),
    ("GET", "/tasks", 200): lambda body: TaskPage.from_json(body).to_json(),
    ("DELETE", "/tasks/{taskId}", 204): None,  # no body
    ("GET", "/models", 200): lambda body: {"models": read_models(body)},
    ("POST", "/uploads", 201): lambda body: Upload.from_json(body).to_json(),
}
# Each error status, as the typed exception the client raises for it.
ERRORS: dict[int, type[ApiError]] = {
    400: RequestValidationError,
    402: InsufficientCreditsError,
    403: ForbiddenError,
    404: TaskNotFoundError,
    409: ConflictError,
    413: RequestValidationError,
    422: RequestValidationError,
    429: RateLimitedError,
    502: UpstreamAuthError,
    503: ServiceUnavailableError,
}
ANSWERS = [
    (method, path, int(status))
    for method, path, operation in contract.operations()
    for status in operation["responses"]
]


def test_the_client_calls_every_route_of_the_contract():
    assert {(method, path) for method, path, _ in contract.operations()} == set(OPERATIONS)
    assert {answer for answer in ANSWERS if answer[2] < 400} == set(SUCCESSES)
    assert {status for _, _, status in ANSWERS if status >= 400} <= set(ERRORS)


@pytest.mark.parametrize(("method", "path", "status"), [a for a in ANSWERS if a[2] < 400 and a[2] != 204])
def test_every_success_answer_is_read_without_losing_a_field(method, path, status):
    schema = contract.response_schema(method, path, status)
    assert schema is not None
    read_and_written = SUCCESSES[(method, path, status)]
    assert read_and_written is not None
    for full in (True, False):
        for variant in range(4):  # null and non-null, int and str codes, each status
            # Given an answer the API may give (every optional field too, or only the required ones)
            body = contract.instance(schema, full=full, variant=variant)
            assert contract.problems(schema, body) == []
            # Then the client's model reads every field of it, and writes it back unchanged
            assert without_unset(read_and_written(body), schema) == without_unset(body, schema)


def without_unset(value: Any, schema: dict[str, Any]) -> Any:
    """``value`` without the optional properties that are null: absent and null say the same there."""
    schema = contract.resolve(schema)
    if "anyOf" in schema and value is not None:
        schema = contract.non_null(schema)
    if isinstance(value, dict):
        required = set(schema.get("required", ()))
        return {
            key: without_unset(item, schema.get("properties", {}).get(key, {}))
            for key, item in value.items()
            if item is not None or key in required
        }
    if isinstance(value, list):
        return [without_unset(item, schema.get("items", {})) for item in value]
    return value


def test_a_204_delete_has_no_body_to_read():
    assert contract.response_schema("DELETE", "/tasks/{taskId}", 204) is None
    with client_answering(httpx.Response(204)) as client:
        assert client.delete_task("t-1") is True


@pytest.mark.parametrize(("method", "path", "status"), [a for a in ANSWERS if a[2] >= 400])
def test_every_documented_error_is_raised_as_its_typed_exception(method, path, status):
    # Given the error body the contract documents for this answer
    schema = contract.response_schema(method, path, status)
    assert schema is not None
    assert contract.resolve(schema) == contract.component("ErrorBody")
    body = contract.instance(schema, full=True)
    if status == 502:  # the API's own 502 is about the deployment's upstream key (a gateway's is retried)
        body["message"] = "the image service rejected this deployment's API key"
    assert ErrorBody.from_json(body).to_json() == body
    # When the route answers it
    with client_answering(httpx.Response(status, json=body)) as client, pytest.raises(ApiError) as caught:
        OPERATIONS[(method, path)](client)
    # Then the client raises the exception that explains it, with the API's message and field errors
    assert type(caught.value) is ERRORS[status]
    assert (caught.value.status, caught.value.message) == (status, body["message"])
    if isinstance(caught.value, RequestValidationError):
        assert [(e.field, e.message) for e in caught.value.field_errors] == [
            (e["field"], e["message"]) for e in body["errors"]
        ]


def test_an_error_body_without_field_errors_is_read_too():
    body = contract.instance(contract.component("ErrorBody"), full=False)
    assert body == {"message": "message-0"}
    assert ErrorBody.from_json(body) == ErrorBody(message="message-0")


def test_the_statuses_and_the_list_parameters_are_the_contracts():
    for name in ("TaskView", "TaskSummary"):
        assert list(TASK_STATUSES) == contract.component(name)["properties"]["status"]["enum"]
        assert contract.component(name)["properties"]["model"]["type"] == "string"  # any model, GET /models
    notification = contract.non_null(contract.component("TaskView")["properties"]["notification"])
    assert list(NOTIFICATION_STATES) == notification["properties"]["state"]["enum"]
    query = contract.parameters("GET", "/tasks", "query")
    assert list(TASK_STATUSES) == contract.non_null(query["status"]["schema"])["enum"]
    limit = query["limit"]["schema"]
    assert (
        limit["minimum"],
        limit["maximum"],
        limit["default"],
    ) == (LIST_LIMIT_MIN, LIST_LIMIT_MAX, LIST_LIMIT_DEFAULT)
    # the client sends exactly the contract's parameter names
    seen: list[httpx.Request] = []
    page = {"tasks": [], "nextCursor": None}
    with client_answering(httpx.Response(200, json=page), seen) as client:
        client.list_tasks(status="stored", limit=5, cursor="c")
    assert set(seen[0].url.params) == set(query)


def test_the_headers_are_the_contracts():
    schemes = contract.document()["components"]["securitySchemes"]
    assert [(s["in"], s["name"]) for s in schemes.values()] == [("header", API_KEY_HEADER)]
    headers = {name.lower() for name in contract.parameters("POST", "/tasks", "header")}
    assert headers == {IDEMPOTENCY_HEADER.lower()}
    for path in ("/tasks/{taskId}",):
        for method in ("GET", "DELETE"):
            assert set(contract.parameters(method, path, "path")) == {"taskId"}


def client_answering(answer: httpx.Response, seen: list[httpx.Request] | None = None) -> ImageApiClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return answer

    return ImageApiClient(API_URL, "key", transport=httpx.MockTransport(handler), max_attempts=1)
