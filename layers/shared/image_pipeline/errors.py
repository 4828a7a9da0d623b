"""Typed errors: what went wrong upstream or in our own rules, each carrying what a caller can act on."""

from __future__ import annotations


class UpstreamError(Exception):
    """The upstream answered with an error envelope (or not at all)."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(
            f"upstream error {code}: {message}" if code is not None else f"upstream error: {message}"
        )
        self.code = code
        self.message = message


class UpstreamBadRequest(UpstreamError):
    """400 / 404 / 422: the upstream refused the request's content."""


class UpstreamUnauthorized(UpstreamError):
    """401: the upstream rejected our API key (the operator's problem, never the client's)."""


class InsufficientCredits(UpstreamError):
    """402: the account has run out of credits."""


class RateLimited(UpstreamError):
    """429: over the upstream's rate limit; `retry_after` seconds until it is worth trying again."""

    def __init__(self, code: int | None, message: str, retry_after: int) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after


class GenerateShareExceeded(RateLimited):
    """One client has used its share (CLIENT_GENERATE_SHARE_PERCENT) of the deployment's generate window."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(429, message, retry_after)


class DailyImageLimitReached(RateLimited):
    """One client has asked for its CLIENT_DAILY_IMAGES images today (UTC)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(429, message, retry_after)


class UpstreamUnavailable(UpstreamError):
    """455 maintenance, 5xx, 505 feature disabled, 550 queue full, timeouts and network errors."""


class UpstreamNoAnswer(UpstreamUnavailable):
    """The request went out but no definite answer came back (a timeout, a connection lost after
    sending, a 5xx or success without a readable envelope): the upstream may have acted on it."""


class AwsFault(RuntimeError):
    """An AWS call failed past the SDK's own retries: a throttle, a 5xx, an endpoint out of reach, a
    table or queue that is not there, a permission missing. The adapters raise it in place of botocore's
    errors (image_pipeline.adapters.aws.AwsAdapter), so a handler answers 503, or lets its message come
    back, without knowing the SDK. `code` is AWS's error code (ProvisionedThroughputExceededException,
    AccessDenied...) or, for a fault before any answer, botocore's name for it (EndpointConnectionError);
    the botocore error is its __cause__."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"AWS fault {code}: {message}")
        self.code = code
        self.message = message


class TaskNotFound(Exception):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} not found")
        self.task_id = task_id


class CallbackRejected(Exception):
    """A callback that cannot be authenticated or parsed; nothing was changed."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class EnqueueError(RuntimeError):
    """Some download jobs could not be sent; the caller must not mark them enqueued."""


class ImageDeletionError(RuntimeError):
    """S3 refused to delete some versions; the task is left as it was so the delete can be retried."""


class InvalidIdempotencyKey(ValueError):
    """An Idempotency-Key header that is not 1 to 255 printable characters."""


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was used before, by the same client, with a different request body."""


class IdempotencyKeyTaskDeleted(Exception):
    """The task an Idempotency-Key made is deleted (by its client, or withdrawn when the upstream
    refused it and the key could not be freed): a retry cannot answer with it."""

    def __init__(self, task_id: str) -> None:
        super().__init__(task_id)
        self.task_id = task_id


class TaskStillRunning(Exception):
    """DELETE of a task that is still submitted or downloading."""


class InvalidCursor(ValueError):
    """A list cursor that this client was not given."""


class WebhookUrlError(ValueError):
    """A webhook URL that must not be called; ``reason`` as in safe_fetch (``address_blocked``...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ReferenceNotFound(LookupError):
    """An input reference (``upload:<id>``, ``task:<id>/<index>``) this client does not own: unknown, or
    another client's, told apart by nothing (404)."""

    def __init__(self, field: str, reference: str) -> None:
        super().__init__(f"{field}: {reference} not found")
        self.field = field
        self.reference = reference


class InputRejected(ValueError):
    """An input the API refuses (422) naming its field: an upload gone or never made, bytes that are not
    an image, an upload request of a type or size it does not take."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
