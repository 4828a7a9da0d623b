"""Input images the bundle holds: uploads, and references that stand for a URL wherever an image URL goes.

- ``POST /uploads`` (:func:`new_upload`): a presigned S3 PUT for ``uploads/<owner>/<uploadId>``, signed
  with its Content-Type and Content-Length, so S3 itself takes only that type and that many bytes (at
  most UPLOAD_MAX_BYTES). The upload is recorded (owner, type, size) so that an unknown upload and one
  whose object is gone can be told apart; the bucket's lifecycle rule removes it after
  UploadRetentionDays.
- A reference: ``upload:<uploadId>`` or ``task:<taskId>/<index>`` (an image a task of this client
  stored), in ``filesUrl`` items, ``maskUrl``, ``inputImage`` and a Market model's image fields.
  :func:`resolve_inputs` checks that the caller owns it (another client's is 404, exactly as an unknown
  one), reads the object's current version, checks an upload's bytes (magic bytes, decodable, pixel cap)
  the first time that version is used (its fingerprint is kept on the upload's record; a stored image
  was checked when it was stored) and answers a presigned GET of exactly that version,
  valid INPUT_LINK_SECONDS: the only form in which an input of ours leaves the bundle. The bundle never
  fetches a URL the client gave.

Pure: the outside world is the :class:`InputObjects` port (S3 and the tasks table behind it,
adapters/input_store.py) and a function that checks image bytes.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from image_pipeline.errors import AwsFault, InputRejected, ReferenceNotFound
from image_pipeline.input_records import (
    ObjectVersion,
    UploadRecord,
    image_fields,
    is_reference,
    map_image_fields,
)
from image_pipeline.task_records import TaskRecord, TaskStatus, iso

# The types an upload may have, and the extension its key ends in (the 4o API wants one on the path).
UPLOAD_TYPES: dict[str, str] = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
UPLOAD_ID = re.compile(r"^[0-9a-f]{32}\.(png|jpg|webp)$")
REFERENCE = re.compile(
    r"^(?:upload:(?P<upload>[0-9a-f]{32}\.(?:png|jpg|webp))|task:(?P<task>[0-9a-f]{32})/(?P<index>0|[1-9][0-9]?))$"
)
UPLOAD_PREFIX = "uploads/"


def upload_key(owner: str, upload_id: str) -> str:
    return f"{UPLOAD_PREFIX}{owner}/{upload_id}"


class InputObjects(Protocol):
    """S3 and the tasks table, as the references need them."""

    def presign_upload(self, key: str, content_type: str, size: int, expires_seconds: int) -> str: ...
    def record_upload(self, upload: UploadRecord, now: datetime, expires_at: datetime) -> None: ...
    def get_upload(self, upload_id: str) -> UploadRecord | None: ...
    def mark_upload_checked(self, upload_id: str, fingerprint: str, problem: str | None) -> None: ...
    def get_task(self, task_id: str) -> TaskRecord | None: ...
    def current_version(self, key: str) -> ObjectVersion | None: ...
    def read_version(self, item: ObjectVersion) -> bytes | None: ...
    def presigned_input(self, item: ObjectVersion, expires_seconds: int) -> str: ...


# -- POST /uploads ----------------------------------------------------------------------------------


def new_upload(
    content_type: str,
    size: int,
    owner: str,
    *,
    objects: InputObjects,
    max_bytes: int,
    link_seconds: int,
    retention: timedelta,
    now: datetime,
) -> dict[str, Any]:
    """The answer of POST /uploads: the upload's id and the presigned PUT that stores it."""
    extension = UPLOAD_TYPES.get(content_type)
    if extension is None:
        raise InputRejected("contentType", f"must be one of {', '.join(UPLOAD_TYPES)}")
    if not 0 < size <= max_bytes:
        raise InputRejected("bytes", f"must be from 1 to {max_bytes} (UPLOAD_MAX_BYTES)")
    upload_id = f"{secrets.token_hex(16)}.{extension}"
    key = upload_key(owner, upload_id)
    objects.record_upload(UploadRecord(upload_id, owner, content_type, size), now, now + retention)
    url = objects.presign_upload(key, content_type, size, link_seconds)
    return {
        "uploadId": upload_id,
        "reference": f"upload:{upload_id}",
        "upload": {
            "method": "PUT",
            "url": url,
            "headers": {"Content-Type": content_type, "Content-Length": str(size)},
        },
        "expiresAt": iso(now + timedelta(seconds=link_seconds)),
    }


# -- references -------------------------------------------------------------------------------------


@dataclass(slots=True)
class ResolvedInputs:
    """What the references of a request stand for: field -> presigned link; which reference each was."""

    links: dict[str, str] = field(default_factory=dict)
    used: list[dict[str, str]] = field(default_factory=list)


NO_INPUTS = ResolvedInputs()


def with_references(
    fields: dict[str, Any], used: list[dict[str, str]], market_fields: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The request's fields as recorded with the task: each link put back as the reference it stands
    for (a presigned link is a credential for an hour; the record keeps what the client wrote)."""
    references = {entry["field"]: entry["ref"] for entry in used}
    return map_image_fields(fields, market_fields, lambda field, value: references.get(field, value))


def resolve_inputs(
    request: Mapping[str, Any],
    owner: str,
    *,
    objects: InputObjects,
    check_image: Callable[[bytes, str], str | None],
    link_seconds: int,
    market_fields: tuple[str, ...] = (),
    byte_limits: Mapping[str, int] | None = None,
) -> ResolvedInputs:
    """Every reference of the request, checked and turned into a presigned GET of its object version.

    ReferenceNotFound (404) for a reference this client does not own, InputRejected (422) for one
    whose object is gone, larger than the model takes (``byte_limits``, by field: ``filesUrl``,
    ``input.image_urls``) or whose bytes are not an image. ``check_image(bytes, content_type)``
    returns why bytes are refused (not an image of that type), or None."""
    resolved = ResolvedInputs()
    found: dict[str, tuple[ObjectVersion, str]] = {}  # reference -> its object and link: resolved once
    for name, value in image_fields(request, market_fields):
        if not is_reference(value):
            continue
        if value in found:
            item, link = found[value]
            _within_limit(name, value, item, byte_limits)  # this field may take less than the first
        else:
            item, upload = _locate(name, value, owner, objects)
            _within_limit(name, value, item, byte_limits)  # before reading an upload to check it
            if upload is not None:
                _check_upload(name, value, upload, item, objects, check_image)
            link = objects.presigned_input(item, link_seconds)
            found[value] = (item, link)
        resolved.links[name] = link
        resolved.used.append({"field": name, "ref": value})
    return resolved


def _within_limit(name: str, value: str, item: ObjectVersion, byte_limits: Mapping[str, int] | None) -> None:
    limit = (byte_limits or {}).get(name.split("[", 1)[0])
    if limit is not None and item.size > limit:
        raise InputRejected(
            name, f"{value} is {item.size} bytes: this model takes images of at most {limit} bytes here"
        )


def _check_upload(
    name: str,
    value: str,
    upload: UploadRecord,
    item: ObjectVersion,
    objects: InputObjects,
    check_image: Callable[[bytes, str], str | None],
) -> None:
    """An upload's bytes, checked once per object version (the client wrote them, not the bundle): an
    image of the type it was uploaded as. The verdict is kept on the upload's record, a refusal too."""
    if item.size <= 0:
        raise InputRejected(name, f"{value} is empty: upload the image first")
    if upload.checked == item.fingerprint:
        problem = upload.problem
    else:
        body = objects.read_version(item)
        if body is None:  # PUT again while this request read it
            raise InputRejected(name, f"{value} changed while it was checked: send the request again")
        problem = check_image(body, upload.content_type)
        with contextlib.suppress(AwsFault):  # remembering saves a later read; not worth a refusal
            objects.mark_upload_checked(upload.upload_id, item.fingerprint, problem)
    if problem is not None:
        raise InputRejected(name, f"{value} is not a usable image: {problem}")


def _locate(
    name: str, value: str, owner: str, objects: InputObjects
) -> tuple[ObjectVersion, UploadRecord | None]:
    """The object a reference names, and its upload record when it is an upload."""
    parsed = REFERENCE.match(value)
    if parsed is None:
        raise ReferenceNotFound(name, value)
    if parsed["upload"]:
        upload = objects.get_upload(parsed["upload"])
        if upload is None or upload.owner != owner:
            raise ReferenceNotFound(name, value)
        item = objects.current_version(upload_key(owner, upload.upload_id))
        if item is None:
            raise InputRejected(
                name, f"{value} has expired or was never uploaded: upload it again (POST /uploads)"
            )
        return item, upload
    task = objects.get_task(parsed["task"])
    if task is None or task.owner != owner or task.status is TaskStatus.DELETED:
        raise ReferenceNotFound(name, value)
    stored = task.images.get(parsed["index"])
    if stored is None:
        raise ReferenceNotFound(name, value)
    item = objects.current_version(stored.key)
    if item is None:
        raise InputRejected(name, f"{value} is no longer stored")
    return item, None
