"""httpx client of the 4o Image API, Flux Kontext and the Market: envelopes in, typed errors out."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import httpx

from image_pipeline.errors import (
    InsufficientCredits,
    RateLimited,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamNoAnswer,
    UpstreamUnauthorized,
    UpstreamUnavailable,
)
from image_pipeline.market_registry import market_model
from image_pipeline.upstream_replies import FLUX_MODELS, FOUR_O_MODEL, Envelope, InvalidReply, TaskDetails

if TYPE_CHECKING:  # the requests arrive built (by the API); reading replies needs no pydantic
    from image_pipeline.upstream_requests import FluxGenerateRequest, GenerateRequest

GENERATE_PATH = "/api/v1/gpt4o-image/generate"
RECORD_INFO_PATH = "/api/v1/gpt4o-image/record-info"
DOWNLOAD_URL_PATH = "/api/v1/gpt4o-image/download-url"
CREDIT_PATH = "/api/v1/chat/credit"
FLUX_GENERATE_PATH = "/api/v1/flux/kontext/generate"
FLUX_RECORD_INFO_PATH = "/api/v1/flux/kontext/record-info"
# Flux Kontext has no download-url of its own: the platform's common one renews any of its links.
COMMON_DOWNLOAD_URL_PATH = "/api/v1/common/download-url"
# The Market: one submit and one query endpoint for every model (docs/upstream.md, The Market).
MARKET_CREATE_PATH = "/api/v1/jobs/createTask"
MARKET_RECORD_INFO_PATH = "/api/v1/jobs/recordInfo"

# The platform allows 20 generate calls per 10 s: when it gives no Retry-After, the window is the answer.
DEFAULT_RETRY_AFTER_SECONDS = 10


RETRY_AFTER_SECONDS = re.compile(r"[0-9]{1,6}")


def _retry_after(response: httpx.Response) -> int:
    value = response.headers.get("Retry-After", "").strip()
    return max(1, int(value)) if RETRY_AFTER_SECONDS.fullmatch(value) else DEFAULT_RETRY_AFTER_SECONDS


def error_for(code: int, message: str, response: httpx.Response | None = None) -> UpstreamError:
    if code == 401:
        return UpstreamUnauthorized(code, message or "You do not have access permissions")
    if code == 402:
        return InsufficientCredits(code, message or "insufficient credits")
    if code == 429:
        return RateLimited(code, message or "rate limited", _retry_after(response) if response else 10)
    if code in (400, 404, 422, 451):
        return UpstreamBadRequest(code, message)
    return UpstreamUnavailable(code, message or "upstream unavailable")


class UpstreamClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_seconds: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout_seconds, connect=min(5.0, timeout_seconds)),
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:  # nothing was sent
            raise UpstreamUnavailable(None, f"could not reach the upstream at {path}: {error}") from error
        except httpx.TimeoutException as error:
            raise UpstreamNoAnswer(None, f"timed out calling {path}: {type(error).__name__}") from error
        except httpx.HTTPError as error:  # sent, or perhaps sent: the answer is lost either way
            raise UpstreamNoAnswer(None, f"lost the connection calling {path}: {error}") from error
        try:
            envelope = Envelope.from_json(response.json())
        except ValueError:  # InvalidReply is one too
            # No envelope: judge by the HTTP status alone (a proxy's 502 page, a 429 from an edge).
            # A success or a 5xx without one says nothing definite about what the upstream did.
            if response.is_success or response.is_server_error:
                raise UpstreamNoAnswer(
                    response.status_code,
                    f"{path} answered HTTP {response.status_code} without a JSON envelope",
                ) from None
            raise error_for(
                response.status_code, f"HTTP {response.status_code} from {path}", response
            ) from None
        if response.status_code == 429 or envelope.code == 429:
            raise error_for(429, envelope.msg, response)
        if envelope.code != 200:
            raise error_for(envelope.code, envelope.msg, response)
        if not response.is_success:
            raise error_for(response.status_code, envelope.msg, response)
        return envelope.data

    def generate(self, request: GenerateRequest) -> str:
        return self._task_id(self._call("POST", GENERATE_PATH, json=request.to_upstream_json()))

    def generate_flux(self, request: FluxGenerateRequest) -> str:
        return self._task_id(self._call("POST", FLUX_GENERATE_PATH, json=request.to_upstream_json()))

    def create_market_task(self, model: str, given: dict[str, Any], callback_url: str) -> str:
        """One Market task: the model's own input object, checked by the API against the registry."""
        body = {"model": model, "input": given, "callBackUrl": callback_url}
        return self._task_id(self._call("POST", MARKET_CREATE_PATH, json=body))

    @staticmethod
    def _task_id(data: Any) -> str:
        task_id = data.get("taskId") if isinstance(data, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise UpstreamNoAnswer(200, "generate answered success without a taskId")
        return task_id

    def task_details(self, task_id: str, model: str = FOUR_O_MODEL) -> TaskDetails:
        if market_model(model) is not None:
            path = MARKET_RECORD_INFO_PATH
        else:
            path = FLUX_RECORD_INFO_PATH if model in FLUX_MODELS else RECORD_INFO_PATH
        data = self._call("GET", path, params={"taskId": task_id})
        try:
            return TaskDetails.from_json(data)
        except InvalidReply as error:
            raise UpstreamUnavailable(200, f"record-info answered unreadable task details: {error}") from None

    def download_url(self, task_id: str, url: str, model: str = FOUR_O_MODEL) -> str:
        """A fresh 20-minute link for a result URL (reference form; the quick start's form is read too)."""
        if model in FLUX_MODELS or market_model(model) is not None:
            data = self._call("POST", COMMON_DOWNLOAD_URL_PATH, json={"url": url})
        else:
            data = self._call("POST", DOWNLOAD_URL_PATH, json={"taskId": task_id, "url": url})
        if isinstance(data, dict):
            data = data.get("downloadUrl") or data.get("url")
        if not isinstance(data, str) or not data:
            raise UpstreamUnavailable(200, "download-url answered success without a link")
        return data

    def credit(self) -> float:
        return float(self._call("GET", CREDIT_PATH))
