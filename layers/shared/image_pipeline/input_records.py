"""Input images we hold, as the reference logic (logic/inputs.py) and its adapter (adapters/input_store.py)
pass them: an upload as recorded, an object version as S3 holds it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# What the published schema takes as an input reference (logic/inputs.py checks each one further).
REFERENCE_PATTERN = r"^(upload:[A-Za-z0-9_.-]{1,128}|task:[A-Za-z0-9_-]{1,128}/[0-9]{1,3})$"
REFERENCE_FORMS = "upload:<uploadId> or task:<taskId>/<index>"


def is_reference(value: Any) -> bool:
    """Whether an image field's value is a reference to an image we hold rather than a URL."""
    return isinstance(value, str) and value.startswith(("upload:", "task:"))


IMAGE_FIELDS = ("filesUrl", "maskUrl", "inputImage")  # the 4o and Flux Kontext fields of image URLs


def map_image_fields(
    request: Mapping[str, Any], market_fields: tuple[str, ...], replace: Callable[[str, Any], Any]
) -> dict[str, Any]:
    """A copy of a request (as the client sends it, or as it goes upstream) with each input image URL
    or reference replaced by ``replace(field, value)``, the field named as a client reads it:
    ``filesUrl[1]``, ``maskUrl``, ``inputImage``, ``input.image_urls[0]`` (a Market model's image
    fields, given by the caller). The one place that knows where a request's images are."""

    def each(field: str, value: Any) -> Any:
        if isinstance(value, list):
            return [replace(f"{field}[{index}]", item) for index, item in enumerate(value)]
        return replace(field, value)

    mapped = dict(request)
    for name in IMAGE_FIELDS:
        if mapped.get(name) is not None:
            mapped[name] = each(name, mapped[name])
    given = mapped.get("input")
    if market_fields and isinstance(given, Mapping):
        mapped["input"] = {
            name: each(f"input.{name}", value) if name in market_fields and value is not None else value
            for name, value in given.items()
        }
    return mapped


def image_fields(request: Mapping[str, Any], market_fields: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """(field, value) of every input image a request names, in map_image_fields' order and names."""
    found: list[tuple[str, Any]] = []

    def note(field: str, value: Any) -> Any:
        found.append((field, value))
        return value

    map_image_fields(request, market_fields, note)
    return found


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
