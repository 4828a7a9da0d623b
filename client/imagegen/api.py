"""A small typed client for the bundle's HTTPS API (API Gateway + Lambda in front of the 4o Image and Flux
Kontext APIs).

The contract (``openapi.json`` at the top of the repository, also served at ``GET /openapi.json``):

* ``POST {api}/tasks`` submits a generation on a ``model``: gpt-4o-image (the default: a prompt, reference
  images, or both) or flux-kontext-pro / flux-kontext-max (a prompt, optionally an ``inputImage`` to edit),
  each with its own fields; optionally a ``webhookUrl`` told when it ends. It answers
  ``202 {"taskId", "status": "submitted" | "submitting"}`` (taskId is the bundle's own id).
* ``GET {api}/tasks/{taskId}`` answers the task's model, status, progress, error and stored images
  (each with a short-lived presigned ``url`` and the ``sha256`` of the stored bytes).
* ``GET {api}/tasks?status=&limit=&cursor=`` answers one page of the caller's own tasks, newest first:
  ``{"tasks": [...], "nextCursor": ...}``.
* ``DELETE {api}/tasks/{taskId}`` deletes a finished task and its images: ``204``; ``409`` while it runs.

Every non-2xx answer (``{"message", "errors": [{"field", "message"}]}``) becomes a typed :class:`ApiError`
subclass, so callers (the CLI) can explain each failure without looking at status codes themselves.
POSTs carry an ``Idempotency-Key`` that is reused when the client retries after a network error, a 5xx or
a 429, so a retry never pays twice.

The code lives in :mod:`imagegen.client` (the client), :mod:`imagegen.request` and :mod:`imagegen.responses`
(requests and answers, held to ``openapi.json`` by ``tests/client/test_imagegen_contract.py``) and
:mod:`imagegen.errors` (the exceptions); this module is the one import path for all of it.
"""

from __future__ import annotations

from imagegen.client import (
    API_KEY_HEADER,
    DEFAULT_API_URL,
    IDEMPOTENCY_HEADER,
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
    ConflictError,
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
    ASPECT_RATIOS,
    DEFAULT_ASPECT_RATIO,
    DEFAULT_MODEL,
    DEFAULT_OUTPUT_FORMAT,
    DEFAULT_SAFETY_TOLERANCE,
    DEFAULT_SIZE,
    FALLBACK_MODELS,
    FLUX_FIELDS,
    FLUX_MODELS,
    FOUR_O_FIELDS,
    FOUR_O_MODEL,
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
    TERMINAL_STATUSES,
    VARIANTS,
    DownloadedImage,
    ErrorBody,
    Notification,
    RetryNotice,
    Submission,
    Task,
    TaskError,
    TaskImage,
    TaskPage,
    TaskRequest,
    Upload,
    is_http_url,
    is_reference,
)

__all__ = [
    "API_KEY_HEADER",
    "ASPECT_RATIOS",
    "DEFAULT_API_URL",
    "DEFAULT_ASPECT_RATIO",
    "DEFAULT_MODEL",
    "DEFAULT_OUTPUT_FORMAT",
    "DEFAULT_SAFETY_TOLERANCE",
    "DEFAULT_SIZE",
    "FALLBACK_MODELS",
    "FLUX_FIELDS",
    "FLUX_MODELS",
    "FOUR_O_FIELDS",
    "FOUR_O_MODEL",
    "IDEMPOTENCY_HEADER",
    "LIST_LIMIT_DEFAULT",
    "LIST_LIMIT_MAX",
    "LIST_LIMIT_MIN",
    "MAX_ATTEMPTS",
    "MAX_EDIT_SAFETY_TOLERANCE",
    "MAX_FILES",
    "MAX_RETRY_DELAY",
    "MAX_SAFETY_TOLERANCE",
    "MAX_WATERMARK_CHARS",
    "MODELS",
    "NOTIFICATION_STATES",
    "OUTPUT_FORMATS",
    "SIZES",
    "TASK_STATUSES",
    "TERMINAL_STATUSES",
    "USER_AGENT",
    "VARIANTS",
    "ApiConnectionError",
    "ApiError",
    "ChecksumMismatchError",
    "ConflictError",
    "DownloadError",
    "DownloadedImage",
    "ErrorBody",
    "FieldError",
    "ForbiddenError",
    "ImageApiClient",
    "InsufficientCreditsError",
    "Notification",
    "RateLimitedError",
    "RequestValidationError",
    "RetryNotice",
    "ServiceUnavailableError",
    "Submission",
    "Task",
    "TaskError",
    "TaskImage",
    "TaskNotFoundError",
    "TaskPage",
    "TaskRequest",
    "UnexpectedResponseError",
    "Upload",
    "UpstreamAuthError",
    "is_http_url",
    "is_reference",
    "normalize_base_url",
    "parse_retry_after",
]
