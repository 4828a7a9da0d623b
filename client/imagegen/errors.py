"""Every failure of the bundle's API as a typed exception, so callers explain it without status codes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
    """422 (or 400, 413): the request was rejected, field by field when the API says which."""

    def __init__(self, message: str, *, field_errors: list[FieldError], **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.field_errors = field_errors


class InsufficientCreditsError(ApiError):
    """402: the upstream account has no credits left for this generation."""


class ForbiddenError(ApiError):
    """403 from API Gateway: the x-api-key header is missing or wrong."""


class TaskNotFoundError(ApiError):
    """404: no such task (for this client: another client's task is exactly an unknown one)."""


class ConflictError(ApiError):
    """409: the task is still running (DELETE), or the same Idempotency-Key is still being processed."""


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
