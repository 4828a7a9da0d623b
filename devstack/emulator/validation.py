"""Validation of generate requests (4o Image and Flux Kontext), with the rules of the real service.

Any breach is a ValidationError whose message starts with the field's name (code 422).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .images import FLUX_SIZES, SIZES

ALLOWED_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".pjpeg", ".pjp", ".png", ".webp")
N_VARIANTS = (1, 2, 4)
FALLBACK_MODELS = ("GPT_IMAGE_1", "FLUX_MAX")
MAX_FILES = 5
MAX_PROMPT_CHARS = 20_000
MAX_URL_CHARS = 4096
FLUX_MODELS = ("flux-kontext-pro", "flux-kontext-max")
OUTPUT_FORMATS = ("jpeg", "png")
SAFETY_TOLERANCE_DEFAULT = 2
SAFETY_TOLERANCE_MAX = {False: 6, True: 2}  # text to image 0..6, edit (inputImage) 0..2


class ValidationError(ValueError):
    """A request the real service would answer with code 422."""


class SafetyToleranceError(ValidationError):
    """safetyTolerance out of range: 422, or 500 as one Flux quick start says (``tolerance_error``)."""


@dataclass(frozen=True)
class GenerateRequest:
    size: str
    prompt: str | None
    files_url: tuple[str, ...]
    mask_url: str | None
    n_variants: int
    is_enhance: bool
    enable_fallback: bool
    fallback_model: str
    upload_cn: bool
    callback_url: str | None

    def summary(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "prompt": self.prompt,
            "filesUrl": list(self.files_url),
            "maskUrl": self.mask_url,
            "nVariants": self.n_variants,
            "callBackUrl": self.callback_url,
        }


@dataclass(frozen=True)
class FluxRequest:
    """A Flux Kontext generate request; one image per task, edit mode when ``input_image`` is set."""

    prompt: str
    model: str
    aspect_ratio: str
    input_image: str | None
    output_format: str
    enable_translation: bool
    prompt_upsampling: bool
    safety_tolerance: int
    upload_cn: bool
    watermark: str | None
    callback_url: str | None

    def summary(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "model": self.model,
            "aspectRatio": self.aspect_ratio,
            "inputImage": self.input_image,
            "outputFormat": self.output_format,
            "enableTranslation": self.enable_translation,
            "promptUpsampling": self.prompt_upsampling,
            "safetyTolerance": self.safety_tolerance,
            "uploadCn": self.upload_cn,
            "watermark": self.watermark,
            "callBackUrl": self.callback_url,
        }


def _present(body: dict[str, Any], key: str) -> bool:
    return body.get(key) not in (None, "")


def _http_url(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{field}: must be a string URL")
    if len(value) > MAX_URL_CHARS:
        raise ValidationError(f"{field}: URL is longer than {MAX_URL_CHARS} characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationError(f"{field}: must be an http(s) URL")
    return value


def _image_url(value: Any, field: str) -> str:
    url = _http_url(value, field)
    if not urlsplit(url).path.lower().endswith(ALLOWED_EXTENSIONS):
        raise ValidationError(f"{field}: file type not supported (allowed: {', '.join(ALLOWED_EXTENSIONS)})")
    return url


def _bool(body: dict[str, Any], key: str, default: bool = False) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ValidationError(f"{key}: must be a boolean")
    return value


def _one_of(body: dict[str, Any], key: str, allowed: tuple[str, ...], default: str) -> str:
    if not _present(body, key):
        return default
    value = body[key]
    if value not in allowed:
        raise ValidationError(f"{key}: must be one of {', '.join(allowed)}")
    return str(value)


def _prompt(body: dict[str, Any]) -> str | None:
    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise ValidationError("prompt: must be a string")
    if prompt is not None and len(prompt) > MAX_PROMPT_CHARS:
        raise ValidationError(f"prompt: longer than {MAX_PROMPT_CHARS} characters")
    return prompt


def validate_generate(body: dict[str, Any]) -> GenerateRequest:
    """The request as the service understands it, or ValidationError with a clear message."""
    if not _present(body, "size"):
        raise ValidationError("size: This field is required")
    size = body["size"]
    if size not in SIZES:
        raise ValidationError(f"size: must be one of {', '.join(SIZES)}")

    prompt = _prompt(body)

    files: list[str] = []
    if _present(body, "filesUrl"):
        raw = body["filesUrl"]
        if not isinstance(raw, list):
            raise ValidationError("filesUrl: must be an array of URLs")
        if len(raw) > MAX_FILES:
            raise ValidationError(f"filesUrl: at most {MAX_FILES} images")
        files = [_image_url(item, f"filesUrl[{i}]") for i, item in enumerate(raw)]
    elif _present(body, "fileUrl"):  # deprecated single-image form
        files = [_image_url(body["fileUrl"], "fileUrl")]

    if not (prompt and prompt.strip()) and not files:
        raise ValidationError("prompt: This field is required (or give filesUrl)")

    mask = _image_url(body["maskUrl"], "maskUrl") if _present(body, "maskUrl") else None

    n_variants = body.get("nVariants", 1)
    if n_variants is None:
        n_variants = 1
    if isinstance(n_variants, bool) or n_variants not in N_VARIANTS:
        raise ValidationError("nVariants: must be 1, 2 or 4")

    fallback_model = body.get("fallbackModel") or "FLUX_MAX"
    if fallback_model not in FALLBACK_MODELS:
        raise ValidationError(f"fallbackModel: must be one of {', '.join(FALLBACK_MODELS)}")

    callback = _http_url(body["callBackUrl"], "callBackUrl") if _present(body, "callBackUrl") else None

    return GenerateRequest(
        size=size,
        prompt=prompt,
        files_url=tuple(files),
        mask_url=mask,
        n_variants=int(n_variants),
        is_enhance=_bool(body, "isEnhance"),
        enable_fallback=_bool(body, "enableFallback"),
        fallback_model=fallback_model,
        upload_cn=_bool(body, "uploadCn"),
        callback_url=callback,
    )


def validate_flux(body: dict[str, Any]) -> FluxRequest:
    """A Flux Kontext request as the service understands it, or ValidationError naming the field."""
    prompt = _prompt(body)
    if not (prompt and prompt.strip()):
        raise ValidationError("prompt: This field is required")
    model = _one_of(body, "model", FLUX_MODELS, FLUX_MODELS[0])
    aspect_ratio = _one_of(body, "aspectRatio", tuple(FLUX_SIZES), "16:9")
    input_image = _http_url(body["inputImage"], "inputImage") if _present(body, "inputImage") else None
    output_format = _one_of(body, "outputFormat", OUTPUT_FORMATS, "jpeg")

    tolerance = body.get("safetyTolerance")
    if tolerance is None:
        tolerance = SAFETY_TOLERANCE_DEFAULT
    highest = SAFETY_TOLERANCE_MAX[input_image is not None]
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or not 0 <= tolerance <= highest:
        mode = "edit mode (inputImage given)" if input_image else "text to image"
        raise SafetyToleranceError(f"safetyTolerance: must be an integer from 0 to {highest} in {mode}")

    watermark = body.get("watermark")
    if watermark is not None and not isinstance(watermark, str):
        raise ValidationError("watermark: must be a string")
    callback = _http_url(body["callBackUrl"], "callBackUrl") if _present(body, "callBackUrl") else None

    return FluxRequest(
        prompt=prompt,
        model=model,
        aspect_ratio=aspect_ratio,
        input_image=input_image,
        output_format=output_format,
        enable_translation=_bool(body, "enableTranslation", default=True),
        prompt_upsampling=_bool(body, "promptUpsampling"),
        safety_tolerance=tolerance,
        upload_cn=_bool(body, "uploadCn"),
        watermark=watermark or None,
        callback_url=callback,
    )
