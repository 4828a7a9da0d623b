"""GET /models: every model POST /tasks takes, with its family, its fields as JSON Schema, how many
images a task returns and the formats a stored image may have (the Market's from market_registry)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

from image_pipeline.market_registry import MODELS as MARKET_MODELS
from image_pipeline.pydantic_model import Model
from image_pipeline.upstream_replies import FLUX_MODELS, FOUR_O_MODEL
from image_pipeline.upstream_requests import (
    FOUR_O_INPUT_LIMITS,
    FluxKontextOptions,
    GenerationOptions,
)


class ModelInfo(Model):
    """One model POST /tasks takes."""

    model: str = Field(description="the value of the request's model field")
    family: str
    title: str
    request: Literal["fields", "input"] = Field(
        description="fields: the model's fields go at the top level of the request; input: inside input"
    )
    images: dict[str, Any] = Field(
        description='how many images a task returns: {"fixed": n}, or {"field", "default", "max"}'
    )
    outputFormats: list[str] = Field(description="formats a stored image may have (by its magic bytes)")
    outputFormatField: str | None = Field(
        description="the field choosing the format; null: the model decides"
    )
    imageUrlFields: list[str] = Field(description="fields that take input image URLs")
    maxInputBytes: dict[str, int] = Field(
        description="the largest input file each image field takes, in bytes, where the model documents "
        "one: POST /tasks refuses a larger upload or stored image there (422)"
    )
    input: dict[str, Any] = Field(description="the model's fields as JSON Schema")


class ModelCatalog(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "models": [
                        {
                            "model": "google/imagen4-fast",
                            "family": "imagen4",
                            "title": "Imagen 4 Fast",
                            "request": "input",
                            "images": {"field": "num_images", "default": 1, "max": 4},
                            "outputFormats": ["png", "jpeg", "webp"],
                            "outputFormatField": None,
                            "imageUrlFields": [],
                            "maxInputBytes": {},
                            "input": {"type": "object", "properties": {"prompt": {"type": "string"}}},
                        }
                    ]
                }
            ]
        }
    )

    models: list[ModelInfo]


def _fields_schema(model: type[BaseModel], title: str) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {
        "type": "object",
        "title": title,
        "properties": schema.get("properties", {}),
        "required": schema.get("required", []),
        "additionalProperties": False,
    }


def model_catalog() -> dict[str, Any]:
    """GET /models: every model, the 4o Image API's and Flux Kontext's first, then the Market's."""
    from image_pipeline.market_registry import describe

    four_o = _fields_schema(GenerationOptions, "gpt-4o-image fields")
    flux = _fields_schema(FluxKontextOptions, "Flux Kontext fields")
    flux["properties"] = {name: value for name, value in flux["properties"].items() if name != "model"}
    models: list[dict[str, Any]] = [
        {
            "model": FOUR_O_MODEL,
            "family": "gpt-4o-image",
            "title": "4o Image",
            "request": "fields",
            "images": {"field": "nVariants", "default": 1, "max": 4},
            "outputFormats": ["png"],
            "outputFormatField": None,
            "imageUrlFields": ["filesUrl", "maskUrl"],
            "maxInputBytes": dict(FOUR_O_INPUT_LIMITS),
            "input": four_o,
        },
        *(
            {
                "model": name,
                "family": "flux-kontext",
                "title": f"Flux Kontext {name.rsplit('-', 1)[1].title()}",
                "request": "fields",
                "images": {"fixed": 1},
                "outputFormats": ["jpeg", "png"],
                "outputFormatField": "outputFormat",
                "imageUrlFields": ["inputImage"],
                "maxInputBytes": {},
                "input": flux,
            }
            for name in FLUX_MODELS
        ),
        *({**describe(name), "request": "input"} for name in MARKET_MODELS),
    ]
    return {"models": models}
