"""Input images we hold, as the reference logic (logic/inputs.py) and its adapter (adapters/input_store.py)
pass them: an upload as recorded, an object version as S3 holds it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# What the published schema takes as an input reference (logic/inputs.py checks each one further).
REFERENCE_PATTERN = r"^(upload:[A-Za-z0-9_.-]{1,128}|task:[A-Za-z0-9_-]{1,128}/[0-9]{1,3})$"
REFERENCE_FORMS = "upload:<uploadId> or task:<taskId>/<index>"


def is_reference(value: Any) -> bool:
    """Whether an image field's value is a reference to an image we hold rather than a URL."""
    return isinstance(value, str) and value.startswith(("upload:", "task:"))


@dataclass(frozen=True, slots=True)
class ObjectVersion:
    """An object as S3 holds it now: its key, the version to hand out (None: an unversioned bucket)."""

    key: str
    version_id: str | None
    content_type: str
    size: int
    etag: str = ""

    @property
    def fingerprint(self) -> str:
        """What tells this object's bytes from any other's at the key: its version and its ETag (an
        unversioned bucket keeps the version "null" across overwrites; the ETag still changes)."""
        return f"{self.version_id or 'null'}/{self.etag}"


@dataclass(frozen=True, slots=True)
class UploadRecord:
    """An upload POST /uploads issued: its id, its client, the type and size its PUT was signed for."""

    upload_id: str
    owner: str
    content_type: str
    size: int
    checked: str | None = None  # the fingerprint of the object whose bytes were checked
    problem: str | None = None  # ... and why they were refused (None: an image of its type)
