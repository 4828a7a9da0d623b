"""A small typed client for the bundle's HTTPS API (API Gateway + Lambda in front of the 4o Image API).

The contract:

* ``POST {api}/tasks`` submits a generation and answers ``202 {"taskId", "status": "submitted"}``.
* ``GET {api}/tasks/{taskId}`` answers the task's status, progress, error and stored images
  (each with a short-lived presigned ``url`` and the ``sha256`` of the stored bytes).

Every non-2xx answer becomes a typed :class:`ApiError` subclass, so callers (the CLI) can explain
each failure without looking at status codes themselves. POSTs carry an ``Idempotency-Key`` that is
reused when the client retries after a network error, a 5xx or a 429, so a retry never pays twice.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import math
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Self
from urllib.parse import quote, urlsplit

import httpx

from imagegen import __version__

__all__ = [
    "DEFAULT_API_URL",
    "FALLBACK_MODELS",
    "MAX_FILES",
    "SIZES",
    "TERMINAL_STATUSES",
    "VARIANTS",
    "ApiConnectionError",
    "ApiError",
    "ChecksumMismatchError",
    "DownloadError",
    "DownloadedImage",
    "FieldError",
    "ForbiddenError",
    "ImageApiClient",
    "InsufficientCreditsError",
    "RateLimitedError",
    "RequestValidationError",
    "RetryNotice",
    "ServiceUnavailableError",
    "Submission",
    "Task",
    "TaskError",
    "TaskImage",
    "TaskNotFoundError",
    "TaskRequest",
    "UnexpectedResponseError",
    "UpstreamAuthError",
    "normalize_base_url",
    "parse_retry_after",
]

DEFAULT_API_URL: Final = "http://127.0.0.1:3000"
SIZES: Final = ("1:1", "3:2", "2:3")
VARIANTS: Final = (1, 2, 4)
FALLBACK_MODELS: Final = ("GPT_IMAGE_1", "FLUX_MAX")
MAX_FILES: Final = 5
TERMINAL_STATUSES: Final = frozenset({"stored", "failed"})

MAX_ATTEMPTS: Final = 3
"""Tries per request (the first one included) when the answer is a network error, a 5xx or a 429."""
MAX_RETRY_DELAY: Final = 60.0
"""Upper bound on one wait between retries, whatever Retry-After asks for."""

USER_AGENT: Final = f"imagegen/{__version__} httpx/{httpx.__version__}"


# ---------------------------------------------------------------------------------------------- errors


class ApiError(Exception):
    """Any failure talking to the API. ``status`` is the HTTP status when there was an answer."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: Any = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body
        self.method = method
        self.url = url


class ApiConnectionError(ApiError):
    """No HTTP answer at all: connection refused, DNS failure, timeout, TLS error..."""

    def __init__(self, message: str, *, refused: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.refused = refused


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class RequestValidationError(ApiError):
    """422: the request was rejected field by field."""

    def __init__(self, message: str, *, field_errors: list[FieldError], **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.field_errors = field_errors


class InsufficientCreditsError(ApiError):
    """402: the upstream account has no credits left for this generation."""


class ForbiddenError(ApiError):
    """403 from API Gateway: the x-api-key header is missing or wrong."""


class TaskNotFoundError(ApiError):
    """404: no such task."""


class RateLimitedError(ApiError):
    """429 on every try."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class UpstreamAuthError(ApiError):
    """502: the upstream image service rejected our server's key (a server configuration problem)."""


class ServiceUnavailableError(ApiError):
    """503: the upstream image service is in maintenance or unavailable."""


class UnexpectedResponseError(ApiError):
    """Any other status, or a 2xx whose body does not follow the contract."""


class DownloadError(ApiError):
    """Fetching a stored image from its presigned link failed."""


class ChecksumMismatchError(DownloadError):
    """The downloaded bytes do not hash to the sha256 the API announced."""

    def __init__(self, message: str, *, expected: str, actual: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.expected = expected
        self.actual = actual


# ---------------------------------------------------------------------------------------------- models


@dataclass(frozen=True)
class TaskRequest:
    """What ``POST /tasks`` accepts. :meth:`problems` checks it before anything is sent."""

    prompt: str
    size: str = "1:1"
    files: tuple[str, ...] = ()
    mask: str | None = None
    variants: int = 1
    enhance: bool = False
    fallback: bool = False
    fallback_model: str | None = None

    def problems(self) -> list[FieldError]:
        found: list[FieldError] = []
        if not self.prompt.strip():
            found.append(FieldError("prompt", "must not be empty"))
        if self.size not in SIZES:
            found.append(FieldError("size", f"must be one of {', '.join(SIZES)}"))
        if self.variants not in VARIANTS:
            found.append(FieldError("nVariants", f"must be one of {', '.join(map(str, VARIANTS))}"))
        if len(self.files) > MAX_FILES:
            found.append(FieldError("filesUrl", f"at most {MAX_FILES} URLs (got {len(self.files)})"))
        found.extend(
            FieldError("filesUrl", f"not an http(s) URL: {url!r}")
            for url in self.files
            if not is_http_url(url)
        )
        if self.mask is not None and not is_http_url(self.mask):
            found.append(FieldError("maskUrl", f"not an http(s) URL: {self.mask!r}"))
        if self.fallback_model is not None:
            if self.fallback_model not in FALLBACK_MODELS:
                found.append(FieldError("fallbackModel", f"must be one of {', '.join(FALLBACK_MODELS)}"))
            if not self.fallback:
                found.append(FieldError("fallbackModel", "only meaningful with enableFallback (--fallback)"))
        return found

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt": self.prompt,
            "size": self.size,
            "nVariants": self.variants,
            "isEnhance": self.enhance,
            "enableFallback": self.fallback,
        }
        if self.files:
            body["filesUrl"] = list(self.files)
        if self.mask is not None:
            body["maskUrl"] = self.mask
        if self.fallback and self.fallback_model is not None:
            body["fallbackModel"] = self.fallback_model
        return body


@dataclass(frozen=True)
class Submission:
    task_id: str
    status: str
    idempotency_key: str


@dataclass(frozen=True)
class TaskImage:
    index: int
    url: str
    key: str = ""
    content_type: str = "application/octet-stream"
    bytes: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class TaskError:
    code: int | str | None
    message: str

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}" if self.code not in (None, "") else self.message


@dataclass(frozen=True)
class Task:
    task_id: str
    status: str
    progress: float | None = None
    images: tuple[TaskImage, ...] = ()
    error: TaskError | None = None
    created_at: str | None = None
    updated_at: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """Read a ``GET /tasks/{id}`` body; raise :class:`UnexpectedResponseError` if it is not one."""
        if not isinstance(data, dict):
            raise UnexpectedResponseError("the task answer is not a JSON object", body=data)
        task_id, status = data.get("taskId"), data.get("status")
        if not isinstance(task_id, str) or not task_id or not isinstance(status, str) or not status:
            raise UnexpectedResponseError("the task answer has no taskId/status", body=data)
        images: list[TaskImage] = []
        for item in data.get("images") or ():
            if not isinstance(item, dict) or not isinstance(item.get("url"), str):
                raise UnexpectedResponseError("an image in the task answer has no url", body=data)
            index = item.get("index", len(images))
            images.append(
                TaskImage(
                    index=index if isinstance(index, int) and not isinstance(index, bool) else len(images),
                    url=item["url"],
                    key=str(item.get("key") or ""),
                    content_type=str(item.get("contentType") or "application/octet-stream"),
                    bytes=item["bytes"] if isinstance(item.get("bytes"), int) else None,
                    sha256=item["sha256"].lower() if isinstance(item.get("sha256"), str) else None,
                )
            )
        error = data.get("error")
        task_error = None
        if isinstance(error, dict):
            task_error = TaskError(code=error.get("code"), message=str(error.get("message") or "no message"))
        elif isinstance(error, str) and error:
            task_error = TaskError(code=None, message=error)
        return cls(
            task_id=task_id,
            status=status,
            progress=_progress(data.get("progress")),
            images=tuple(sorted(images, key=lambda i: i.index)),
            error=task_error,
            created_at=_opt_str(data.get("createdAt")),
            updated_at=_opt_str(data.get("updatedAt")),
            raw=data,
        )


@dataclass(frozen=True)
class DownloadedImage:
    path: Path
    bytes: int
    sha256: str


@dataclass(frozen=True)
class RetryNotice:
    """Passed to ``on_retry`` before each wait, so the caller can tell the user."""

    attempt: int  # the try that just failed, from 1
    max_attempts: int
    delay: float
    reason: str
    method: str
    url: str


# ---------------------------------------------------------------------------------------------- client


class ImageApiClient:
    """Synchronous client over :class:`httpx.Client`.

    ``transport`` is handed to httpx (tests pass an :class:`httpx.MockTransport`); ``sleep`` is what
    waits between retries; ``on_retry`` hears about every retry before its wait.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_API_URL,
        api_key: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        download_timeout: float = 120.0,
        max_attempts: int = MAX_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[RetryNotice], None] | None = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self.max_attempts = max(1, max_attempts)
        self._sleep = sleep
        self._on_retry = on_retry
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if api_key:
            headers["x-api-key"] = api_key
        self._http = httpx.Client(
            headers=headers, timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)), transport=transport
        )
        # Presigned links go to the storage service: never send them our API key.
        self._files = httpx.Client(
            headers={"User-Agent": USER_AGENT},
            timeout=httpx.Timeout(download_timeout, connect=min(download_timeout, 10.0)),
            transport=transport,
            follow_redirects=True,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()
        self._files.close()

    # -- endpoints

    def submit_task(self, request: TaskRequest, *, idempotency_key: str | None = None) -> Submission:
        """``POST /tasks``. Retries reuse ``idempotency_key`` (a fresh uuid4 when not given)."""
        key = idempotency_key or str(uuid.uuid4())
        url = f"{self.base_url}/tasks"
        response = self._send_with_retries(
            "POST",
            url,
            lambda: self._http.post(url, json=request.to_json(), headers={"Idempotency-Key": key}),
        )
        data = self._json_or_raise(response)
        task_id = data.get("taskId") if isinstance(data, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise UnexpectedResponseError(
                f"POST /tasks answered {response.status_code} without a taskId",
                status=response.status_code,
                body=data,
                method="POST",
                url=url,
            )
        return Submission(task_id=task_id, status=str(data.get("status") or "submitted"), idempotency_key=key)

    def get_task(self, task_id: str) -> Task:
        """``GET /tasks/{taskId}`` (retried like the POST: it is safe to repeat)."""
        url = f"{self.base_url}/tasks/{quote(task_id, safe='')}"
        response = self._send_with_retries("GET", url, lambda: self._http.get(url))
        return Task.from_json(self._json_or_raise(response))

    def download_image(
        self, url: str, dest: Path | str, *, expected_sha256: str | None = None
    ) -> DownloadedImage:
        """Stream ``url`` to ``dest`` (atomically: a temp file renamed into place once verified).

        Raises :class:`ChecksumMismatchError` (and leaves nothing behind) when the bytes do not hash
        to ``expected_sha256``.
        """
        dest = Path(dest)
        if not is_http_url(url):
            raise DownloadError(f"not an http(s) download link: {url!r}", url=url, method="GET")
        response = self._send_with_retries(
            "GET", url, lambda: self._files.send(self._files.build_request("GET", url), stream=True)
        )
        try:
            if response.status_code != 200:
                response.read()
                hint = " (the presigned link may have expired: ask for the task again)"
                raise DownloadError(
                    f"download answered HTTP {response.status_code}"
                    + (hint if response.status_code in (400, 403) else ""),
                    status=response.status_code,
                    body=response.text[:500],
                    method="GET",
                    url=url,
                )
            digest = hashlib.sha256()
            size = 0
            fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as fh:
                    for chunk in response.iter_bytes():
                        digest.update(chunk)
                        fh.write(chunk)
                        size += len(chunk)
                actual = digest.hexdigest()
                if expected_sha256 is not None and actual != expected_sha256.lower():
                    raise ChecksumMismatchError(
                        f"sha256 mismatch for {dest.name}: expected {expected_sha256.lower()}, got {actual}",
                        expected=expected_sha256.lower(),
                        actual=actual,
                        method="GET",
                        url=url,
                    )
                os.replace(tmp, dest)
            except httpx.TransportError as exc:
                tmp.unlink(missing_ok=True)
                raise DownloadError(f"download interrupted: {exc}", method="GET", url=url) from exc
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        finally:
            response.close()
        return DownloadedImage(path=dest, bytes=size, sha256=actual)

    # -- plumbing

    def _send_with_retries(self, method: str, url: str, send: Callable[[], httpx.Response]) -> httpx.Response:
        """Call ``send`` until it answers something other than a network error, a 5xx or a 429, at
        most ``max_attempts`` times. The last answer is returned whatever it is (the caller turns it
        into an error); the last network error is raised as :class:`ApiConnectionError`."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = send()
            except httpx.TransportError as exc:
                error = _connection_error(exc, method, url)
                # Refused: nothing listens there (the request never left), waiting will not help.
                if error.refused or attempt >= self.max_attempts:
                    raise error from exc
                delay, reason = _backoff(attempt), f"network error: {exc or type(exc).__name__}"
            else:
                status = response.status_code
                if not (status == 429 or status >= 500) or attempt >= self.max_attempts:
                    return response
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                delay = retry_after if retry_after is not None else _backoff(attempt)
                reason = "rate limited (HTTP 429)" if status == 429 else f"HTTP {status}"
                response.close()
            delay = min(max(delay, 0.0), MAX_RETRY_DELAY)
            if self._on_retry is not None:
                self._on_retry(RetryNotice(attempt, self.max_attempts, delay, reason, method, url))
            self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _json_or_raise(self, response: httpx.Response) -> Any:
        method, url = response.request.method, str(response.request.url)
        body = _body(response)
        status = response.status_code
        if 200 <= status < 300:
            if not isinstance(body, dict):
                raise UnexpectedResponseError(
                    f"{method} {url} answered {status} with a body that is not a JSON object",
                    status=status,
                    body=body,
                    method=method,
                    url=url,
                )
            return body
        message = body.get("message") if isinstance(body, dict) else None
        message = str(message) if message else (response.text.strip()[:500] or response.reason_phrase)
        common: dict[str, Any] = {"status": status, "body": body, "method": method, "url": url}
        match status:
            case 422 | 400:
                errors = body.get("errors") if isinstance(body, dict) else None
                fields = [
                    FieldError(str(e.get("field") or "?"), str(e.get("message") or "invalid"))
                    for e in (errors if isinstance(errors, list) else [])
                    if isinstance(e, dict)
                ]
                raise RequestValidationError(message, field_errors=fields, **common)
            case 402:
                raise InsufficientCreditsError(message, **common)
            case 403 | 401:
                raise ForbiddenError(message, **common)
            case 404:
                raise TaskNotFoundError(message, **common)
            case 429:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                raise RateLimitedError(message, retry_after=retry_after, **common)
            case 502:
                raise UpstreamAuthError(message, **common)
            case 503:
                raise ServiceUnavailableError(message, **common)
            case _:
                raise UnexpectedResponseError(message, **common)


# ---------------------------------------------------------------------------------------------- helpers


def normalize_base_url(url: str) -> str:
    """``https://x.execute-api.us-east-1.amazonaws.com/Prod/`` -> ``.../Prod`` (ValueError if not http(s))."""
    cleaned = (url or "").strip().rstrip("/")
    if not is_http_url(cleaned):
        raise ValueError(f"the API URL must look like http(s)://host[:port][/stage], got {url!r}")
    parts = urlsplit(cleaned)
    if parts.query or parts.fragment:
        raise ValueError(f"the API URL must not carry a query or fragment, got {url!r}")
    return cleaned


def is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds (``"7"``, ``"1.5"`` or an HTTP date); None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _backoff(attempt: int) -> float:
    return float(2 ** (attempt - 1))  # 1s, 2s, 4s...


def _connection_error(exc: httpx.TransportError, method: str, url: str) -> ApiConnectionError:
    refused = False
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or "refused" in str(seen).lower():
            refused = True
            break
        seen = seen.__cause__ or seen.__context__
    detail = str(exc) or type(exc).__name__
    return ApiConnectionError(detail, refused=refused, method=method, url=url)


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text


def _progress(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return min(1.0, max(0.0, float(value)))


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
