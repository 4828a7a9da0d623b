"""The request of ``POST /tasks`` (``TaskRequest``): each model's fields, limits and checks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from imagegen.errors import FieldError

# -- the request (TaskRequest): which model, and that model's fields
FOUR_O_MODEL: Final = "gpt-4o-image"
FLUX_MODELS: Final = ("flux-kontext-pro", "flux-kontext-max")
MODELS: Final = (FOUR_O_MODEL, *FLUX_MODELS)
DEFAULT_MODEL: Final = FOUR_O_MODEL
# gpt-4o-image
SIZES: Final = ("1:1", "3:2", "2:3")
DEFAULT_SIZE: Final = "1:1"
VARIANTS: Final = (1, 2, 4)
FALLBACK_MODELS: Final = ("GPT_IMAGE_1", "FLUX_MAX")
MAX_FILES: Final = 5
# flux-kontext-pro, flux-kontext-max
ASPECT_RATIOS: Final = ("21:9", "16:9", "4:3", "1:1", "3:4", "9:16")
DEFAULT_ASPECT_RATIO: Final = "16:9"
OUTPUT_FORMATS: Final = ("jpeg", "png")
DEFAULT_OUTPUT_FORMAT: Final = "jpeg"
MAX_SAFETY_TOLERANCE: Final = 6
MAX_EDIT_SAFETY_TOLERANCE: Final = 2  # with an inputImage
DEFAULT_SAFETY_TOLERANCE: Final = 2
MAX_WATERMARK_CHARS: Final = 200
# each model's own request fields (the API's names): another model's field is refused
FOUR_O_FIELDS: Final = (
    "size",
    "filesUrl",
    "maskUrl",
    "nVariants",
    "isEnhance",
    "enableFallback",
    "fallbackModel",
)
FLUX_FIELDS: Final = (
    "aspectRatio",
    "inputImage",
    "outputFormat",
    "enableTranslation",
    "promptUpsampling",
    "safetyTolerance",
    "watermark",
)
# both
MAX_PROMPT_CHARS: Final = 5000
# A character that is not blank, spelled out: \S means different things in Python and in JSON Schema's
# ECMAScript (U+001C-U+001F, U+0085, U+FEFF); this is the API's own class (openapi.json).
PROMPT_PATTERN: Final = (
    "[^\\u0009\\u000a\\u000b\\u000c\\u000d\\u001c\\u001d\\u001e\\u001f\\u0020\\u0085\\u00a0\\u1680\\u2000\\u2001"
    "\\u2002\\u2003\\u2004\\u2005\\u2006\\u2007\\u2008\\u2009\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff]"
)
URL_MIN_CHARS: Final = 8
URL_MAX_CHARS: Final = 2048
HTTP_URL_PATTERN: Final = r"^https?://[^\s]+$"
IMAGE_EXTENSIONS: Final = (".jpg", ".jpeg", ".jfif", ".pjpeg", ".pjp", ".png", ".webp")
# An http(s) URL of an image file: a plain host name, an optional port, a path of URL characters ending
# in an image extension in any letter case: the contract's own pattern (filesUrl, maskUrl).
IMAGE_URL_PATTERN: Final = (
    r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/[A-Za-z0-9._~%!$&'()*+,;=:@/-]*"
    r"\.([jJ][pP][eE]?[gG]|[jJ][fF][iI][fF]|[pP][jJ][pP]([eE][gG])?|[pP][nN][gG]|[wW][eE][bB][pP])"
    r"([?#][!-~]*)?$"
)
# An image the bundle holds, where an image URL goes: upload:<uploadId> (POST /uploads) or
# task:<taskId>/<index> (an image a task of this client stored); the contract's own pattern.
REFERENCE_PATTERN: Final = r"^(upload:[A-Za-z0-9_.-]{1,128}|task:[A-Za-z0-9_-]{1,128}/[0-9]{1,3})$"
# webhookUrl: an http(s) URL (HTTP_URL_PATTERN) that is also https to a plain host name.
WEBHOOK_URL_PATTERN: Final = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^\s]*)?$"


@dataclass(frozen=True)
class TaskRequest:
    """What ``POST /tasks`` accepts. ``model`` (None: the API's default, gpt-4o-image) chooses the fields:

    * gpt-4o-image: a prompt, reference images (``files``), or both; ``size``, ``mask``, ``variants``,
      ``enhance``, ``fallback``, ``fallback_model``;
    * flux-kontext-pro / flux-kontext-max: a prompt (required), ``aspect_ratio``, ``input_image`` (an
      edit), ``output_format``, ``translate``, ``upsample_prompt``, ``safety_tolerance``, ``watermark``;
    * any other model is a Market model (GET /models lists them): ``input``, the model's own object, with
      ``prompt`` sent as ``input.prompt`` (given in both, they must agree); the API checks its fields.

    A field left None is not sent (the API applies its default); a field of the other model is refused.
    ``webhook`` (both) is told when the task ends. :meth:`problems` checks the request with the API's
    rules before anything is sent.
    """

    prompt: str | None = None
    model: str | None = None
    # gpt-4o-image
    size: str | None = None  # sent as DEFAULT_SIZE when None (the API requires it)
    files: tuple[str, ...] = ()
    mask: str | None = None
    variants: int | None = None  # sent as 1
    enhance: bool | None = None  # sent as False
    fallback: bool | None = None  # sent as False
    fallback_model: str | None = None
    # flux-kontext-pro, flux-kontext-max
    aspect_ratio: str | None = None
    input_image: str | None = None
    output_format: str | None = None
    translate: bool | None = None
    upsample_prompt: bool | None = None
    safety_tolerance: int | None = None
    watermark: str | None = None
    # both
    webhook: str | None = None
    # a Market model (any model but gpt-4o-image and Flux Kontext): its own input object
    input: dict[str, Any] | None = None

    @property
    def model_name(self) -> str:
        """The model the task runs on."""
        return self.model if self.model is not None else DEFAULT_MODEL

    @property
    def is_flux(self) -> bool:
        return self.model_name in FLUX_MODELS

    @property
    def is_market(self) -> bool:
        """A model of the Market (GET /models lists them): its fields go inside ``input``."""
        return self.model_name not in MODELS

    def market_input(self) -> dict[str, Any]:
        """The Market input object as sent: ``input``, with the prompt as ``input.prompt`` when given."""
        given = dict(self.input or {})
        if self.prompt is not None:
            given.setdefault("prompt", self.prompt)
        return given

    @property
    def image_count(self) -> int:
        """How many images the task makes: one with Flux Kontext, ``variants`` with 4o, a Market model's
        count field (``num_images``) when given, else one."""
        if self.is_market:
            count = self.market_input().get("num_images", 1)
            return int(count) if str(count).isdigit() else 1
        return 1 if self.is_flux else self.variants or 1

    def model_fields(self) -> dict[str, Any]:
        """The model-specific fields by their API names, in the contract's order (None: not set)."""
        return {
            "size": self.size,
            "filesUrl": list(self.files) if self.files else None,
            "maskUrl": self.mask,
            "nVariants": self.variants,
            "isEnhance": self.enhance,
            "enableFallback": self.fallback,
            "fallbackModel": self.fallback_model,
            "aspectRatio": self.aspect_ratio,
            "inputImage": self.input_image,
            "outputFormat": self.output_format,
            "enableTranslation": self.translate,
            "promptUpsampling": self.upsample_prompt,
            "safetyTolerance": self.safety_tolerance,
            "watermark": self.watermark,
        }

    def given(self) -> list[str]:
        """The model-specific fields this request sets, by their API names, in the contract's order."""
        return [name for name, value in self.model_fields().items() if value is not None]

    def problems(self) -> list[FieldError]:
        found: list[FieldError] = []
        if self.is_market:
            return self._market_problems()
        if self.input is not None:
            found.append(
                FieldError(
                    "input", f"is for Market models (GET /models); {self.model_name} takes its own fields"
                )
            )
        if self.prompt is not None:
            if not re.search(PROMPT_PATTERN, self.prompt):
                found.append(FieldError("prompt", "must not be empty"))
            elif len(self.prompt) > MAX_PROMPT_CHARS:
                found.append(
                    FieldError("prompt", f"at most {MAX_PROMPT_CHARS} characters (got {len(self.prompt)})")
                )
        if self.is_flux:
            found.extend(self._flux_problems())
        else:
            found.extend(self._four_o_problems())
        if self.webhook is not None and not (
            URL_MIN_CHARS <= len(self.webhook) <= URL_MAX_CHARS
            and re.search(HTTP_URL_PATTERN, self.webhook)
            and re.search(WEBHOOK_URL_PATTERN, self.webhook)
        ):
            found.append(FieldError("webhookUrl", f"not an https URL of a host name: {self.webhook!r}"))
        texts = (self.prompt, self.mask, self.input_image, self.watermark, self.webhook, *self.files)
        if any(_has_lone_surrogate(text) for text in texts if text):
            found.append(FieldError("body", "contains invalid Unicode (a lone surrogate)"))
        return found

    def _market_problems(self) -> list[FieldError]:
        """A Market request: the model's own fields are the API's to check (GET /models has them); the
        4o and Flux Kontext options do not apply."""
        found = [
            FieldError(name, f"is not a field of {self.model_name}: give it with --input")
            for name in self.given()
        ]
        given_prompt = (self.input or {}).get("prompt")
        if self.prompt is not None and given_prompt is not None and given_prompt != self.prompt:
            found.append(FieldError("input.prompt", "the prompt is given twice, as prompt and input.prompt"))
        if not self.market_input().get("prompt") and not self.input:
            found.append(FieldError("input.prompt", f"{self.model_name} needs its input (a prompt at least)"))
        if self.webhook is not None and not re.search(WEBHOOK_URL_PATTERN, self.webhook):
            found.append(FieldError("webhookUrl", f"not an https URL of a host name: {self.webhook!r}"))
        return found

    def _four_o_problems(self) -> list[FieldError]:
        found = [
            FieldError(name, f"is a Flux Kontext field; {self.model_name} does not take it")
            for name in self.given()
            if name in FLUX_FIELDS
        ]
        if self.prompt is None and not self.files:
            found.append(FieldError("prompt", "give a prompt, reference images (filesUrl), or both"))
        if self.size is not None and self.size not in SIZES:
            found.append(FieldError("size", f"must be one of {', '.join(SIZES)}"))
        if self.variants is not None and self.variants not in VARIANTS:
            found.append(FieldError("nVariants", f"must be one of {', '.join(map(str, VARIANTS))}"))
        if len(self.files) > MAX_FILES:
            found.append(FieldError("filesUrl", f"at most {MAX_FILES} URLs (got {len(self.files)})"))
        found.extend(FieldError("filesUrl", problem) for url in self.files if (problem := _image_url(url)))
        if self.mask is not None:
            if problem := _image_url(self.mask):
                found.append(FieldError("maskUrl", problem))
            if not self.files:
                found.append(FieldError("maskUrl", "a mask edits an image: give the image in filesUrl"))
        if self.fallback_model is not None:
            if self.fallback_model not in FALLBACK_MODELS:
                found.append(FieldError("fallbackModel", f"must be one of {', '.join(FALLBACK_MODELS)}"))
            if not self.fallback:
                found.append(FieldError("fallbackModel", "only meaningful with enableFallback"))
        return found

    def _flux_problems(self) -> list[FieldError]:
        found = [
            FieldError(name, f"is a {FOUR_O_MODEL} field; {self.model_name} does not take it")
            for name in self.given()
            if name in FOUR_O_FIELDS
        ]
        if self.prompt is None:
            found.append(FieldError("prompt", f"{self.model_name} needs a prompt"))
        if self.aspect_ratio is not None and self.aspect_ratio not in ASPECT_RATIOS:
            found.append(FieldError("aspectRatio", f"must be one of {', '.join(ASPECT_RATIOS)}"))
        if (
            self.input_image is not None
            and not is_reference(self.input_image)
            and not (
                URL_MIN_CHARS <= len(self.input_image) <= URL_MAX_CHARS
                and re.search(HTTP_URL_PATTERN, self.input_image)
            )
        ):
            found.append(FieldError("inputImage", f"not an http(s) URL: {self.input_image!r}"))
        if self.output_format is not None and self.output_format not in OUTPUT_FORMATS:
            found.append(FieldError("outputFormat", f"must be one of {', '.join(OUTPUT_FORMATS)}"))
        if self.safety_tolerance is not None:
            highest = MAX_SAFETY_TOLERANCE if self.input_image is None else MAX_EDIT_SAFETY_TOLERANCE
            if isinstance(self.safety_tolerance, bool) or not 0 <= self.safety_tolerance <= highest:
                edit = " when editing an inputImage" if self.input_image is not None else ""
                found.append(FieldError("safetyTolerance", f"must be 0 to {highest}{edit}"))
        if self.watermark is not None and len(self.watermark) > MAX_WATERMARK_CHARS:
            found.append(FieldError("watermark", f"at most {MAX_WATERMARK_CHARS} characters"))
        return found

    def to_json(self) -> dict[str, Any]:
        """The body as sent: what is set, nothing left out (the API, not this method, says what is wrong).
        A 4o body always carries its size, variants, enhance and fallback (their defaults when unset)."""
        body: dict[str, Any] = {}
        if self.model is not None:
            body["model"] = self.model
        if self.is_market:
            body["input"] = self.market_input()
            if self.webhook is not None:
                body["webhookUrl"] = self.webhook
            return body
        if self.prompt is not None:
            body["prompt"] = self.prompt
        fields = self.model_fields() | {"webhookUrl": self.webhook}
        if not self.is_flux:  # the 4o defaults, sent explicitly
            fields |= {
                "size": DEFAULT_SIZE if self.size is None else self.size,
                "nVariants": 1 if self.variants is None else self.variants,
                "isEnhance": bool(self.enhance),
                "enableFallback": bool(self.fallback),
            }
        body |= {name: value for name, value in fields.items() if value is not None}
        return body


def is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def is_reference(value: str) -> bool:
    """upload:<uploadId> or task:<taskId>/<index>: an image the bundle holds, in place of a URL."""
    return len(value) <= 200 and re.search(REFERENCE_PATTERN, value) is not None


def _image_url(url: str) -> str | None:
    """What is wrong with a reference or mask image URL (None: nothing)."""
    if is_reference(url):
        return None
    if not is_http_url(url):
        return f"not an http(s) URL: {url!r}"
    if not URL_MIN_CHARS <= len(url) <= URL_MAX_CHARS:
        return f"URLs are {URL_MIN_CHARS} to {URL_MAX_CHARS} characters (got {len(url)})"
    if not re.search(IMAGE_URL_PATTERN, url):
        if not urlsplit(url).path.lower().endswith(IMAGE_EXTENSIONS):
            return f"not the URL of an image file ({', '.join(IMAGE_EXTENSIONS)}): {url!r}"
        return (
            "not a plain http(s) image URL (a host name of letters, digits, dots and dashes, URL "
            f"characters in the path): {url!r}"
        )
    return None


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
