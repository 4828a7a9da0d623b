"""Every Market image model this bundle drives: one entry each, read by the API, the pipeline and GET /models.

The Market (``POST /api/v1/jobs/createTask``, docs/upstream.md) takes ``{"model": <id>, "input": {...}}``
where ``input`` is the model's own object. An entry here says, for one model id: its family, each input
field (kind, required, enum, limits: :mod:`image_pipeline.market_fields`), how many images a task
returns (a fixed number, or read from a count field such as ``num_images: "4"``), which formats the
stored images can have (and which field chooses), and which fields hold input image URLs.

Adding a model is one entry in ``MODELS`` plus its cases in tests/unit/test_market_registry.py; the
emulator keeps its own table (devstack/emulator/market_models.py) and a test makes the two agree.

Plain Python: no pydantic, boto3 or httpx, so any function may import it cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from image_pipeline.market_fields import FieldRefused, InputField

# Stored image formats (the downloader decides by magic bytes; these name what to expect).
PNG, JPEG, WEBP = "png", "jpeg", "webp"
ANY_FORMAT = (PNG, JPEG, WEBP)
# A format field's values as file formats: the pages spell JPEG "jpeg" or "jpg" depending on the model.
FORMAT_VALUES = {"png": PNG, "jpeg": JPEG, "jpg": JPEG, "webp": WEBP}


@dataclass(frozen=True)
class InputProblem:
    """One thing wrong with a request: ``field`` is ``model``, ``input`` or ``input.<name>``."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass(frozen=True)
class MarketModel:
    model_id: str
    family: str
    title: str
    docs_path: str
    fields: Mapping[str, InputField]
    images: int | str = 1
    """How many images a task returns: a number, or the name of the count field that says."""
    max_images: int = 1
    format_field: str | None = None
    """The input field choosing the output format; None when the model decides (see output_formats)."""
    output_formats: tuple[str, ...] = ANY_FORMAT

    @property
    def image_url_fields(self) -> tuple[str, ...]:
        return tuple(name for name, spec in self.fields.items() if spec.holds_image_urls)

    @property
    def max_input_bytes(self) -> dict[str, int]:
        """The largest input file each image field takes, where the model documents one."""
        return {
            name: spec.max_file_bytes
            for name, spec in self.fields.items()
            if spec.holds_image_urls and spec.max_file_bytes
        }

    @property
    def required_fields(self) -> tuple[str, ...]:
        return tuple(name for name, spec in self.fields.items() if spec.required)

    def image_count(self, given: Mapping[str, Any]) -> int:
        """How many images a task with this (validated) input returns."""
        if isinstance(self.images, int):
            return self.images
        value = given.get(self.images, self.fields[self.images].default)
        return int(value) if value is not None else 1

    def output_format(self, given: Mapping[str, Any]) -> str | None:
        """The format the input asks for (png, jpeg, webp); None when the model does not let it choose."""
        if self.format_field is None:
            return None
        value = given.get(self.format_field, self.fields[self.format_field].default)
        return FORMAT_VALUES[str(value)]


# ---------------------------------------------------------------------------- field building blocks
def _prompt(max_length: int, min_length: int = 1, what: str = "What to draw") -> InputField:
    limits = f"{min_length} to {max_length:,}" if min_length > 1 else f"at most {max_length:,}"
    return InputField(
        "text",
        f"{what} ({limits} characters).",
        required=True,
        min_length=min_length,
        max_length=max_length,
    )


def _choice(
    values: tuple[str, ...], description: str, default: str | None, required: bool = False
) -> InputField:
    return InputField("text", description, required=required, enum=values, default=default)


MB = 1024 * 1024  # the platform's MB, as its 4o limit (26,214,400 bytes: 25 MB) counts them


def _urls(max_items: int, description: str, max_mb: int, required: bool = False) -> InputField:
    return InputField(
        "image_urls",
        f"{description}, at most {max_mb} MB each (up to {max_items}; JPEG, PNG or WebP).",
        required=required,
        min_items=1 if required else None,
        max_items=max_items,
        max_file_bytes=max_mb * MB,
    )


def _nsfw_checker() -> InputField:
    return InputField("boolean", "Let the platform filter unsafe results (off when absent).")


def _count(maximum: int, default: str | None) -> InputField:
    values = tuple(str(n) for n in range(1, maximum + 1))
    return InputField(
        "count", f"How many images to make, as a string: {', '.join(values)}.", enum=values, default=default
    )


NANO_BANANA_SIZES = ("1:1", "9:16", "16:9", "3:4", "4:3", "3:2", "2:3", "5:4", "4:5", "21:9", "auto")
NANO_BANANA_PRO_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9", "auto")
NANO_BANANA_2_RATIOS = (*NANO_BANANA_PRO_RATIOS, "1:4", "1:8", "4:1", "8:1")
SEEDREAM_RATIOS = ("1:1", "4:3", "3:4", "16:9", "9:16", "2:3", "3:2", "21:9")
GPT_IMAGE_RATIOS = ("1:1", "2:3", "3:2")
FLUX_2_RATIOS = ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3")
IMAGEN_RATIOS = ("1:1", "16:9", "9:16", "3:4", "4:3")
SIZE_PRESETS = ("square", "square_hd", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9")
RESOLUTIONS = ("1K", "2K", "4K")

_NANO_BANANA_COMMON = {
    "output_format": _choice(("png", "jpeg"), "File format of the result.", "png"),
    "image_size": _choice(
        NANO_BANANA_SIZES, "Aspect ratio of the result ('auto': the model decides).", "1:1"
    ),
}
_GEMINI_3_RESOLUTION = _choice(RESOLUTIONS, "Resolution of the result: 1K, 2K or 4K.", "1K")
_SEEDREAM_COMMON = {
    "aspect_ratio": _choice(SEEDREAM_RATIOS, "Aspect ratio of the result.", "1:1", required=True),
    "quality": _choice(("basic", "high"), "basic makes a 2K image, high a 4K one.", "basic", required=True),
    "nsfw_checker": _nsfw_checker(),
}
_GPT_IMAGE_QUALITY = _choice(
    ("medium", "high"), "medium is balanced, high slower and more detailed.", "medium", True
)
_FLUX_2_RESOLUTION = _choice(("1K", "2K"), "Resolution of the result: 1K or 2K.", "1K", required=True)
_IMAGEN_NEGATIVE = InputField(
    "text", "What to keep out of the image (at most 5,000 characters).", max_length=5000
)
_IDEOGRAM_SPEEDS = ("TURBO", "BALANCED", "QUALITY")
_IDEOGRAM_STYLES = ("AUTO", "GENERAL", "REALISTIC", "DESIGN")

# ---------------------------------------------------------------------------- the models
_ENTRIES = (
    MarketModel(
        "google/nano-banana",
        "nano-banana",
        "Nano Banana (Gemini 2.5 Flash Image): text to image",
        "/market/google/nano-banana",
        {"prompt": _prompt(5000), **_NANO_BANANA_COMMON},
        format_field="output_format",
        output_formats=(PNG, JPEG),
    ),
    MarketModel(
        "google/nano-banana-edit",
        "nano-banana",
        "Nano Banana: edit images",
        "/market/google/nano-banana-edit",
        {
            "prompt": _prompt(5000, what="How to change the images"),
            "image_urls": _urls(10, "The images to edit", 10, required=True),
            **_NANO_BANANA_COMMON,
        },
        format_field="output_format",
        output_formats=(PNG, JPEG),
    ),
    MarketModel(
        "nano-banana-pro",
        "nano-banana-pro",
        "Nano Banana Pro (Gemini 3 Pro Image)",
        "/market/google/pro-image-to-image",
        {
            "prompt": _prompt(10000),
            "image_input": _urls(8, "Reference images to transform or draw from", 30),
            "aspect_ratio": _choice(NANO_BANANA_PRO_RATIOS, "Aspect ratio of the result.", "1:1"),
            "resolution": _GEMINI_3_RESOLUTION,
            "output_format": _choice(("png", "jpg"), "File format of the result.", "png"),
        },
        format_field="output_format",
        output_formats=(PNG, JPEG),
    ),
    MarketModel(
        "nano-banana-2",
        "nano-banana-2",
        "Nano Banana 2",
        "/market/google/nanobanana2",
        {
            "prompt": _prompt(20000),
            "image_input": _urls(14, "Reference images to transform or draw from", 30),
            "aspect_ratio": _choice(NANO_BANANA_2_RATIOS, "Aspect ratio of the result.", "auto"),
            "resolution": _GEMINI_3_RESOLUTION,
            "output_format": _choice(("png", "jpg"), "File format of the result.", "jpg"),
        },
        format_field="output_format",
        output_formats=(PNG, JPEG),
    ),
    MarketModel(
        "seedream/4.5-text-to-image",
        "seedream-4.5",
        "Seedream 4.5: text to image",
        "/market/seedream/4-5-text-to-image",
        {"prompt": _prompt(3000), **_SEEDREAM_COMMON},
    ),
    MarketModel(
        "seedream/4.5-edit",
        "seedream-4.5",
        "Seedream 4.5: edit images",
        "/market/seedream/4-5-edit",
        {
            "prompt": _prompt(3000, what="How to change the images"),
            "image_urls": _urls(14, "The images to edit", 10, required=True),
            **_SEEDREAM_COMMON,
        },
    ),
    MarketModel(
        "gpt-image/1.5-text-to-image",
        "gpt-image-1.5",
        "GPT Image 1.5: text to image",
        "/market/gpt-image/1-5-text-to-image",
        {
            "prompt": _prompt(20000),
            "aspect_ratio": _choice(GPT_IMAGE_RATIOS, "Aspect ratio of the result.", "1:1", required=True),
            "quality": _GPT_IMAGE_QUALITY,
        },
    ),
    MarketModel(
        "gpt-image/1.5-image-to-image",
        "gpt-image-1.5",
        "GPT Image 1.5: image to image",
        "/market/gpt-image/1-5-image-to-image",
        {
            "input_urls": _urls(16, "The images to work from", 10, required=True),
            "prompt": _prompt(20000, what="How to change the images"),
            "aspect_ratio": _choice(GPT_IMAGE_RATIOS, "Aspect ratio of the result.", "3:2", required=True),
            "quality": _GPT_IMAGE_QUALITY,
        },
    ),
    MarketModel(
        "flux-2/pro-text-to-image",
        "flux-2",
        "Flux 2 Pro: text to image",
        "/market/flux2/pro-text-to-image",
        {
            "prompt": _prompt(5000, min_length=3),
            "aspect_ratio": _choice(FLUX_2_RATIOS, "Aspect ratio of the result.", "1:1", required=True),
            "resolution": _FLUX_2_RESOLUTION,
            "nsfw_checker": _nsfw_checker(),
        },
    ),
    MarketModel(
        "flux-2/pro-image-to-image",
        "flux-2",
        "Flux 2 Pro: image to image",
        "/market/flux2/pro-image-to-image",
        {
            "input_urls": _urls(8, "Reference images, 1 to 8", 10, required=True),
            "prompt": _prompt(5000, min_length=3),
            "aspect_ratio": _choice(
                (*FLUX_2_RATIOS, "auto"), "Aspect ratio ('auto': that of the first input image).", "1:1", True
            ),
            "resolution": _FLUX_2_RESOLUTION,
            "nsfw_checker": _nsfw_checker(),
        },
    ),
    MarketModel(
        "google/imagen4",
        "imagen4",
        "Imagen 4",
        "/market/google/imagen4",
        {
            "prompt": _prompt(5000),
            "negative_prompt": _IMAGEN_NEGATIVE,
            "aspect_ratio": _choice(IMAGEN_RATIOS, "Aspect ratio of the result.", "1:1"),
            "seed": InputField(
                "text", "A seed, as text, to repeat a result (at most 500 characters).", max_length=500
            ),
        },
    ),
    MarketModel(
        "google/imagen4-fast",
        "imagen4",
        "Imagen 4 Fast (up to 4 images)",
        "/market/google/imagen4-fast",
        {
            "prompt": _prompt(5000),
            "negative_prompt": _IMAGEN_NEGATIVE,
            "aspect_ratio": _choice(IMAGEN_RATIOS, "Aspect ratio of the result.", "16:9"),
            "num_images": _count(4, "1"),
            "seed": InputField("integer", "A whole-number seed to repeat a result."),
        },
        images="num_images",
        max_images=4,
    ),
    MarketModel(
        "qwen/image-edit",
        "qwen-image",
        "Qwen Image Edit (up to 4 images)",
        "/market/qwen/image-edit",
        {
            "prompt": _prompt(2000, what="How to change the image"),
            "image_url": InputField(
                "image_url",
                "The image to edit (JPEG, PNG or WebP, at most 10 MB).",
                required=True,
                max_file_bytes=10 * MB,
            ),
            "acceleration": _choice(
                ("none", "regular", "high"), "Faster generation at some cost in quality.", "none"
            ),
            "image_size": _choice(SIZE_PRESETS, "Size preset of the result.", "landscape_4_3"),
            "num_inference_steps": InputField(
                "integer", "Denoising steps, 2 to 49.", minimum=2, maximum=49, default=25
            ),
            "seed": InputField("integer", "A whole-number seed to repeat a result."),
            "guidance_scale": InputField(
                "number", "How closely to follow the prompt, 0 to 20.", minimum=0, maximum=20, default=4
            ),
            "sync_mode": InputField(
                "boolean", "Wait for the upload before answering (the platform's option)."
            ),
            "num_images": _count(4, None),
            "enable_safety_checker": InputField(
                "boolean", "The model's own safety checker (on when absent)."
            ),
            "output_format": _choice(("jpeg", "png"), "File format of the result.", "png"),
            "negative_prompt": InputField(
                "text", "What to keep out of the image (at most 500 characters).", max_length=500
            ),
            "nsfw_checker": _nsfw_checker(),
        },
        images="num_images",
        max_images=4,
        format_field="output_format",
        output_formats=(JPEG, PNG),
    ),
    MarketModel(
        "ideogram/v3-text-to-image",
        "ideogram-v3",
        "Ideogram V3: text to image",
        "/market/ideogram/v3-text-to-image",
        {
            "prompt": _prompt(5000),
            "rendering_speed": _choice(_IDEOGRAM_SPEEDS, "TURBO, BALANCED or QUALITY.", None),
            "style": _choice(_IDEOGRAM_STYLES, "AUTO, GENERAL, REALISTIC or DESIGN.", None),
            "expand_prompt": InputField("boolean", "Let the model enlarge the prompt (MagicPrompt)."),
            "image_size": _choice(SIZE_PRESETS, "Size preset of the result.", None),
            "seed": InputField("integer", "A whole-number seed to repeat a result."),
            "negative_prompt": InputField(
                "text", "What to keep out of the image (at most 5,000 characters).", max_length=5000
            ),
        },
    ),
)

MODELS: Mapping[str, MarketModel] = {entry.model_id: entry for entry in _ENTRIES}


# ---------------------------------------------------------------------------- lookups
def market_model(model_id: str) -> MarketModel | None:
    return MODELS.get(model_id)


def validate_input(model_id: Any, given: Any) -> dict[str, Any] | list[InputProblem]:
    """The input to send upstream (nulls dropped, counts as strings), or every problem with it.

    An unknown model is one problem on ``model``; otherwise each problem names ``input.<name>``
    (or ``input`` when it is not an object at all).
    """
    entry = MODELS.get(model_id) if isinstance(model_id, str) else None
    if entry is None:
        known = ", ".join(MODELS)
        return [
            InputProblem("model", f"{model_id!r} is not a Market model this service offers; known: {known}")
        ]
    if not isinstance(given, dict):
        return [InputProblem("input", f"must be an object of {entry.model_id}'s input fields")]
    problems: list[InputProblem] = []
    normalized: dict[str, Any] = {}
    for name in given:
        if name not in entry.fields:
            takes = ", ".join(entry.fields)
            problems.append(
                InputProblem(f"input.{name}", f"is not an input of {entry.model_id}; it takes {takes}")
            )
    for name, spec in entry.fields.items():
        value = given.get(name)
        if value is None:
            if spec.required:
                problems.append(InputProblem(f"input.{name}", f"is required by {entry.model_id}"))
            continue
        try:
            normalized[name] = spec.check(value)
        except FieldRefused as refusal:
            problems.append(InputProblem(f"input.{name}", str(refusal)))
    return problems or normalized


def input_json_schema(model_id: str) -> dict[str, Any]:
    """The model's ``input`` object as JSON Schema (for GET /models and generated clients)."""
    entry = MODELS[model_id]
    return {
        "type": "object",
        "title": f"{entry.model_id} input",
        "properties": {name: spec.json_schema() for name, spec in entry.fields.items()},
        "required": list(entry.required_fields),
        "additionalProperties": False,
    }


def describe(model_id: str) -> dict[str, Any]:
    """One model as GET /models lists it."""
    entry = MODELS[model_id]
    images: dict[str, Any] = (
        {"fixed": entry.images}
        if isinstance(entry.images, int)
        else {"field": entry.images, "default": entry.image_count({}), "max": entry.max_images}
    )
    return {
        "model": entry.model_id,
        "family": entry.family,
        "title": entry.title,
        "images": images,
        "outputFormats": list(entry.output_formats),
        "outputFormatField": entry.format_field,
        "imageUrlFields": list(entry.image_url_fields),
        "maxInputBytes": entry.max_input_bytes,
        "input": input_json_schema(model_id),
    }
