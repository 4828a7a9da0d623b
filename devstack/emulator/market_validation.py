"""The Market's createTask rules, per model, as the emulator enforces them (docs/upstream.md, "The Market").

This table is the emulator's own, written from the model pages and deliberately **not** imported from
``image_pipeline.market_registry``: tests/emulator/test_market_agreement.py sends what the registry
accepts and what it refuses to both, so each checks the other. Besides the input rules a model's
entry says what its result looks like: the canvas (aspect ratio and resolution), the format field and
the count field.

Any breach is a ValidationError whose message starts with the field (``input.prompt: ...``), code 422.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .validation import MAX_URL_CHARS, ValidationError


# ---------------------------------------------------------------------------------------- rules
class Rule:
    required = False

    def check(self, where: str, value: Any) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Text(Rule):
    required: bool = False
    longest: int | None = None
    shortest: int = 0
    allowed: tuple[str, ...] = ()

    def check(self, where: str, value: Any) -> str:
        if not isinstance(value, str):
            raise ValidationError(f"{where}: must be a string")
        if self.allowed and value not in self.allowed:
            raise ValidationError(f"{where}: must be one of {', '.join(self.allowed)}")
        if self.required and not value.strip():
            raise ValidationError(f"{where}: This field is required")
        if len(value) < self.shortest:
            raise ValidationError(f"{where}: must be at least {self.shortest} characters")
        if self.longest is not None and len(value) > self.longest:
            raise ValidationError(f"{where}: longer than {self.longest} characters")
        return value


def choice(*allowed: str, required: bool = False) -> Text:
    return Text(required=required, allowed=allowed)


@dataclass(frozen=True)
class Whole(Rule):
    low: int | None = None
    high: int | None = None

    def check(self, where: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"{where}: must be an integer")
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ValidationError(f"{where}: must be between {self.low} and {self.high}")
        return value


@dataclass(frozen=True)
class Decimal(Rule):
    low: float
    high: float

    def check(self, where: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValidationError(f"{where}: must be a number")
        if not self.low <= value <= self.high:
            raise ValidationError(f"{where}: must be between {self.low:g} and {self.high:g}")
        return value


@dataclass(frozen=True)
class Flag(Rule):
    def check(self, where: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValidationError(f"{where}: must be a boolean")
        return value


@dataclass(frozen=True)
class NumberAsText(Rule):
    """A count the page types as a string enum ("1".."4"); a JSON number is not one of its values."""

    most: int

    def check(self, where: str, value: Any) -> str:
        allowed = [str(n) for n in range(1, self.most + 1)]
        if value not in allowed or not isinstance(value, str):
            raise ValidationError(f"{where}: must be one of {', '.join(allowed)} (a string)")
        return value


def _http_url(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{where}: must be a string URL")
    if len(value) > MAX_URL_CHARS:
        raise ValidationError(f"{where}: URL is longer than {MAX_URL_CHARS} characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in value):
        raise ValidationError(f"{where}: must be an http(s) URL")
    return value


@dataclass(frozen=True)
class Url(Rule):
    required: bool = False
    mb: int = 10  # the largest input file the platform fetches for the field, in MB (of 1,048,576 bytes)

    def check(self, where: str, value: Any) -> str:
        return _http_url(where, value)


@dataclass(frozen=True)
class Urls(Rule):
    most: int
    required: bool = False
    mb: int = 10  # as Url's, for each image

    def check(self, where: str, value: Any) -> list[str]:
        if not isinstance(value, list):
            raise ValidationError(f"{where}: must be an array of URLs")
        if self.required and not value:
            raise ValidationError(f"{where}: at least 1 image is required")
        if len(value) > self.most:
            raise ValidationError(f"{where}: at most {self.most} images")
        return [_http_url(f"{where}[{i}]", item) for i, item in enumerate(value)]


# ---------------------------------------------------------------------------------------- canvases
Canvas = Callable[[dict[str, Any]], tuple[int, int]]
SCALES = {"1K": 1024, "2K": 2048, "4K": 4096, "basic": 2048, "high": 4096}
# fal-style size presets (Qwen, Ideogram)
PRESETS = {
    "square": (512, 512),
    "square_hd": (1024, 1024),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
GPT_IMAGE_SIZES = {"1:1": (1024, 1024), "3:2": (1536, 1024), "2:3": (1024, 1536)}


def ratio_size(ratio: str, side: int) -> tuple[int, int]:
    """About side x side pixels in exactly the ratio ``w:h`` ("auto": square, the emulator sees no input)."""
    w, h = (1, 1) if ratio == "auto" else (int(part) for part in ratio.split(":"))
    unit = math.isqrt(side * side // (w * h))
    return w * unit, h * unit


def by_ratio(
    ratio_key: str, ratio_default: str, scale_key: str | None = None, scale_default: str = "1K"
) -> Canvas:
    def canvas(given: dict[str, Any]) -> tuple[int, int]:
        scale = given.get(scale_key, scale_default) if scale_key else scale_default
        return ratio_size(given.get(ratio_key, ratio_default), SCALES[scale])

    return canvas


def by_preset(key: str, default: str) -> Canvas:
    return lambda given: PRESETS[given.get(key, default)]


def gpt_image_canvas(default: str) -> Canvas:
    return lambda given: GPT_IMAGE_SIZES[given.get("aspect_ratio", default)]


# ---------------------------------------------------------------------------------------- models
@dataclass(frozen=True)
class MarketModelRules:
    fields: dict[str, Rule]
    canvas: Canvas
    format_key: str | None = None
    format_default: str | None = None
    count_key: str | None = None

    def output_format(self, given: dict[str, Any]) -> str | None:
        """png, jpeg or None (the model does not let the caller choose)."""
        if self.format_key is None:
            return None
        value = given.get(self.format_key, self.format_default)
        return "jpeg" if value in ("jpg", "jpeg") else "png"

    def count(self, given: dict[str, Any]) -> int:
        return int(given.get(self.count_key, "1")) if self.count_key else 1


BANANA_SIZES = ("1:1", "9:16", "16:9", "3:4", "4:3", "3:2", "2:3", "5:4", "4:5", "21:9", "auto")
PRO_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9", "auto")
BANANA_2_RATIOS = (
    "1:1", "1:4", "1:8", "2:3", "3:2", "3:4", "4:1", "4:3", "4:5", "5:4", "8:1", "9:16", "16:9", "21:9",
    "auto",
)  # fmt: skip
SEEDREAM_RATIOS = ("1:1", "4:3", "3:4", "16:9", "9:16", "2:3", "3:2", "21:9")
FLUX2_RATIOS = ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3")
IMAGEN_RATIOS = ("1:1", "16:9", "9:16", "3:4", "4:3")
SIZE_NAMES = tuple(PRESETS)

MARKET_MODELS: dict[str, MarketModelRules] = {
    "google/nano-banana": MarketModelRules(
        {
            "prompt": Text(True, 5000), "output_format": choice("png", "jpeg"),
            "image_size": choice(*BANANA_SIZES),
        },
        by_ratio("image_size", "1:1"), "output_format", "png",
    ),
    "google/nano-banana-edit": MarketModelRules(
        {
            "prompt": Text(True, 5000), "image_urls": Urls(10, required=True),
            "output_format": choice("png", "jpeg"), "image_size": choice(*BANANA_SIZES),
        },
        by_ratio("image_size", "1:1"), "output_format", "png",
    ),
    "nano-banana-pro": MarketModelRules(
        {
            "prompt": Text(True, 10000), "image_input": Urls(8, mb=30), "aspect_ratio": choice(*PRO_RATIOS),
            "resolution": choice("1K", "2K", "4K"), "output_format": choice("png", "jpg"),
        },
        by_ratio("aspect_ratio", "1:1", "resolution"), "output_format", "png",
    ),
    "nano-banana-2": MarketModelRules(
        {
            "prompt": Text(True, 20000), "image_input": Urls(14, mb=30),
            "aspect_ratio": choice(*BANANA_2_RATIOS),
            "resolution": choice("1K", "2K", "4K"), "output_format": choice("png", "jpg"),
        },
        by_ratio("aspect_ratio", "auto", "resolution"), "output_format", "jpg",
    ),
    "seedream/4.5-text-to-image": MarketModelRules(
        {
            "prompt": Text(True, 3000), "aspect_ratio": choice(*SEEDREAM_RATIOS, required=True),
            "quality": choice("basic", "high", required=True), "nsfw_checker": Flag(),
        },
        by_ratio("aspect_ratio", "1:1", "quality", "basic"),
    ),
    "seedream/4.5-edit": MarketModelRules(
        {
            "prompt": Text(True, 3000), "image_urls": Urls(14, required=True),
            "aspect_ratio": choice(*SEEDREAM_RATIOS, required=True),
            "quality": choice("basic", "high", required=True), "nsfw_checker": Flag(),
        },
        by_ratio("aspect_ratio", "1:1", "quality", "basic"),
    ),
    # No prompt limit is documented for GPT Image 1.5: gpt-image-2's 20,000 characters (docs/upstream.md).
    "gpt-image/1.5-text-to-image": MarketModelRules(
        {
            "prompt": Text(True, 20000), "aspect_ratio": choice("1:1", "2:3", "3:2", required=True),
            "quality": choice("medium", "high", required=True),
        },
        gpt_image_canvas("1:1"),
    ),
    "gpt-image/1.5-image-to-image": MarketModelRules(
        {
            "input_urls": Urls(16, required=True), "prompt": Text(True, 20000),
            "aspect_ratio": choice("1:1", "2:3", "3:2", required=True),
            "quality": choice("medium", "high", required=True),
        },
        gpt_image_canvas("3:2"),
    ),
    "flux-2/pro-text-to-image": MarketModelRules(
        {
            "prompt": Text(True, 5000, 3), "aspect_ratio": choice(*FLUX2_RATIOS, required=True),
            "resolution": choice("1K", "2K", required=True), "nsfw_checker": Flag(),
        },
        by_ratio("aspect_ratio", "1:1", "resolution"),
    ),
    "flux-2/pro-image-to-image": MarketModelRules(
        {
            "input_urls": Urls(8, required=True), "prompt": Text(True, 5000, 3),
            "aspect_ratio": choice(*FLUX2_RATIOS, "auto", required=True),
            "resolution": choice("1K", "2K", required=True), "nsfw_checker": Flag(),
        },
        by_ratio("aspect_ratio", "1:1", "resolution"),
    ),
    "google/imagen4": MarketModelRules(
        {
            "prompt": Text(True, 5000), "negative_prompt": Text(longest=5000),
            "aspect_ratio": choice(*IMAGEN_RATIOS), "seed": Text(longest=500),
        },
        by_ratio("aspect_ratio", "1:1"),
    ),
    "google/imagen4-fast": MarketModelRules(
        {
            "prompt": Text(True, 5000), "negative_prompt": Text(longest=5000),
            "aspect_ratio": choice(*IMAGEN_RATIOS), "num_images": NumberAsText(4), "seed": Whole(),
        },
        by_ratio("aspect_ratio", "16:9"), count_key="num_images",
    ),
    "qwen/image-edit": MarketModelRules(
        {
            "prompt": Text(True, 2000), "image_url": Url(required=True),
            "acceleration": choice("none", "regular", "high"), "image_size": choice(*SIZE_NAMES),
            "num_inference_steps": Whole(2, 49), "seed": Whole(), "guidance_scale": Decimal(0, 20),
            "sync_mode": Flag(), "num_images": NumberAsText(4), "enable_safety_checker": Flag(),
            "output_format": choice("jpeg", "png"), "negative_prompt": Text(longest=500),
            "nsfw_checker": Flag(),
        },
        by_preset("image_size", "landscape_4_3"), "output_format", "png", "num_images",
    ),
    "ideogram/v3-text-to-image": MarketModelRules(
        {
            "prompt": Text(True, 5000), "rendering_speed": choice("TURBO", "BALANCED", "QUALITY"),
            "style": choice("AUTO", "GENERAL", "REALISTIC", "DESIGN"), "expand_prompt": Flag(),
            "image_size": choice(*SIZE_NAMES), "seed": Whole(), "negative_prompt": Text(longest=5000),
        },
        by_preset("image_size", "square_hd"),
    ),
}  # fmt: skip


# ---------------------------------------------------------------------------------------- requests
@dataclass(frozen=True)
class MarketRequest:
    """A createTask request as the service understands it."""

    model: str
    input: dict[str, Any]
    callback_url: str | None
    width: int
    height: int
    images: int
    output_format: str | None
    """png or jpeg as asked; None when the model chooses (the emulator: the ``market_format`` switch)."""
    image_urls: tuple[str, ...] = field(default=())
    image_fields: tuple[tuple[str, str], ...] = field(default=())
    """(field, URL) of each input image: ``input.image_url``, ``input.image_urls[1]``, ..."""
    byte_limits: dict[str, int] = field(default_factory=dict)
    """The largest file each of those fields takes, by the same names."""

    @property
    def prompt(self) -> str:
        return str(self.input.get("prompt") or "")

    def param_json(self) -> str:
        """``param`` as live recordInfo answers carry it: the request, with ``input`` encoded once more."""
        param: dict[str, Any] = {"input": _compact(self.input)}
        if self.callback_url:
            param["callBackUrl"] = self.callback_url
        param["model"] = self.model
        return _compact(param)

    def summary(self) -> dict[str, Any]:
        return {"model": self.model, "input": dict(self.input), "callBackUrl": self.callback_url}


def _max_bytes(rule: Rule) -> int:
    return rule.mb * 1_048_576 if isinstance(rule, Url | Urls) else 0


def validate_market(body: Any) -> MarketRequest:
    """A createTask body as the service understands it, or ValidationError naming the field."""
    if not isinstance(body, dict):
        raise ValidationError("Format Error: the request body must be a JSON object")
    model = body.get("model")
    if model in (None, ""):
        raise ValidationError("model: This field is required")
    rules = MARKET_MODELS.get(model) if isinstance(model, str) else None
    if rules is None:
        raise ValidationError(f"model: {model!r} is not a supported model")
    given = body.get("input")
    if given is None:
        raise ValidationError("input: This field is required")
    if not isinstance(given, dict):
        raise ValidationError("input: must be an object")
    extra = sorted(set(given) - set(rules.fields))
    if extra:
        raise ValidationError(f"input.{extra[0]}: is not a parameter of {model}")
    checked: dict[str, Any] = {}
    for name, rule in rules.fields.items():
        if given.get(name) is None:
            if rule.required:
                raise ValidationError(f"input.{name}: This field is required")
            continue
        checked[name] = rule.check(f"input.{name}", given[name])
    callback = body.get("callBackUrl")
    callback = _http_url("callBackUrl", callback) if callback not in (None, "") else None
    width, height = rules.canvas(checked)
    urls = [v for k, v in checked.items() if isinstance(rules.fields[k], Url | Urls)]
    labelled = [
        (f"input.{name}" if isinstance(value, str) else f"input.{name}[{index}]", url)
        for name, value in checked.items()
        if isinstance(rules.fields[name], Url | Urls)
        for index, url in enumerate([value] if isinstance(value, str) else value)
    ]
    limits = {
        label: _max_bytes(rules.fields[label.removeprefix("input.").split("[", 1)[0]])
        for label, _url in labelled
    }
    return MarketRequest(
        model=model,
        input={k: v for k, v in given.items() if v is not None},
        callback_url=callback,
        width=width,
        height=height,
        images=rules.count(checked),
        output_format=rules.output_format(checked),
        image_urls=tuple(u for value in urls for u in (value if isinstance(value, list) else [value])),
        image_fields=tuple(labelled),
        byte_limits=limits,
    )


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
