"""Validation of a generate request, with the rules of the real service (422 on any breach)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .images import SIZES

ALLOWED_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".pjpeg", ".pjp", ".png", ".webp")
N_VARIANTS = (1, 2, 4)
FALLBACK_MODELS = ("GPT_IMAGE_1", "FLUX_MAX")
MAX_FILES = 5
MAX_PROMPT_CHARS = 20_000
MAX_URL_CHARS = 4096


class ValidationError(ValueError):
    """A request the real service would answer with code 422."""


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


def _bool(body: dict[str, Any], key: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ValidationError(f"{key}: must be a boolean")
    return value


def validate_generate(body: dict[str, Any]) -> GenerateRequest:
    """The request as the service understands it, or ValidationError with a clear message."""
    if not _present(body, "size"):
        raise ValidationError("size: This field is required")
    size = body["size"]
    if size not in SIZES:
        raise ValidationError(f"size: must be one of {', '.join(SIZES)}")

    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise ValidationError("prompt: must be a string")
    if prompt is not None and len(prompt) > MAX_PROMPT_CHARS:
        raise ValidationError(f"prompt: longer than {MAX_PROMPT_CHARS} characters")

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
