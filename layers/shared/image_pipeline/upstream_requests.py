"""Pydantic models of what we send the 4o Image / Flux Kontext API (docs/upstream.md): the requests.

What it sends back (envelopes, task details, callbacks) is read without pydantic in upstream_replies.py,
which the Lambdas off the API path import; only the API imports this module.
Where the platform's own pages disagree (the conflicts in docs/upstream.md) the models accept both forms.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, field_validator, model_validator

from image_pipeline.market_registry import market_model
from image_pipeline.pydantic_model import Model
from image_pipeline.upstream_replies import is_storable_text

ImageSize = Literal["1:1", "3:2", "2:3"]
FallbackModel = Literal["GPT_IMAGE_1", "FLUX_MAX"]
VariantCount = Literal[1, 2, 4]

INPUT_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".pjpeg", ".pjp", ".png", ".webp")
MAX_INPUT_IMAGES = 5
# The 4o Image API refuses a larger input image, with callback code 400 (docs/upstream.md).
FOUR_O_MAX_INPUT_BYTES = 26_214_400
FOUR_O_INPUT_LIMITS = {"filesUrl": FOUR_O_MAX_INPUT_BYTES, "maskUrl": FOUR_O_MAX_INPUT_BYTES}
MAX_PROMPT_CHARS = 5000  # the platform does not document a limit; ours keeps records and logs bounded
# A prompt is blank when it has only these characters: what Python's str.isspace() or ECMAScript's \s
# (JSON Schema's regex dialect) takes for space, listed one by one. `\S` in the published pattern meant
# one thing to the API and another to clients and to schemathesis (U+001C-U+001F, U+0085, U+FEFF).
BLANK_CHARACTERS = frozenset(
    "\t\n\v\f\r \x1c\x1d\x1e\x1f\x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff"
    + "".join(chr(code) for code in range(0x2000, 0x200B))
)
# Any character but those, each escaped as \uXXXX (the same in ECMAScript and Python), in code order.
PROMPT_PATTERN = "[^" + "".join(f"\\u{ord(character):04x}" for character in sorted(BLANK_CHARACTERS)) + "]"


def is_blank(text: str) -> bool:
    return all(character in BLANK_CHARACTERS for character in text)


HttpsUrl = Annotated[str, Field(min_length=8, max_length=2048, pattern=r"^https?://[^\s]+$")]
# An image file by its extension, any letter case (JSON Schema patterns have no case-insensitive flag).
_IMAGE_EXTENSION = (
    r"\.([jJ][pP][eE]?[gG]|[jJ][fF][iI][fF]|[pP][jJ][pP]([eE][gG])?|[pP][nN][gG]|[wW][eE][bB][pP])"
)
# A plain host name, an optional port, a path of URL characters ending in an image extension.
IMAGE_URL_PATTERN = (
    r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/[A-Za-z0-9._~%!$&'()*+,;=:@/-]*"
    + _IMAGE_EXTENSION
    + r"([?#][!-~]*)?$"
)
# The pattern is documented in the schema; the validator below checks it with a readable message.
ImageUrl = Annotated[
    str,
    Field(
        min_length=8,
        max_length=2048,
        pattern=r"^https?://[^\s]+$",
        json_schema_extra={"pattern": IMAGE_URL_PATTERN},
    ),
]


def _present(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": [name], "properties": {name: schema}}


_PRESENT_PROMPT = _present("prompt", {"type": "string"})
_PRESENT_FILES = _present("filesUrl", {"type": "array", "minItems": 1})
# The 4o request's cross-field rules as JSON Schema (the validators below check the same).
FOUR_O_RULES: list[Any] = [
    {"anyOf": [_PRESENT_PROMPT, _PRESENT_FILES]},
    {"if": _present("maskUrl", {"type": "string"}), "then": _PRESENT_FILES},
    {
        "if": _present("fallbackModel", {"type": "string"}),
        "then": _present("enableFallback", {"const": True}),
    },
]


def _check_image_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if not parts.netloc:
        raise ValueError("must name a host (http(s)://host/path)")
    path = parts.path.lower()  # the file's path: "https://x.png" names a host, not a file
    if not path.endswith(INPUT_IMAGE_EXTENSIONS):
        raise ValueError(f"must point at an image file ending in one of {', '.join(INPUT_IMAGE_EXTENSIONS)}")
    if not re.fullmatch(IMAGE_URL_PATTERN, url):
        raise ValueError(
            "must be a plain http(s) URL: a host name of letters, digits, dots and dashes, "
            "URL characters in the path"
        )
    return url


class GenerationOptions(Model):
    """The generate fields a client may set: every field and rule of the upstream's generate request."""

    # The cross-field rules, also in the JSON Schema (so openapi.json says what the validator checks).
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={"allOf": FOUR_O_RULES},
    )

    prompt: (
        Annotated[
            str,
            Field(min_length=1, max_length=MAX_PROMPT_CHARS, json_schema_extra={"pattern": PROMPT_PATTERN}),
        ]
        | None
    ) = None
    size: ImageSize
    filesUrl: Annotated[list[ImageUrl], Field(max_length=MAX_INPUT_IMAGES)] | None = None
    maskUrl: ImageUrl | None = None
    nVariants: VariantCount = 1
    isEnhance: bool = False
    enableFallback: bool = False
    fallbackModel: FallbackModel | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, prompt: str | None) -> str | None:
        if prompt is not None and is_blank(prompt):
            raise ValueError("must not be blank")
        return prompt

    @field_validator("filesUrl")
    @classmethod
    def _files_are_images(cls, urls: list[str] | None) -> list[str] | None:
        for index, url in enumerate(urls or ()):
            try:
                _check_image_url(url)
            except ValueError as problem:  # named by its item, as the client wrote the list
                raise ValueError(f"filesUrl[{index}]: {problem}") from None
        return urls

    @field_validator("maskUrl")
    @classmethod
    def _mask_is_image(cls, url: str | None) -> str | None:
        return _check_image_url(url) if url is not None else None

    @model_validator(mode="after")
    def _cross_field_rules(self) -> GenerationOptions:
        if not is_storable_text(self.model_dump()):
            raise ValueError("contains invalid Unicode (a lone surrogate)")
        if not self.prompt and not self.filesUrl:
            raise ValueError("prompt: give a prompt, images in filesUrl, or both")
        if self.maskUrl and not self.filesUrl:
            raise ValueError("maskUrl: a mask edits an image: give that image in filesUrl too")
        if self.fallbackModel and not self.enableFallback:
            raise ValueError(
                "fallbackModel: applies only with enableFallback: true; add it, or drop fallbackModel"
            )
        return self


class GenerateRequest(GenerationOptions):
    """What we send to POST /api/v1/gpt4o-image/generate."""

    callBackUrl: HttpsUrl | None = None

    def to_upstream_json(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


# -- Flux Kontext: the sibling API (docs/upstream.md, "Flux Kontext") ------------------------------

FluxModel = Literal["flux-kontext-pro", "flux-kontext-max"]
AspectRatio = Literal["21:9", "16:9", "4:3", "1:1", "3:4", "9:16"]
OutputFormat = Literal["jpeg", "png"]
MAX_SAFETY_TOLERANCE = 6  # text to image
MAX_EDIT_SAFETY_TOLERANCE = 2  # with an inputImage


class FluxKontextOptions(Model):
    """The Flux Kontext generate fields a client may set (one image per task; an inputImage edits it)."""

    model_config = ConfigDict(extra="forbid")

    prompt: Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS)]
    model: FluxModel = "flux-kontext-pro"
    aspectRatio: AspectRatio = "16:9"
    inputImage: HttpsUrl | None = None
    outputFormat: OutputFormat = "jpeg"
    enableTranslation: bool = True
    promptUpsampling: bool = False
    safetyTolerance: Annotated[int, Field(ge=0, le=MAX_SAFETY_TOLERANCE)] = 2
    watermark: Annotated[str, Field(max_length=200)] | None = None

    @model_validator(mode="after")
    def _rules(self) -> FluxKontextOptions:
        if is_blank(self.prompt):
            raise ValueError("prompt: must not be blank")
        if not is_storable_text(self.model_dump()):
            raise ValueError("contains invalid Unicode (a lone surrogate)")
        if self.inputImage and self.safetyTolerance > MAX_EDIT_SAFETY_TOLERANCE:
            raise ValueError(
                f"safetyTolerance: must be 0 to {MAX_EDIT_SAFETY_TOLERANCE} when editing an inputImage"
            )
        return self


class FluxGenerateRequest(FluxKontextOptions):
    """What we send to POST /api/v1/flux/kontext/generate."""

    callBackUrl: HttpsUrl | None = None

    def to_upstream_json(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class MarketOptions(Model):
    """A Market task's request: the model's id and its input object, as the registry checked it
    (image_pipeline.market_registry.validate_input: nulls dropped, counts as strings)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    input: dict[str, Any]

    @property
    def image_count(self) -> int:
        entry = market_model(self.model)
        return entry.image_count(self.input) if entry is not None else 1
