"""imagegen with the Market: `models` prints GET /models, `generate --model M --input k=v` submits the
model's own input object, against the emulated API (which checks every body with openapi.json)."""

from __future__ import annotations

import json

from imagegen.cli import ExitCode
from imagegen_fakes import PNG, json_response


def stored_task(api, *images):
    api.add_task(
        {"status": "submitted"},
        {"status": "stored", "images": [api.image(i, body, kind) for i, (body, kind) in enumerate(images)]},
    )


def test_models_prints_every_model_with_its_family_images_and_formats(run, api):
    result = run("models")

    assert result.code == ExitCode.OK, result.err
    header, *rows = result.out.splitlines()
    assert header.split()[:3] == ["MODEL", "FAMILY", "IMAGES"]
    by_model = {row.split()[0]: row for row in rows}
    assert {"gpt-4o-image", "flux-kontext-pro", "nano-banana-pro", "google/imagen4-fast"} <= set(by_model)
    assert "1-4 (num_images)" in by_model["google/imagen4-fast"]
    assert "image_url" in by_model["qwen/image-edit"]


def test_models_with_a_model_prints_its_input_fields(run, api):
    result = run("models", "nano-banana-pro")

    assert result.code == ExitCode.OK, result.err
    lines = result.out.splitlines()
    assert "inside --input" in lines[0]
    fields = {line.split()[0]: line for line in lines[2:]}
    assert {"prompt", "image_input", "aspect_ratio", "resolution", "output_format"} <= set(fields)
    assert "yes" in fields["prompt"] and "1K, 2K, 4K" in fields["resolution"]
    assert run("models", "midjourney").code == ExitCode.USAGE


def test_models_json_is_the_apis_answer(run, api):
    result = run("models", "--json")

    assert result.code == ExitCode.OK, result.err
    assert [entry["model"] for entry in json.loads(result.out)["models"]][:3] == [
        "gpt-4o-image",
        "flux-kontext-pro",
        "flux-kontext-max",
    ]


def test_generate_with_a_market_model_sends_its_input_object(run, api, tmp_path):
    stored_task(api, (PNG, "image/png"))
    given = tmp_path / "input.json"
    given.write_text(json.dumps({"image_input": ["https://example.com/cat.png"], "resolution": "1K"}))

    result = run(
        "generate",
        "a lighthouse at dusk",
        "--model",
        "nano-banana-pro",
        "--input-json",
        f"@{given}",
        "--input",
        "aspect_ratio=16:9",
        "--input",
        "resolution=2K",
        "--out",
        str(tmp_path / "images"),
    )

    assert result.code == ExitCode.OK, result.err
    body = json.loads(api.posts()[0].content)
    assert body == {
        "model": "nano-banana-pro",
        "input": {
            "prompt": "a lighthouse at dusk",
            "image_input": ["https://example.com/cat.png"],
            "aspect_ratio": "16:9",
            "resolution": "2K",  # --input wins over --input-json
        },
    }
    assert (tmp_path / "images").is_dir() and any((tmp_path / "images").iterdir())


def test_an_input_value_is_json_when_it_parses(run, api, tmp_path):
    stored_task(api, (PNG, "image/png"), (PNG, "image/png"))

    result = run(
        "generate", "two owls", "--model", "google/imagen4-fast", "--input", "num_images=2",
        "--input", "seed=42", "--input", "negative_prompt=blurry, dark", "--no-download",
    )  # fmt: skip

    assert result.code == ExitCode.OK, result.err
    sent = json.loads(api.posts()[0].content)["input"]
    assert sent == {"prompt": "two owls", "num_images": 2, "seed": 42, "negative_prompt": "blurry, dark"}


def test_a_market_field_the_api_refuses_is_printed_with_its_name(run, api):
    # the API checks a Market model's input against its registry entry (the contract's schema cannot)
    problem = {"field": "input.image_size", "message": "must be one of '1:1', '16:9'; got '7:7'"}
    api.post_script = [
        json_response(422, {"message": "invalid request: check input.image_size", "errors": [problem]})
    ]
    result = run("generate", "x", "--model", "google/nano-banana", "--input", "image_size=7:7")

    assert result.code == ExitCode.USAGE, result.err
    assert "input.image_size" in result.err and "got '7:7'" in result.err
