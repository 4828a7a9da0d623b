"""Our own records: the task as we store and report it, and the messages on our queues.

Plain dataclasses, not pydantic: every function imports these, and pydantic's import alone costs about
as much as the rest of a function's cold start. What they read comes from our own writes (DynamoDB
items, queue messages), so reading checks shape and types and says what was wrong; the client-facing
requests, which need a published schema, stay pydantic (client_requests, client_api, upstream_requests).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, Self

# Failure messages come from outside (the upstream's callback, a fetch error): kept short when stored.
MAX_ERROR_MESSAGE_CHARS = 500
MAX_IMAGES_PER_TASK = 16


class TaskStatus(StrEnum):
    SUBMITTING = "submitting"  # recorded under our id; the upstream has not (yet) confirmed it took it
    SUBMITTED = "submitted"  # accepted upstream, no callback yet
    DOWNLOADING = "downloading"  # callback said success; images are being copied to S3
    STORED = "stored"  # every image is in S3
    FAILED = "failed"  # the upstream, or a download, failed for good
    DELETED = "deleted"  # its client deleted it: images gone, only the id is kept (late callbacks)


# The failure of a task whose submit was never confirmed: the only end a late callback may still undo.
SUBMIT_UNCONFIRMED = "submit_unconfirmed"


class MalformedRecord(ValueError):
    """A stored item or queue message that does not have the shape we write: says which fields and why."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def image_key(task_id: str, index: int, extension: str) -> str:
    """Where image `index` of a task is stored in the bucket."""
    return f"images/{task_id}/{index}.{extension}"


# What each annotation used below accepts when read back (bool is an int to Python, never to us).
_ACCEPTS: dict[str, Callable[[Any], bool]] = {
    "str": lambda value: isinstance(value, str),
    "str | None": lambda value: value is None or isinstance(value, str),
    "int": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "int | str": lambda value: isinstance(value, int | str) and not isinstance(value, bool),
    "bool": lambda value: isinstance(value, bool),
    "dict[str, Any]": lambda value: isinstance(value, dict),
    "list[str]": lambda value: isinstance(value, list) and all(isinstance(item, str) for item in value),
    "list[dict[str, str]]": lambda value: (
        isinstance(value, list) and all(isinstance(item, dict) for item in value)
    ),
}


def _read_fields[RecordT](
    cls: type[RecordT],
    data: Mapping[str, Any],
    *,
    what: str,
    extra: bool = True,
    converted: Mapping[str, Any] | None = None,
) -> RecordT:
    """Build `cls` from the fields of `data` it declares, checking that each is present and of its type.

    `converted` holds fields the caller has already turned into their types (enums, nested records).
    """
    if not isinstance(data, Mapping):
        raise MalformedRecord(f"{what} must be an object, got {type(data).__name__}")
    converted = converted or {}
    declared_fields = fields(cls)  # type: ignore[arg-type]
    names = {declared.name for declared in declared_fields}
    problems = [] if extra else [f"{name}: unexpected field" for name in data if name not in names]
    values: dict[str, Any] = dict(converted)
    for declared in declared_fields:
        if declared.name in converted:
            continue
        if declared.name not in data:
            if declared.default is MISSING and declared.default_factory is MISSING:
                problems.append(f"{declared.name}: is required")
            continue
        value = data[declared.name]
        accepts = _ACCEPTS.get(str(declared.type))
        if accepts is not None and not accepts(value):
            problems.append(f"{declared.name}: must be {declared.type}, got {type(value).__name__}")
        values[declared.name] = value
    if problems:
        raise MalformedRecord(f"{what} is malformed: {'; '.join(problems)}")
    return cls(**values)


def _decode_message[RecordT](cls: type[RecordT], body: str | bytes) -> RecordT:
    """One queue message: a JSON object with exactly the fields of `cls`."""
    what = f"{cls.__name__} message"
    return _read_fields(cls, _message_document(body, what), what=what, extra=False)


def _message_document(body: str | bytes, what: str) -> dict[str, Any]:
    """A queue message's JSON object, or MalformedRecord saying why it is not one."""
    try:
        document = json.loads(body)
    except ValueError as error:
        raise MalformedRecord(f"{what} is not JSON: {error}") from None
    except RecursionError:  # "[" * 100000: json's decoder recurses once per level
        raise MalformedRecord(f"{what} nests too deeply to be one of ours") from None
    if not isinstance(document, dict):
        raise MalformedRecord(f"{what} must be a JSON object, got {type(document).__name__}")
    return document


def _encode_message(values: dict[str, Any]) -> str:
    # Compact and UTF-8 as it was with pydantic: message bodies stay byte for byte what they were.
    return json.dumps(values, separators=(",", ":"), ensure_ascii=False)


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


@dataclass(slots=True)
class TaskError:
    """Why a task failed: the upstream's code or ours (download_rejected ...), and a short message."""

    code: int | str
    message: str

    def __post_init__(self) -> None:
        if len(self.message) > MAX_ERROR_MESSAGE_CHARS:
            self.message = self.message[: MAX_ERROR_MESSAGE_CHARS - 1] + "…"

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class Reopen:
    """An outcome that comes after the task ended submit_unconfirmed: what reopening it must reset."""

    webhook: bool  # the task has a webhook, whose notification starts again


@dataclass(slots=True)
class StoredImage:
    """One image copied into the bucket: where, what type, how big, its sha256."""

    index: int
    key: str
    contentType: str
    bytes: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


EVENT_SOURCE = "image-pipeline"  # the source of every event on the bus


@dataclass(slots=True)
class Notification:
    """How the client's webhook for an ended task is getting on."""

    state: Literal["pending", "delivered", "failed"] = "pending"
    attempts: int = 0
    lastError: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class NotifyTask:
    """One SQS message on the notification queue: tell the world that this task ended."""

    notifyTask: str  # the taskId

    @classmethod
    def from_message(cls, body: str | bytes) -> Self:
        return _decode_message(cls, body)

    def to_message(self) -> str:
        return _encode_message(asdict(self))


@dataclass(slots=True, kw_only=True)
class TaskRecord:
    """One item of the tasks table (pk = "task#<taskId>"): `taskId` is ours, minted at submit."""

    taskId: str
    status: TaskStatus
    upstreamTaskId: str | None = None  # the upstream's id, once its generate reply or callback told us
    tokenHash: str | None = None  # SHA-256 of the task's callback capability (the token in its URL)
    submissionId: str | None = None  # only on records written before ids were ours (see upstream_id)
    owner: str | None = None  # the client app (API key id) that submitted it
    idempotencyKey: str | None = None  # the client's Idempotency-Key, when it sent one
    options: dict[str, Any] = field(default_factory=dict)
    imagesExpected: int = 0
    storedCount: int = 0
    images: dict[str, StoredImage] = field(default_factory=dict)
    resultUrls: list[str] = field(default_factory=list)
    jobsEnqueued: bool = False
    enqueueFailed: bool = False
    error: TaskError | None = None
    createdAt: str
    updatedAt: str
    callbackAt: str | None = None
    nextCheckAt: str | None = None  # when the reconciler looks at it next; absent once it has ended
    checks: int = 0  # reconciler visits that found nothing to do
    requeues: int = 0  # reconciler rounds that re-queued missing images
    lastDownloadError: str | None = None
    progress: float | None = None  # the upstream's last reported progress (cached for pollers)
    webhookUrl: str | None = None  # where the client asked to be told when the task ends
    notification: Notification | None = None  # the webhook's delivery, when one was asked for
    notifyPending: bool = False  # ended, and its notify message is not yet known to be queued
    eventPublished: bool = False
    reopened: int = 0  # how often a late callback moved the task on after it ended submit_unconfirmed
    inputs: list[dict[str, str]] = field(default_factory=list)  # references used: {"field", "ref"}

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> TaskRecord:
        """A table item (numbers already plain), ignoring the table's own attributes (pk, ttl, gsi keys)."""
        where = f"task item {item.get('pk', '?')}"
        if "status" not in item:
            raise MalformedRecord(f"{where} is malformed: status: is required")
        try:
            status = TaskStatus(item["status"])
            progress = float(item["progress"]) if item.get("progress") is not None else None
        except (TypeError, ValueError) as problem:
            raise MalformedRecord(f"{where} is malformed: {problem}") from None
        stored_images = item.get("images") or {}
        if not isinstance(stored_images, Mapping):
            raise MalformedRecord(f"{where} is malformed: images: must be an object")
        images = {
            index: _read_fields(StoredImage, image, what=f"{where} image {index}")
            for index, image in stored_images.items()
        }
        stored_error = item.get("error")
        notification = item.get("notification")
        converted = {
            "status": status,
            "progress": progress,
            "images": images,
            "error": _read_fields(TaskError, stored_error, what=f"{where} error")
            if stored_error is not None
            else None,
            "notification": _read_fields(Notification, notification, what=f"{where} notification")
            if notification is not None
            else None,
        }
        return _read_fields(cls, item, what=where, converted=converted)

    @property
    def upstream_id(self) -> str | None:
        """The upstream's id of this task; None while it is unknown (submitting, or never confirmed).

        A record written before task ids were ours carries the capability's `submissionId`, and its
        taskId is the upstream's own.
        """
        if self.upstreamTaskId:
            return self.upstreamTaskId
        return self.taskId if self.submissionId else None

    @property
    def model(self) -> str:
        """gpt-4o-image, or the Flux Kontext model its options name."""
        return str(self.options.get("model") or "gpt-4o-image")

    def missing_indexes(self) -> list[int]:
        return [index for index in range(self.imagesExpected) if str(index) not in self.images]

    def stored_images(self) -> list[StoredImage]:
        return sorted(self.images.values(), key=lambda image: image.index)


@dataclass(slots=True)
class DownloadJob:
    """One SQS message: copy result image `index` of `taskId` from `url` into S3."""

    taskId: str
    index: int
    url: str
    # The result URL this job copies, when `url` is a fresh link the reconciler minted for it.
    sourceUrl: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.index < MAX_IMAGES_PER_TASK:
            raise MalformedRecord(
                f"DownloadJob index: must be 0 to {MAX_IMAGES_PER_TASK - 1}, got {self.index}"
            )

    @classmethod
    def from_message(cls, body: str | bytes) -> Self:
        return _decode_message(cls, body)

    def to_message(self) -> str:
        return _encode_message(_without_none(asdict(self)))

    @property
    def result_url(self) -> str:
        return self.sourceUrl or self.url


@dataclass(frozen=True, slots=True)
class Claim:
    """An Idempotency-Key claimed earlier: the task it stands for and the request it came with."""

    task_id: str
    request_hash: str


@dataclass(slots=True, kw_only=True)
class ConfirmSubmit:
    """One SQS message (the API's outbox): the upstream accepted task `confirmTask` as `upstreamTaskId`,
    but the API could not write that down (DynamoDB kept failing); the downloader does."""

    confirmTask: str  # our taskId
    upstreamTaskId: str
    nextCheckAt: str

    @classmethod
    def from_message(cls, body: str | bytes) -> Self:
        return _decode_message(cls, body)

    def to_message(self) -> str:
        return _encode_message(asdict(self))


def download_queue_message(body: str | bytes) -> DownloadJob | ConfirmSubmit:
    """One message of the download queue, read once and told apart by a field: the API's outbox
    (ConfirmSubmit) has `confirmTask`; any other is a DownloadJob, refused by its fields if it is not one."""
    document = _message_document(body, "download queue message")
    if "confirmTask" in document:
        return _read_fields(ConfirmSubmit, document, what="ConfirmSubmit message", extra=False)
    return _read_fields(DownloadJob, document, what="DownloadJob message", extra=False)
