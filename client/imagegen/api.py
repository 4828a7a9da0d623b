"""A small typed client for the bundle's HTTPS API (API Gateway + Lambda in front of the 4o Image API).

The contract:

* ``POST {api}/tasks`` submits a generation and answers ``202 {"taskId", "status": "submitted"}``.
* ``GET {api}/tasks/{taskId}`` answers the task's status, progress, error and stored images
  (each with a short-lived presigned ``url`` and the ``sha256`` of the stored bytes).

Every non-2xx answer becomes a typed :class:`ApiError` subclass, so callers (the CLI) can explain
each failure without looking at status codes themselves. POSTs carry an ``Idempotency-Key`` that is
reused when the client retries after a network error, a 5xx or a 429, so a retry never pays twice.

The code lives in :mod:`imagegen.client` (the client), :mod:`imagegen.models` (requests and answers) and
:mod:`imagegen.errors` (the exceptions); this module is the one import path for all of it.
"""

from __future__ import annotations

from imagegen.client import (
    DEFAULT_API_URL,
    MAX_ATTEMPTS,
    MAX_RETRY_DELAY,
    USER_AGENT,
    ImageApiClient,
    normalize_base_url,
    parse_retry_after,
)
from imagegen.errors import (
    ApiConnectionError,
    ApiError,
    ChecksumMismatchError,
    DownloadError,
    FieldError,
    ForbiddenError,
    InsufficientCreditsError,
    RateLimitedError,
    RequestValidationError,
    ServiceUnavailableError,
    TaskNotFoundError,
    UnexpectedResponseError,
    UpstreamAuthError,
)
from imagegen.models import (
    FALLBACK_MODELS,
    MAX_FILES,
    SIZES,
    TERMINAL_STATUSES,
    VARIANTS,
    DownloadedImage,
    RetryNotice,
    Submission,
    Task,
    TaskError,
    TaskImage,
    TaskRequest,
    is_http_url,
)

__all__ = [
    "DEFAULT_API_URL",
    "FALLBACK_MODELS",
    "MAX_ATTEMPTS",
    "MAX_FILES",
    "MAX_RETRY_DELAY",
    "SIZES",
    "TERMINAL_STATUSES",
    "USER_AGENT",
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
    "is_http_url",
    "normalize_base_url",
    "parse_retry_after",
]
