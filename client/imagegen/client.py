"""The HTTP client of the bundle's API: retries with one Idempotency-Key, answers turned into models or
typed errors, verified atomic downloads."""

from __future__ import annotations

import email.utils
import hashlib
import json
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Self
from urllib.parse import quote, urlsplit

import httpx

from imagegen import __version__
from imagegen.errors import (
    ApiConnectionError,
    ChecksumMismatchError,
    ConflictError,
    DownloadError,
    ForbiddenError,
    InsufficientCreditsError,
    RateLimitedError,
    RequestValidationError,
    ServiceUnavailableError,
    TaskNotFoundError,
    UnexpectedResponseError,
    UpstreamAuthError,
)
from imagegen.request import TaskRequest, is_http_url
from imagegen.responses import DownloadedImage, ErrorBody, RetryNotice, Submission, Task, TaskPage, Upload

DEFAULT_API_URL: Final = "http://127.0.0.1:3000"

MAX_ATTEMPTS: Final = 3
"""Tries per request (the first one included) when the answer is a network error, a 5xx or a 429."""
MAX_RETRY_DELAY: Final = 60.0
"""Upper bound on one wait between retries, whatever Retry-After asks for."""

USER_AGENT: Final = f"imagegen/{__version__} httpx/{httpx.__version__}"
API_KEY_HEADER: Final = "x-api-key"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"


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
            headers[API_KEY_HEADER] = api_key
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
            lambda: self._http.post(url, json=request.to_json(), headers={IDEMPOTENCY_HEADER: key}),
        )
        return _read(response, lambda body: Submission.from_json(body, idempotency_key=key))

    def create_upload(self, content_type: str, size: int) -> Upload:
        """``POST /uploads``: an upload's id and its presigned PUT, signed with this exact type and size."""
        url = f"{self.base_url}/uploads"
        body = {"contentType": content_type, "bytes": size}
        response = self._send_with_retries("POST", url, lambda: self._http.post(url, json=body))
        return _read(response, Upload.from_json)

    def upload_image(self, path: Path | str) -> Upload:
        """Upload a local PNG, JPEG or WebP (its type from its magic bytes): ``POST /uploads``, then its
        presigned PUT with exactly the signed headers. Use ``upload.reference`` where an image URL goes."""
        data = Path(path).read_bytes()
        content_type = image_type(data)
        if content_type is None:
            raise ValueError(f"{path}: not a PNG, JPEG or WebP image")
        upload = self.create_upload(content_type, len(data))
        response = self._send_with_retries(
            "PUT",
            upload.url,
            lambda: self._files.request(
                upload.method, upload.url, content=data, headers=dict(upload.headers)
            ),
        )
        if response.status_code not in (200, 201, 204):
            raise DownloadError(
                f"the upload's PUT answered HTTP {response.status_code}",
                status=response.status_code,
                body=response.text[:500],
                method="PUT",
                url=upload.url,
            )
        return upload

    def list_models(self) -> list[dict[str, Any]]:
        """``GET /models``: every model ``POST /tasks`` takes, as the API describes it."""
        url = f"{self.base_url}/models"
        response = self._send_with_retries("GET", url, lambda: self._http.get(url))
        return _read(response, _models)

    def get_task(self, task_id: str) -> Task:
        """``GET /tasks/{taskId}`` (retried like the POST: it is safe to repeat)."""
        url = self._task_url(task_id)
        response = self._send_with_retries("GET", url, lambda: self._http.get(url))
        return _read(response, Task.from_json)

    def list_tasks(
        self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> TaskPage:
        """``GET /tasks``: one page of this client's tasks, newest first (images without links)."""
        url = f"{self.base_url}/tasks"
        params = {
            name: str(value)
            for name, value in (("status", status), ("limit", limit), ("cursor", cursor))
            if value is not None
        }
        response = self._send_with_retries("GET", url, lambda: self._http.get(url, params=params))
        return _read(response, TaskPage.from_json)

    def iter_pages(
        self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Iterator[TaskPage]:
        """Every page of ``GET /tasks`` (from ``cursor``'s), following ``nextCursor`` to the last page."""
        seen: set[str] = set()
        while True:
            page = self.list_tasks(status=status, limit=limit, cursor=cursor)
            yield page
            cursor = page.next_cursor
            if cursor is None:
                return
            if cursor in seen:  # a loop would never end: the API is not following its contract
                raise UnexpectedResponseError(
                    f"GET /tasks handed out a cursor it had given before ({cursor!r}): stopped there",
                    method="GET",
                    url=f"{self.base_url}/tasks",
                )
            seen.add(cursor)

    def delete_task(self, task_id: str) -> bool:
        """``DELETE /tasks/{taskId}``: the task and every stored version of its images. True when deleted;
        False when a retry found the task gone (the try whose answer was lost had deleted it)."""
        url = self._task_url(task_id)
        tries = 0

        def send() -> httpx.Response:
            nonlocal tries
            tries += 1
            return self._http.delete(url)

        response = self._send_with_retries("DELETE", url, send)
        if 200 <= response.status_code < 300:
            return True
        if response.status_code == 404 and tries > 1:
            return False
        _json_or_raise(response)  # raises the error the answer is
        raise AssertionError("unreachable")  # pragma: no cover

    def _task_url(self, task_id: str) -> str:
        if not task_id.strip():
            raise ValueError("the task id is empty")
        return f"{self.base_url}/tasks/{quote(task_id, safe='')}"

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
            tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:12]}.part"
            fh = tmp.open("xb")  # created as any file is, so the umask applies (mkstemp forces 0600)
            try:
                with fh:
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
        most ``max_attempts`` times (a 502 saying the upstream rejected the API's key is final). The
        last answer is returned whatever it is (the caller turns it into an error); the last network
        error is raised as :class:`ApiConnectionError`."""
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
                retryable = status == 429 or (status >= 500 and not _rejects_our_upstream_key(response))
                if not retryable or attempt >= self.max_attempts:
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


# ---------------------------------------------------------------------------------------------- helpers


def _models(body: Any) -> list[dict[str, Any]]:
    models = body.get("models") if isinstance(body, dict) else None
    if not isinstance(models, list) or not all(
        isinstance(m, dict) and isinstance(m.get("model"), str) for m in models
    ):
        raise UnexpectedResponseError("the models answer has no list of models", body=body)
    return models


def _read[T](response: httpx.Response, parse: Callable[[Any], T]) -> T:
    """A 2xx answer read by ``parse`` (a model's ``from_json``), any other as the error it is."""
    body = _json_or_raise(response)
    try:
        return parse(body)
    except UnexpectedResponseError as exc:
        request = response.request
        raise UnexpectedResponseError(
            f"{request.method} {request.url.path} answered {response.status_code}: {exc.message}",
            status=response.status_code,
            body=body,
            method=request.method,
            url=str(request.url),
        ) from None


def _json_or_raise(response: httpx.Response) -> Any:
    """The JSON object of a 2xx answer; any other answer raised as the typed error it is."""
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
    error = ErrorBody.from_json(body)
    message = error.message or response.text.strip()[:500] or response.reason_phrase
    common: dict[str, Any] = {"status": status, "body": body, "method": method, "url": url}
    match status:
        case 422 | 400 | 413:
            raise RequestValidationError(message, field_errors=list(error.errors), **common)
        case 402:
            raise InsufficientCreditsError(message, **common)
        case 403 | 401:
            raise ForbiddenError(message, **common)
        case 404:
            raise TaskNotFoundError(message, **common)
        case 409:
            raise ConflictError(message, **common)
        case 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise RateLimitedError(message, retry_after=retry_after, **common)
        case 502 if _rejects_our_upstream_key(response):
            raise UpstreamAuthError(message, **common)
        case 503:
            raise ServiceUnavailableError(message, **common)
        case _:
            raise UnexpectedResponseError(message, **common)


def normalize_base_url(url: str) -> str:
    """``https://x.execute-api.us-east-1.amazonaws.com/Prod/`` -> ``.../Prod`` (ValueError if not http(s))."""
    cleaned = (url or "").strip().rstrip("/")
    if not is_http_url(cleaned):
        raise ValueError(f"the API URL must look like http(s)://host[:port][/stage], got {url!r}")
    parts = urlsplit(cleaned)
    if parts.query or parts.fragment:
        raise ValueError(f"the API URL must not carry a query or fragment, got {url!r}")
    return cleaned


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


def _rejects_our_upstream_key(response: httpx.Response) -> bool:
    """A 502 in which the API says the image service rejected the deployment's own key: a
    configuration problem no retry can fix (a gateway's own 502 passes, and is retried)."""
    if response.status_code != 502:
        return False
    response.read()
    body = _body(response)
    message = body.get("message") if isinstance(body, dict) else None
    return isinstance(message, str) and "api key" in message.lower()


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text


def image_type(data: bytes) -> str | None:
    """image/png, image/jpeg or image/webp by the file's magic bytes; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None
