"""The Market registry: per model, one valid input and each kind of invalid one; counts, formats, schemas.

The cases are written out by hand from the model pages (docs/upstream.md), not derived from the
registry, so a wrong number in an entry shows up here. Adding a model means adding it to VALID and
INVALID below: test_every_model_has_its_cases fails until both are there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import jsonschema
import pytest
from image_pipeline.market_registry import (
    MODELS,
    InputProblem,
    describe,
    input_json_schema,
    validate_input,
)

from tests.conftest import ROOT

URL = "https://images.example.com/in/photo.png"
LONG = "x" * 20_001

# One realistic valid input per model (optional fields included where the model has them).
VALID: dict[str, dict[str, Any]] = {
    "google/nano-banana": {"prompt": "a banana in space", "output_format": "jpeg", "image_size": "21:9"},
    "google/nano-banana-edit": {"prompt": "make it night", "image_urls": [URL] * 10, "image_size": "auto"},
    "nano-banana-pro": {
        "prompt": "a poster",
        "image_input": [URL] * 8,
        "aspect_ratio": "4:5",
        "resolution": "4K",
        "output_format": "jpg",
    },
    "nano-banana-2": {"prompt": "a map", "aspect_ratio": "8:1", "resolution": "2K", "output_format": "png"},
    "seedream/4.5-text-to-image": {
        "prompt": "a city",
        "aspect_ratio": "21:9",
        "quality": "high",
        "nsfw_checker": True,
    },
    "seedream/4.5-edit": {
        "prompt": "add rain",
        "image_urls": [URL] * 14,
        "aspect_ratio": "1:1",
        "quality": "basic",
    },
    "gpt-image/1.5-text-to-image": {"prompt": "a cat", "aspect_ratio": "2:3", "quality": "high"},
    "gpt-image/1.5-image-to-image": {
        "input_urls": [URL] * 16,
        "prompt": "as a watercolour",
        "aspect_ratio": "3:2",
        "quality": "medium",
    },
    "flux-2/pro-text-to-image": {"prompt": "owl", "aspect_ratio": "9:16", "resolution": "2K"},
    "flux-2/pro-image-to-image": {
        "input_urls": [URL, "upload:up_123", "task:0123abcd/2"],
        "prompt": "in winter",
        "aspect_ratio": "auto",
        "resolution": "1K",
        "nsfw_checker": False,
    },
    "google/imagen4": {
        "prompt": "a lake",
        "negative_prompt": "boats",
        "aspect_ratio": "3:4",
        "seed": "s" * 500,
    },
    "google/imagen4-fast": {"prompt": "a lake", "aspect_ratio": "9:16", "num_images": "4", "seed": 42},
    "qwen/image-edit": {
        "prompt": "remove the car",
        "image_url": URL,
        "acceleration": "high",
        "image_size": "portrait_16_9",
        "num_inference_steps": 49,
        "seed": 7,
        "guidance_scale": 0.5,
        "sync_mode": False,
        "num_images": "3",
        "enable_safety_checker": True,
        "output_format": "jpeg",
        "negative_prompt": "n" * 500,
        "nsfw_checker": False,
    },
    "ideogram/v3-text-to-image": {
        "prompt": "a logo",
        "rendering_speed": "QUALITY",
        "style": "DESIGN",
        "expand_prompt": True,
        "image_size": "landscape_16_9",
        "seed": 3,
        "negative_prompt": "text",
    },
}


def _with(model: str, **changes: Any) -> dict[str, Any]:
    """The model's valid input with some fields changed; a value of ... removes the field."""
    given = {**VALID[model], **changes}
    return {name: value for name, value in given.items() if value is not ...}


# Per model: (kind of mistake, input, the field the problem names). Kinds: unknown, missing, type,
# enum, too_long, too_short, too_many, too_few, count, range, url.
INVALID: dict[str, list[tuple[str, dict[str, Any], str]]] = {
    "google/nano-banana": [
        ("unknown", _with("google/nano-banana", image_urls=[URL]), "input.image_urls"),
        ("missing", _with("google/nano-banana", prompt=...), "input.prompt"),
        ("type", _with("google/nano-banana", prompt=5), "input.prompt"),
        ("enum", _with("google/nano-banana", output_format="jpg"), "input.output_format"),
        ("enum", _with("google/nano-banana", image_size="1:8"), "input.image_size"),
        ("too_long", _with("google/nano-banana", prompt="p" * 5001), "input.prompt"),
    ],
    "google/nano-banana-edit": [
        ("unknown", _with("google/nano-banana-edit", image_input=[URL]), "input.image_input"),
        ("missing", _with("google/nano-banana-edit", image_urls=...), "input.image_urls"),
        ("type", _with("google/nano-banana-edit", image_urls=URL), "input.image_urls"),
        ("enum", _with("google/nano-banana-edit", image_size="16:10"), "input.image_size"),
        ("too_long", _with("google/nano-banana-edit", prompt="p" * 5001), "input.prompt"),
        ("too_many", _with("google/nano-banana-edit", image_urls=[URL] * 11), "input.image_urls"),
        ("too_few", _with("google/nano-banana-edit", image_urls=[]), "input.image_urls"),
        ("url", _with("google/nano-banana-edit", image_urls=["file:///etc/passwd"]), "input.image_urls"),
    ],
    "nano-banana-pro": [
        ("unknown", _with("nano-banana-pro", image_size="1:1"), "input.image_size"),
        ("missing", _with("nano-banana-pro", prompt=...), "input.prompt"),
        ("type", _with("nano-banana-pro", resolution=2), "input.resolution"),
        ("enum", _with("nano-banana-pro", output_format="jpeg"), "input.output_format"),
        ("enum", _with("nano-banana-pro", aspect_ratio="8:1"), "input.aspect_ratio"),
        ("too_long", _with("nano-banana-pro", prompt="p" * 10_001), "input.prompt"),
        ("too_many", _with("nano-banana-pro", image_input=[URL] * 9), "input.image_input"),
    ],
    "nano-banana-2": [
        ("unknown", _with("nano-banana-2", google_search=True), "input.google_search"),
        ("missing", _with("nano-banana-2", prompt=...), "input.prompt"),
        ("type", _with("nano-banana-2", image_input=[1]), "input.image_input"),
        ("enum", _with("nano-banana-2", resolution="8K"), "input.resolution"),
        ("too_long", _with("nano-banana-2", prompt=LONG), "input.prompt"),
        ("too_many", _with("nano-banana-2", image_input=[URL] * 15), "input.image_input"),
    ],
    "seedream/4.5-text-to-image": [
        ("unknown", _with("seedream/4.5-text-to-image", resolution="2K"), "input.resolution"),
        ("missing", _with("seedream/4.5-text-to-image", quality=...), "input.quality"),
        ("missing", _with("seedream/4.5-text-to-image", aspect_ratio=...), "input.aspect_ratio"),
        ("type", _with("seedream/4.5-text-to-image", nsfw_checker="true"), "input.nsfw_checker"),
        ("enum", _with("seedream/4.5-text-to-image", quality="ultra"), "input.quality"),
        ("too_long", _with("seedream/4.5-text-to-image", prompt="p" * 3001), "input.prompt"),
    ],
    "seedream/4.5-edit": [
        ("unknown", _with("seedream/4.5-edit", input_urls=[URL]), "input.input_urls"),
        ("missing", _with("seedream/4.5-edit", image_urls=...), "input.image_urls"),
        ("type", _with("seedream/4.5-edit", aspect_ratio=1), "input.aspect_ratio"),
        ("enum", _with("seedream/4.5-edit", aspect_ratio="5:4"), "input.aspect_ratio"),
        ("too_long", _with("seedream/4.5-edit", prompt="p" * 3001), "input.prompt"),
        ("too_many", _with("seedream/4.5-edit", image_urls=[URL] * 15), "input.image_urls"),
    ],
    "gpt-image/1.5-text-to-image": [
        ("unknown", _with("gpt-image/1.5-text-to-image", n=2), "input.n"),
        ("missing", _with("gpt-image/1.5-text-to-image", quality=...), "input.quality"),
        ("type", _with("gpt-image/1.5-text-to-image", prompt=["a cat"]), "input.prompt"),
        ("enum", _with("gpt-image/1.5-text-to-image", aspect_ratio="16:9"), "input.aspect_ratio"),
        ("too_long", _with("gpt-image/1.5-text-to-image", prompt=LONG), "input.prompt"),
    ],
    "gpt-image/1.5-image-to-image": [
        ("unknown", _with("gpt-image/1.5-image-to-image", image_urls=[URL]), "input.image_urls"),
        ("missing", _with("gpt-image/1.5-image-to-image", input_urls=...), "input.input_urls"),
        ("type", _with("gpt-image/1.5-image-to-image", input_urls={"0": URL}), "input.input_urls"),
        ("enum", _with("gpt-image/1.5-image-to-image", quality="low"), "input.quality"),
        ("too_long", _with("gpt-image/1.5-image-to-image", prompt=LONG), "input.prompt"),
        ("too_many", _with("gpt-image/1.5-image-to-image", input_urls=[URL] * 17), "input.input_urls"),
    ],
    "flux-2/pro-text-to-image": [
        ("unknown", _with("flux-2/pro-text-to-image", input_urls=[URL]), "input.input_urls"),
        ("missing", _with("flux-2/pro-text-to-image", resolution=...), "input.resolution"),
        ("type", _with("flux-2/pro-text-to-image", nsfw_checker=1), "input.nsfw_checker"),
        ("enum", _with("flux-2/pro-text-to-image", aspect_ratio="auto"), "input.aspect_ratio"),
        ("enum", _with("flux-2/pro-text-to-image", resolution="4K"), "input.resolution"),
        ("too_long", _with("flux-2/pro-text-to-image", prompt="p" * 5001), "input.prompt"),
        ("too_short", _with("flux-2/pro-text-to-image", prompt="ab"), "input.prompt"),
    ],
    "flux-2/pro-image-to-image": [
        ("unknown", _with("flux-2/pro-image-to-image", image_url=URL), "input.image_url"),
        ("missing", _with("flux-2/pro-image-to-image", input_urls=...), "input.input_urls"),
        ("type", _with("flux-2/pro-image-to-image", resolution=["1K"]), "input.resolution"),
        ("enum", _with("flux-2/pro-image-to-image", aspect_ratio="21:9"), "input.aspect_ratio"),
        ("too_long", _with("flux-2/pro-image-to-image", prompt="p" * 5001), "input.prompt"),
        ("too_many", _with("flux-2/pro-image-to-image", input_urls=[URL] * 9), "input.input_urls"),
        ("too_few", _with("flux-2/pro-image-to-image", input_urls=[]), "input.input_urls"),
        ("url", _with("flux-2/pro-image-to-image", input_urls=["upload:"]), "input.input_urls"),
    ],
    "google/imagen4": [
        ("unknown", _with("google/imagen4", num_images="2"), "input.num_images"),
        ("missing", _with("google/imagen4", prompt=...), "input.prompt"),
        ("type", _with("google/imagen4", seed=42), "input.seed"),
        ("enum", _with("google/imagen4", aspect_ratio="3:2"), "input.aspect_ratio"),
        ("too_long", _with("google/imagen4", seed="s" * 501), "input.seed"),
        ("too_long", _with("google/imagen4", negative_prompt="n" * 5001), "input.negative_prompt"),
    ],
    "google/imagen4-fast": [
        ("unknown", _with("google/imagen4-fast", resolution="1K"), "input.resolution"),
        ("missing", _with("google/imagen4-fast", prompt=...), "input.prompt"),
        ("type", _with("google/imagen4-fast", seed="42"), "input.seed"),
        ("enum", _with("google/imagen4-fast", aspect_ratio="21:9"), "input.aspect_ratio"),
        ("too_long", _with("google/imagen4-fast", prompt="p" * 5001), "input.prompt"),
        ("count", _with("google/imagen4-fast", num_images="5"), "input.num_images"),
        ("count", _with("google/imagen4-fast", num_images="0"), "input.num_images"),
        ("count", _with("google/imagen4-fast", num_images="four"), "input.num_images"),
        ("count", _with("google/imagen4-fast", num_images=2.0), "input.num_images"),
        ("count", _with("google/imagen4-fast", num_images=True), "input.num_images"),
    ],
    "qwen/image-edit": [
        ("unknown", _with("qwen/image-edit", image_urls=[URL]), "input.image_urls"),
        ("missing", _with("qwen/image-edit", image_url=...), "input.image_url"),
        ("type", _with("qwen/image-edit", image_url=[URL]), "input.image_url"),
        ("type", _with("qwen/image-edit", num_inference_steps=25.5), "input.num_inference_steps"),
        ("enum", _with("qwen/image-edit", image_size="1:1"), "input.image_size"),
        ("too_long", _with("qwen/image-edit", prompt="p" * 2001), "input.prompt"),
        ("too_long", _with("qwen/image-edit", negative_prompt="n" * 501), "input.negative_prompt"),
        ("range", _with("qwen/image-edit", num_inference_steps=50), "input.num_inference_steps"),
        ("range", _with("qwen/image-edit", guidance_scale=20.5), "input.guidance_scale"),
        ("count", _with("qwen/image-edit", num_images="6"), "input.num_images"),
        ("url", _with("qwen/image-edit", image_url="task:abc"), "input.image_url"),
    ],
    "ideogram/v3-text-to-image": [
        ("unknown", _with("ideogram/v3-text-to-image", num_images="2"), "input.num_images"),
        ("missing", _with("ideogram/v3-text-to-image", prompt=...), "input.prompt"),
        ("type", _with("ideogram/v3-text-to-image", expand_prompt="yes"), "input.expand_prompt"),
        ("enum", _with("ideogram/v3-text-to-image", style="auto"), "input.style"),
        ("enum", _with("ideogram/v3-text-to-image", rendering_speed="FAST"), "input.rendering_speed"),
        ("too_long", _with("ideogram/v3-text-to-image", prompt="p" * 5001), "input.prompt"),
    ],
}

# How many images each model returns for its VALID input, and in which format.
IMAGES = {
    "google/nano-banana": (1, "jpeg"),
    "google/nano-banana-edit": (1, "png"),
    "nano-banana-pro": (1, "jpeg"),
    "nano-banana-2": (1, "png"),
    "seedream/4.5-text-to-image": (1, None),
    "seedream/4.5-edit": (1, None),
    "gpt-image/1.5-text-to-image": (1, None),
    "gpt-image/1.5-image-to-image": (1, None),
    "flux-2/pro-text-to-image": (1, None),
    "flux-2/pro-image-to-image": (1, None),
    "google/imagen4": (1, None),
    "google/imagen4-fast": (4, None),
    "qwen/image-edit": (3, "jpeg"),
    "ideogram/v3-text-to-image": (1, None),
}
IMAGE_URL_FIELDS = {
    "google/nano-banana-edit": ("image_urls",),
    "nano-banana-pro": ("image_input",),
    "nano-banana-2": ("image_input",),
    "seedream/4.5-edit": ("image_urls",),
    "gpt-image/1.5-image-to-image": ("input_urls",),
    "flux-2/pro-image-to-image": ("input_urls",),
    "qwen/image-edit": ("image_url",),
}
CASES = [(model, kind, given, field) for model, cases in INVALID.items() for kind, given, field in cases]


def test_every_model_has_its_cases() -> None:
    assert set(VALID) == set(MODELS) == set(INVALID) == set(IMAGES)
    assert {"google/nano-banana", "nano-banana-pro", "qwen/image-edit", "ideogram/v3-text-to-image"} <= set(
        MODELS
    )


@pytest.mark.parametrize("model", sorted(MODELS))
def test_each_model_is_tested_for_every_kind_of_mistake_it_can_have(model: str) -> None:
    entry = MODELS[model]
    kinds = {kind for kind, _, _ in INVALID[model]}
    expected = {"unknown", "missing", "type", "enum", "too_long"}
    if any(spec.kind == "image_urls" for spec in entry.fields.values()):
        expected.add("too_many")
    if any(spec.kind == "count" for spec in entry.fields.values()):
        expected.add("count")
    assert expected <= kinds


@pytest.mark.parametrize("model", sorted(VALID))
def test_a_valid_input_is_accepted_as_given(model: str) -> None:
    assert validate_input(model, VALID[model]) == VALID[model]


@pytest.mark.parametrize(
    ("model", "kind", "given", "field"), CASES, ids=[f"{c[0]}-{c[1]}-{c[3]}" for c in CASES]
)
def test_an_invalid_input_is_one_problem_on_its_field(model: str, kind: str, given: Any, field: str) -> None:
    problems = validate_input(model, given)
    assert isinstance(problems, list)
    assert [problem.field for problem in problems] == [field]
    message = problems[0].message
    assert message and message[0].islower() and "Value error" not in message and field not in message


@pytest.mark.parametrize("model", sorted(MODELS))
def test_image_count_format_and_url_fields(model: str) -> None:
    entry = MODELS[model]
    normalized = validate_input(model, VALID[model])
    assert isinstance(normalized, dict)
    assert (entry.image_count(normalized), entry.output_format(normalized)) == IMAGES[model]
    assert entry.image_url_fields == IMAGE_URL_FIELDS.get(model, ())
    assert entry.image_count(normalized) <= entry.max_images


def test_defaults_decide_count_and_format_when_the_input_is_silent() -> None:
    assert MODELS["google/imagen4-fast"].image_count({"prompt": "x"}) == 1
    assert MODELS["qwen/image-edit"].image_count({"prompt": "x", "image_url": URL}) == 1
    assert MODELS["nano-banana-2"].output_format({"prompt": "x"}) == "jpeg"  # its documented default
    assert MODELS["nano-banana-pro"].output_format({"prompt": "x"}) == "png"
    assert MODELS["qwen/image-edit"].max_images == MODELS["google/imagen4-fast"].max_images == 4


def test_an_unknown_model_is_a_problem_on_model() -> None:
    for model in ("google/pro-image-to-image", "gpt-4o-image", "", None, 3):
        problems = validate_input(model, {"prompt": "x"})
        assert isinstance(problems, list) and [p.field for p in problems] == ["model"]


@pytest.mark.parametrize("given", [None, [], "prompt", 3])
def test_an_input_that_is_not_an_object_is_a_problem_on_input(given: Any) -> None:
    assert validate_input("google/nano-banana", given) == [
        InputProblem("input", "must be an object of google/nano-banana's input fields")
    ]


def test_a_count_given_as_a_number_is_sent_as_the_documented_string() -> None:
    assert validate_input("google/imagen4-fast", {"prompt": "x", "num_images": 3}) == {
        "prompt": "x",
        "num_images": "3",
    }


def test_null_means_absent_and_every_problem_is_reported_at_once() -> None:
    assert validate_input("google/nano-banana", {"prompt": "x", "image_size": None}) == {"prompt": "x"}
    problems = validate_input("gpt-image/1.5-text-to-image", {"prompt": "   ", "quality": None, "n": 1})
    assert isinstance(problems, list)
    assert sorted(p.field for p in problems) == [
        "input.aspect_ratio",
        "input.n",
        "input.prompt",
        "input.quality",
    ]
    assert problems[0].as_dict() == {
        "field": "input.n",
        "message": "is not an input of gpt-image/1.5-text-to-image; it takes prompt, aspect_ratio, quality",
    }


@pytest.mark.parametrize(
    "url",
    [
        URL,
        "http://127.0.0.1:9000/bucket/key?X-Amz-Signature=abc",
        "upload:u-1",
        "task:d231a99a/0",
        "task:t_1/15",
    ],
)
def test_image_fields_take_urls_and_references(url: str) -> None:
    assert validate_input("qwen/image-edit", {"prompt": "x", "image_url": url}) == {
        "prompt": "x",
        "image_url": url,
    }


@pytest.mark.parametrize(
    "url",
    [
        "ftp://host/a.png",
        "https://",
        "https://host/a b.png",
        "upload:",
        "upload:a/b",
        "task:t",
        "task:t/x",
        "s3://b/k",
    ],
)
def test_image_fields_refuse_anything_else(url: str) -> None:
    problems = validate_input("qwen/image-edit", {"prompt": "x", "image_url": url})
    assert isinstance(problems, list) and [p.field for p in problems] == ["input.image_url"]


def test_a_lone_surrogate_is_refused_in_text() -> None:
    problems = validate_input("google/nano-banana", {"prompt": "a \ud800 b"})
    assert isinstance(problems, list) and problems[0].field == "input.prompt"


# ---------------------------------------------------------------------------------- JSON Schema
@pytest.mark.parametrize("model", sorted(MODELS))
def test_the_json_schema_accepts_the_valid_input(model: str) -> None:
    schema = input_json_schema(model)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(VALID[model], schema, cls=jsonschema.Draft202012Validator)
    assert schema["required"] == list(MODELS[model].required_fields)
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(
    ("model", "kind", "given", "field"), CASES, ids=[f"{c[0]}-{c[1]}-{c[3]}" for c in CASES]
)
def test_the_json_schema_refuses_what_the_validator_refuses(
    model: str, kind: str, given: Any, field: str
) -> None:
    validator = jsonschema.Draft202012Validator(input_json_schema(model))
    assert not validator.is_valid(given)


def test_describe_lists_what_get_models_shows() -> None:
    shown = describe("google/imagen4-fast")
    assert shown["model"] == "google/imagen4-fast" and shown["family"] == "imagen4"
    assert shown["images"] == {"field": "num_images", "default": 1, "max": 4}
    assert shown["outputFormats"] == ["png", "jpeg", "webp"] and shown["outputFormatField"] is None
    assert shown["input"]["properties"]["num_images"] == {
        "description": "How many images to make, as a string: 1, 2, 3, 4.",
        "type": "string",
        "enum": ["1", "2", "3", "4"],
        "default": "1",
    }
    edit = describe("google/nano-banana-edit")
    assert edit["images"] == {"fixed": 1} and edit["imageUrlFields"] == ["image_urls"]
    assert edit["input"]["properties"]["image_urls"]["x-image-input"] is True
    json.dumps([describe(model) for model in MODELS])  # all of it is JSON


def test_the_registry_loads_no_pydantic_boto3_or_httpx() -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'layers' / 'shared')!r}); "
        "import image_pipeline.market_registry; "
        "heavy = ('pydantic', 'boto3', 'botocore', 'httpx'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_docs_upstream_lists_every_model() -> None:
    text = (ROOT / "docs" / "upstream.md").read_text()
    missing = [model for model in MODELS if f"| `{model}` |" not in text]
    assert missing == []
