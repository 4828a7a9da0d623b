"""What a client sends: POST /tasks (TaskRequest: the 4o Image API's fields, Flux Kontext's, or a Market
model's input) and POST /uploads (UploadRequest). The OpenAPI document (openapi.json) is generated from
these and the routes that take them, so the published request schemas are the code's own rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from image_pipeline.input_records import (
    IMAGE_FIELDS,
    REFERENCE_FORMS,
    REFERENCE_PATTERN,
    is_reference,
    map_image_fields,
)
from image_pipeline.market_registry import MODELS as MARKET_MODELS
from image_pipeline.market_registry import market_model, validate_input
from image_pipeline.pydantic_model import Model
from image_pipeline.upstream_replies import FLUX_MODELS, FOUR_O_MODEL
from image_pipeline.upstream_requests import (
    FOUR_O_INPUT_LIMITS,
    FOUR_O_RULES,
    MAX_EDIT_SAFETY_TOLERANCE,
    MAX_INPUT_IMAGES,
    MAX_PROMPT_CHARS,
    MAX_SAFETY_TOLERANCE,
    PROMPT_PATTERN,
    AspectRatio,
    FallbackModel,
    FluxKontextOptions,
    GenerationOptions,
    HttpsUrl,
    ImageSize,
    ImageUrl,
    MarketOptions,
    OutputFormat,
    VariantCount,
)

# An image of ours where an image URL goes: an upload (POST /uploads) or an image a task stored.
InputReference = Annotated[
    str,
    Field(
        max_length=200,
        pattern=REFERENCE_PATTERN,
        description=f"{REFERENCE_FORMS}: an image this client uploaded or stored",
    ),
]
# What the rules of a request check a reference as, before it is resolved (any URL of an image).
REFERENCE_STAND_IN = "https://reference.invalid/input.png"


# Every model POST /tasks takes: the 4o Image API, Flux Kontext, and the Market's (market_registry.py).
MODEL_NAMES = (FOUR_O_MODEL, *FLUX_MODELS, *MARKET_MODELS)
FOUR_O_FIELDS = ("size", "filesUrl", "maskUrl", "nVariants", "isEnhance", "enableFallback", "fallbackModel")
FLUX_FIELDS = (
    "aspectRatio",
    "inputImage",
    "outputFormat",
    "enableTranslation",
    "promptUpsampling",
    "safetyTolerance",
    "watermark",
)


def _only(fields: tuple[str, ...]) -> dict[str, Any]:
    """JSON Schema: none of these fields (null is the same as absent)."""
    return {"properties": {name: {"type": "null"} for name in fields}}


_FLUX = {"properties": {"model": {"enum": list(FLUX_MODELS)}}, "required": ["model"]}
_MARKET = {"properties": {"model": {"enum": list(MARKET_MODELS)}}, "required": ["model"]}
_FOUR_O_OR_FLUX: dict[str, Any] = {
    "if": _FLUX,
    "then": {
        "allOf": [
            _only(FOUR_O_FIELDS),
            {"required": ["prompt"], "properties": {"prompt": {"type": "string"}}},
            {
                "if": {"required": ["inputImage"], "properties": {"inputImage": {"type": "string"}}},
                "then": {"properties": {"safetyTolerance": {"maximum": MAX_EDIT_SAFETY_TOLERANCE}}},
            },
        ]
    },
    "else": {
        "allOf": [
            _only(FLUX_FIELDS),
            {"required": ["size"], "properties": {"size": {"type": "string"}}},
            *FOUR_O_RULES,
        ]
    },
}
# A Market model takes its own input object (GET /models has each model's fields as JSON Schema) and
# none of the 4o or Flux Kontext fields; the others take their fields and no input.
_TASK_REQUEST_RULES: dict[str, Any] = {
    "allOf": [
        {
            "if": _MARKET,
            "then": {
                "allOf": [
                    _only(("prompt", *FOUR_O_FIELDS, *FLUX_FIELDS)),
                    {"required": ["input"], "properties": {"input": {"type": "object"}}},
                ]
            },
            "else": {"allOf": [_only(("input",)), _FOUR_O_OR_FLUX]},
        }
    ]
}


class TaskRequest(Model):
    """POST /tasks: which model, its fields, and where to be told when the task ends.

    `model` chooses the API: gpt-4o-image (the default) takes size, filesUrl, maskUrl, nVariants,
    isEnhance, enableFallback, fallbackModel; flux-kontext-pro and flux-kontext-max take aspectRatio,
    inputImage, outputFormat, enableTranslation, promptUpsampling, safetyTolerance, watermark; a Market
    model (GET /models) takes its own `input` object, its prompt inside it. A field of another model is
    refused, naming it, and nothing is sent upstream.
    """

    model_config = ConfigDict(
        extra="forbid",
        # JSON types as the contract says them: 0 is no boolean and "3" no integer (lax mode took both)
        strict=True,
        json_schema_extra={
            **_TASK_REQUEST_RULES,
            "examples": [
                {"prompt": "a red fox in snow, watercolor", "size": "3:2", "nVariants": 2},
                {"model": "flux-kontext-pro", "prompt": "a paper lantern festival", "aspectRatio": "16:9"},
                {
                    "model": "nano-banana-pro",
                    "input": {"prompt": "a lighthouse at dusk", "aspect_ratio": "16:9", "resolution": "2K"},
                },
                {
                    "size": "1:1",
                    "filesUrl": ["https://example.com/photo.png"],
                    "prompt": "make it a watercolor",
                    "webhookUrl": "https://hooks.example.com/imagegen",
                },
            ],
        },
    )

    model: str = Field(
        default=FOUR_O_MODEL,
        description=(
            "gpt-4o-image (the default), flux-kontext-pro, flux-kontext-max, or a Market model (GET /models)"
        ),
        json_schema_extra={"enum": list(MODEL_NAMES)},
    )
    prompt: (
        Annotated[
            str,
            Field(min_length=1, max_length=MAX_PROMPT_CHARS, json_schema_extra={"pattern": PROMPT_PATTERN}),
        ]
        | None
    ) = None
    # gpt-4o-image
    size: ImageSize | None = None
    filesUrl: Annotated[list[ImageUrl | InputReference], Field(max_length=MAX_INPUT_IMAGES)] | None = None
    maskUrl: ImageUrl | InputReference | None = None
    nVariants: VariantCount | None = Field(default=None, description="gpt-4o-image; 1 when absent")
    isEnhance: bool | None = None
    enableFallback: bool | None = None
    fallbackModel: FallbackModel | None = None
    # flux-kontext-pro, flux-kontext-max
    aspectRatio: AspectRatio | None = Field(default=None, description="Flux Kontext; 16:9 when absent")
    inputImage: HttpsUrl | InputReference | None = Field(
        default=None, description=f"Flux Kontext: the image to edit, a URL or {REFERENCE_FORMS}"
    )
    outputFormat: OutputFormat | None = Field(default=None, description="Flux Kontext; jpeg when absent")
    enableTranslation: bool | None = None
    promptUpsampling: bool | None = None
    safetyTolerance: Annotated[int, Field(ge=0, le=MAX_SAFETY_TOLERANCE)] | None = Field(
        default=None, description="Flux Kontext: 0 (strictest) to 6, 0 to 2 with an inputImage; 2 when absent"
    )
    watermark: Annotated[str, Field(max_length=200)] | None = None
    # the Market's models
    input: dict[str, Any] | None = Field(
        default=None,
        description=(
            "Market models only: the model's own input object (its prompt included), as GET /models "
            "describes it; each problem is reported on input.<name>"
        ),
    )
    webhookUrl: HttpsUrl | None = Field(
        default=None,
        description=(
            "https URL (port 443) that receives one signed event (Standard Webhooks) when the task is "
            "stored or failed; other ports, private, loopback and link-local addresses are refused"
        ),
        # http only for the exact origins a deployment trusts (WEBHOOK_TRUSTED_ORIGINS: local runs);
        # https and a public address otherwise, which is checked beyond the pattern.
        json_schema_extra={"pattern": r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^\s]*)?$"},
    )

    @field_validator("nVariants", "safetyTolerance", mode="before")
    @classmethod
    def _whole_numbers(cls, value: Any) -> Any:
        # JSON Schema calls 6.0 an integer, as the contract's readers do; strict mode alone would not.
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    @field_validator("model")
    @classmethod
    def _known_model(cls, model: str) -> str:
        if model not in MODEL_NAMES:
            raise ValueError(f"{model!r} is not a model this service offers: GET /models lists them")
        return model

    @field_validator("prompt")
    @classmethod
    def _prompt_outside_input(cls, value: Any, info: ValidationInfo) -> Any:
        model = info.data.get("model")  # absent: the model itself was refused, and says so
        if value is not None and model in MARKET_MODELS:
            raise ValueError(f"{model} takes its prompt inside input: send input.prompt")
        return value

    @field_validator("input")
    @classmethod
    def _market_only(cls, value: Any, info: ValidationInfo) -> Any:
        model = info.data.get("model")
        if value is not None and model is not None and model not in MARKET_MODELS:
            raise ValueError(
                f"is the input object of a Market model; {model} takes its fields at the top level"
            )
        return value

    @field_validator(*FOUR_O_FIELDS)
    @classmethod
    def _four_o_only(cls, value: Any, info: ValidationInfo) -> Any:
        model = info.data.get("model")
        if value is not None and model is not None and model != FOUR_O_MODEL:
            raise ValueError(f"is a gpt-4o-image field; {model} does not take it")
        return value

    @field_validator(*FLUX_FIELDS)
    @classmethod
    def _flux_only(cls, value: Any, info: ValidationInfo) -> Any:
        model = info.data.get("model")
        if value is not None and model is not None and model not in FLUX_MODELS:
            raise ValueError("is a Flux Kontext field; give model flux-kontext-pro or flux-kontext-max")
        return value

    @model_validator(mode="after")
    def _the_models_own_rules(self) -> TaskRequest:
        if self.model in MARKET_MODELS:
            self._check_market_input()
            return self
        # Model-level problems name their field first ("size: ..."): the API reports them under it.
        try:
            self.generation()
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            field = ".".join(str(part) for part in first["loc"] if isinstance(part, str))
            message = str(first["msg"]).removeprefix("Value error, ")
            if field and not message.startswith((f"{field}:", f"{field}[")):
                message = f"{field}: {message}"
            raise ValueError(message) from None
        return self

    def _check_market_input(self) -> None:
        """The registry's verdict on `input`, each problem on its own field (input.<name>)."""
        checked = validate_input(self.model, self.input if self.input is not None else None)
        if isinstance(checked, dict):
            self.input = checked  # as sent upstream: nulls dropped, counts as strings
            return
        raise ValidationError.from_exception_data(
            "TaskRequest",
            [
                InitErrorDetails(
                    type=PydanticCustomError("market_input", problem.message),
                    loc=tuple(problem.field.split(".")),
                    input=None,
                )
                for problem in checked
            ],
        )

    def given(self, fields: tuple[str, ...]) -> dict[str, Any]:
        return {name: getattr(self, name) for name in fields if getattr(self, name) is not None}

    def market_image_fields(self) -> tuple[str, ...]:
        entry = market_model(self.model) if self.model in MARKET_MODELS else None
        return tuple(entry.image_url_fields) if entry is not None else ()

    def input_byte_limits(self) -> dict[str, int]:
        """The largest input file the chosen model takes, by image field (``filesUrl``,
        ``input.image_urls``), where its documentation gives one."""
        entry = market_model(self.model) if self.model in MARKET_MODELS else None
        if entry is not None:
            return {f"input.{name}": limit for name, limit in entry.max_input_bytes.items()}
        return {} if self.model in FLUX_MODELS else dict(FOUR_O_INPUT_LIMITS)

    def generation(
        self, links: Mapping[str, str] | None = None
    ) -> GenerationOptions | FluxKontextOptions | MarketOptions:
        """The upstream request's fields for the chosen model, each input reference replaced by its
        link (``links``, by field: ``filesUrl[0]``, ``inputImage``, ``input.image_urls[1]``).

        The request is validated with a stand-in URL for each reference, so that the model's rules are
        checked as for any image URL; the links go in after. A link is ours, not the client's: a role's
        session token can make it longer than the 2,048 characters a client's URL may have."""

        def linked(field: str, value: Any) -> Any:
            return links[field] if links is not None and is_reference(value) else value

        if self.model in MARKET_MODELS:
            replace = linked if links is not None else _stand_in
            given = map_image_fields({"input": dict(self.input or {})}, self.market_image_fields(), replace)
            return MarketOptions(model=self.model, input=given["input"])
        fields: dict[str, Any] = {"prompt": self.prompt} if self.prompt is not None else {}
        options: GenerationOptions | FluxKontextOptions
        if self.model in FLUX_MODELS:
            given = self.given(FLUX_FIELDS)
            options = FluxKontextOptions.model_validate(
                {"model": self.model, **fields, **map_image_fields(given, (), _stand_in)}
            )
        else:
            given = self.given(FOUR_O_FIELDS)
            options = GenerationOptions.model_validate({**fields, **map_image_fields(given, (), _stand_in)})
        if not links:
            return options
        with_links = map_image_fields(given, (), linked)
        return options.model_copy(update={name: with_links[name] for name in IMAGE_FIELDS if name in given})


def _stand_in(field: str, value: Any) -> Any:
    """An image field's value while the request is validated: a URL as given, a reference as a URL."""
    return REFERENCE_STAND_IN if is_reference(value) else value


class UploadRequest(Model):
    """POST /uploads: the type and exact size of the image about to be uploaded."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"contentType": "image/png", "bytes": 48213}]},
    )

    contentType: Literal["image/png", "image/jpeg", "image/webp"]
    bytes: int = Field(
        ge=1, description="the file's exact size; at most UPLOAD_MAX_BYTES (30 MiB by default)"
    )

    @field_validator("bytes", mode="before")
    @classmethod
    def _whole_number(cls, value: Any) -> Any:
        """104.0 is an integer to JSON Schema (and to the contract): a whole float is that integer."""
        return int(value) if isinstance(value, float) and value.is_integer() else value
