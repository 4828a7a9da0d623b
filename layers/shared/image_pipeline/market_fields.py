"""The kinds of input field a Market model takes, how each is checked, and how each reads as JSON Schema.

Plain Python (no pydantic): the callback, downloader and reconciler functions may import the registry
(``market_registry.py``) that is built from these. A field is an :class:`InputField`; checking a value
either returns the value to send upstream or raises :class:`FieldRefused` with a plain-English reason
that does not repeat the field's name (the caller puts ``input.<name>`` in front).

Kinds:

``text``        a string; optional enum, length limits in characters; a required text must not be blank
``integer``     a whole JSON number (not true/false); optional minimum and maximum
``number``      any finite JSON number (not true/false); optional minimum and maximum
``boolean``     true or false
``count``       a whole number the model takes **as a string** (``num_images: "4"``); the integer 4 is
                accepted too and sent as ``"4"``
``image_url``   one input image: an http(s) URL, ``upload:<uploadId>`` or ``task:<taskId>/<index>``
``image_urls``  an array of those, with item limits
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from image_pipeline.json_fields import kind as json_kind

FieldKind = Literal["text", "integer", "number", "boolean", "count", "image_url", "image_urls"]
IMAGE_URL_KINDS = frozenset({"image_url", "image_urls"})

MAX_URL_CHARS = 2048  # our own bound, as for the 4o and Flux Kontext image fields
_HTTP_URL = re.compile(r"^https?://[^\s/?#@]+[^\s]*$", re.IGNORECASE)
# References to an image this bundle holds (an upload, or a stored result); the API resolves them to
# presigned links before anything goes upstream.
_UPLOAD_REFERENCE = re.compile(r"^upload:[A-Za-z0-9_.-]{1,128}$")  # ids end in .png, .jpg or .webp
_TASK_REFERENCE = re.compile(r"^task:[A-Za-z0-9_-]{1,128}/(0|[1-9][0-9]{0,2})$")
REFERENCE_FORMS = "upload:<uploadId> or task:<taskId>/<index>"


class FieldRefused(ValueError):
    """A value that does not fit its field; the message says what would."""


@dataclass(frozen=True)
class InputField:
    """One field of a model's ``input`` object, as the model's documentation describes it."""

    kind: FieldKind
    description: str
    required: bool = False
    enum: tuple[str, ...] = ()
    min_length: int | None = None
    max_length: int | None = None
    min_items: int | None = None
    max_items: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    default: Any = None
    max_file_bytes: int | None = None  # an image URL field: the largest file the model takes

    @property
    def holds_image_urls(self) -> bool:
        return self.kind in IMAGE_URL_KINDS

    # ------------------------------------------------------------------ checking
    def check(self, value: Any) -> Any:
        """The value to send upstream, or FieldRefused saying what would fit."""
        match self.kind:
            case "text":
                return self._text(value)
            case "integer":
                return self._number(value, whole=True)
            case "number":
                return self._number(value, whole=False)
            case "boolean":
                if not isinstance(value, bool):
                    raise FieldRefused(f"must be true or false, not {json_kind(value)}")
                return value
            case "count":
                return self._count(value)
            case "image_url":
                return check_image_url(value)
            case "image_urls":
                return self._image_urls(value)
        raise AssertionError(f"unknown field kind {self.kind!r}")  # pragma: no cover

    def _text(self, value: Any) -> str:
        if not isinstance(value, str):
            raise FieldRefused(f"must be a string, not {json_kind(value)}")
        if not _is_valid_unicode(value):
            raise FieldRefused("holds a character that is not valid Unicode text (a lone surrogate)")
        if self.enum and value not in self.enum:
            raise FieldRefused(f"must be one of {_listed(self.enum)}; got {value!r}")
        if self.required and not value.strip():
            raise FieldRefused("must not be empty or blank")
        if self.min_length is not None and len(value) < self.min_length:
            raise FieldRefused(f"must be at least {self.min_length} characters long; got {len(value)}")
        if self.max_length is not None and len(value) > self.max_length:
            raise FieldRefused(f"must be at most {self.max_length} characters long; got {len(value)}")
        return value

    def _number(self, value: Any, *, whole: bool) -> int | float:
        wanted = "a whole number" if whole else "a number"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FieldRefused(f"must be {wanted}, not {json_kind(value)}")
        if whole and not isinstance(value, int):
            raise FieldRefused(f"must be a whole number; got {value!r}")
        if not math.isfinite(value):
            raise FieldRefused(f"must be a finite number; got {value!r}")
        low, high = self.minimum, self.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            raise FieldRefused(f"must be {_range(low, high)}; got {value!r}")
        return value

    def _count(self, value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # the documented form is a string: send "4" for 4
        if not isinstance(value, str):
            raise FieldRefused(
                f"must be a count written as a string ({_listed(self.enum)}), not {json_kind(value)}"
            )
        if value not in self.enum:
            raise FieldRefused(
                f"must be a count written as a string: one of {_listed(self.enum)}; got {value!r}"
            )
        return value

    def _image_urls(self, value: Any) -> list[str]:
        if not isinstance(value, list):
            raise FieldRefused(f"must be an array of image URLs, not {json_kind(value)}")
        if self.min_items is not None and len(value) < self.min_items:
            raise FieldRefused(f"must hold at least {_images(self.min_items)}; got {len(value)}")
        if self.max_items is not None and len(value) > self.max_items:
            raise FieldRefused(f"must hold at most {_images(self.max_items)}; got {len(value)}")
        checked = []
        for position, item in enumerate(value):
            try:
                checked.append(check_image_url(item))
            except FieldRefused as problem:
                raise FieldRefused(f"item {position}: {problem}") from None
        return checked

    # ------------------------------------------------------------------ JSON Schema
    def json_schema(self) -> dict[str, Any]:
        """This field as a JSON Schema (draft 2020-12) property."""
        schema: dict[str, Any] = {"description": self.description}
        match self.kind:
            case "text":
                schema["type"] = "string"
                if self.enum:
                    schema["enum"] = list(self.enum)
                if self.min_length is not None:
                    schema["minLength"] = self.min_length
                if self.max_length is not None:
                    schema["maxLength"] = self.max_length
            case "integer" | "number":
                schema["type"] = self.kind
                if self.minimum is not None:
                    schema["minimum"] = self.minimum
                if self.maximum is not None:
                    schema["maximum"] = self.maximum
            case "boolean":
                schema["type"] = "boolean"
            case "count":
                schema.update(type="string", enum=list(self.enum))
            case "image_url":
                schema.update(_image_url_schema())
            case "image_urls":
                schema.update(type="array", items=_image_url_schema())
                if self.min_items is not None:
                    schema["minItems"] = self.min_items
                if self.max_items is not None:
                    schema["maxItems"] = self.max_items
        if self.default is not None:
            schema["default"] = self.default
        if self.holds_image_urls:
            schema["x-image-input"] = True
        return schema


def check_image_url(value: Any) -> str:
    """An input image: an http(s) URL of at most MAX_URL_CHARS, or a reference to an image we hold."""
    if not isinstance(value, str):
        raise FieldRefused(
            f"must be an image URL (http or https) or {REFERENCE_FORMS}, not {json_kind(value)}"
        )
    if _UPLOAD_REFERENCE.match(value) or _TASK_REFERENCE.match(value):
        return value
    if len(value) > MAX_URL_CHARS:
        raise FieldRefused(f"must be a URL of at most {MAX_URL_CHARS} characters; got {len(value)}")
    if not _HTTP_URL.match(value):
        raise FieldRefused(f"must be an http or https URL, or {REFERENCE_FORMS}; got {_shortened(value)}")
    return value


def _image_url_schema() -> dict[str, Any]:
    return {
        "type": "string",
        "maxLength": MAX_URL_CHARS,
        "pattern": r"^(https?://\S+|upload:[A-Za-z0-9_.-]{1,128}|task:[A-Za-z0-9_-]{1,128}/[0-9]{1,3})$",
    }


def _is_valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _listed(values: tuple[str, ...]) -> str:
    return ", ".join(repr(value) for value in values)


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"from {_plain(low)} to {_plain(high)}"
    return f"at least {_plain(low)}" if low is not None else f"at most {_plain(high)}"


def _plain(number: float | None) -> str:
    return str(int(number)) if number is not None and float(number).is_integer() else str(number)


def _images(count: int) -> str:
    return "1 image" if count == 1 else f"{count} images"


def _shortened(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")
