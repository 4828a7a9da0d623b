"""imagegen with the Market: `models` prints GET /models, `generate --model M --input k=v` submits the
model's own input object, against the emulated API (which checks every body with openapi.json)."""

from __future__ import annotations

import json
import re

from imagegen.cli import ExitCode
from imagegen_fakes import JPEG, PNG, json_response


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
    assert lines[1].split() == ["FIELD", "TYPE", "REQUIRED", "ALLOWED", "DEFAULT", "DESCRIPTION"]
    assert re.split(r"\s{2,}", fields["resolution"]) == [
        "resolution", "string", "1K, 2K, 4K", "1K", "Resolution of the result: 1K, 2K or 4K."
    ]  # fmt: skip
    assert "array of string" in fields["image_input"] and "max items 8" in fields["image_input"]
    assert run("models", "midjourney").code == ExitCode.USAGE


def test_models_with_a_4o_or_flux_model_names_the_option_of_each_field(run, api):
    result = run("models", "flux-kontext-pro")

    assert result.code == ExitCode.OK, result.err
    lines = result.out.splitlines()
    assert "as options" in lines[0]
    fields = {line.split()[0]: re.split(r"\s{2,}", line) for line in lines[2:]}
    assert fields["safetyTolerance"] == [
        "safetyTolerance",
        "integer",
        "min 0, max 6",
        "2",
        "--safety-tolerance",
    ]
    assert fields["prompt"] == ["prompt", "string", "yes", "min length 1, max length 5000", "PROMPT"]
    assert fields["promptUpsampling"][-2:] == ["false", "--upsample-prompt"]  # a default as JSON writes it


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
        "generate", "two owls", "--model", "qwen/image-edit", "--input", "image_url=https://e.com/owl.png",
        "--input", "num_images=2", "--input", "seed=42", "--input", "guidance_scale=7.5",
        "--input", "sync_mode=true", "--input", "negative_prompt=blurry, dark", "--no-download",
    )  # fmt: skip

    assert result.code == ExitCode.OK, result.err
    sent = json.loads(api.posts()[0].content)["input"]
    assert sent == {
        "prompt": "two owls",
        "image_url": "https://e.com/owl.png",  # not JSON: kept as text
        "num_images": "2",  # a count the model takes as a string (GET /models): the text as written
        "seed": 42,
        "guidance_scale": 7.5,
        "sync_mode": True,
        "negative_prompt": "blurry, dark",
    }


def test_a_market_field_the_api_refuses_is_printed_with_its_name(run, api):
    # the API checks a Market model's input against its registry entry (the contract's schema cannot)
    problem = {"field": "input.image_size", "message": "must be one of '1:1', '16:9'; got '7:7'"}
    api.post_script = [
        json_response(422, {"message": "invalid request: check input.image_size", "errors": [problem]})
    ]
    result = run("generate", "x", "--model", "google/nano-banana", "--input", "image_size=7:7")

    assert result.code == ExitCode.USAGE, result.err
    assert "input.image_size" in result.err and "got '7:7'" in result.err


def test_an_input_value_takes_the_type_of_its_field_in_the_catalogue(run, api):
    # google/imagen4 takes its seed as text: 42 would be refused (input.seed must be a string)
    stored_task(api, (PNG, "image/png"))

    result = run(
        "generate", "an owl", "--model", "google/imagen4", "--input", "seed=42",
        "--input", "negative_prompt=true", "--no-download",
    )  # fmt: skip

    assert result.code == ExitCode.OK, result.err
    sent = json.loads(api.posts()[0].content)["input"]
    assert sent == {"prompt": "an owl", "seed": "42", "negative_prompt": "true"}
    assert [r.url.path for r in api.gets()].count("/Prod/models") == 1  # the catalogue, read once


def test_an_array_field_takes_a_lone_value_as_its_item_and_the_key_again_adds_one(run, api):
    stored_task(api, (PNG, "image/png"))
    urls = ["https://e.com/a.png", "https://e.com/b.png", "https://e.com/c.png"]

    result = run(
        "generate", "a collage", "--model", "nano-banana-pro",
        "--input-json", '{"image_input": ["https://e.com/old.png"]}',
        "--input", f"image_input={urls[0]}", "--input", f"image_input={json.dumps(urls[1:])}",
        "--no-download",
    )  # fmt: skip

    assert result.code == ExitCode.OK, result.err
    assert json.loads(api.posts()[0].content)["input"]["image_input"] == urls  # --input over --input-json


def test_the_prompt_goes_in_once(run, api):
    stored_task(api, (PNG, "image/png"))
    twice = run("generate", "a fox", "--model", "nano-banana-pro", "--input", "prompt=a wolf")
    assert twice.code == ExitCode.USAGE and "the prompt is given twice" in twice.err
    assert api.posts() == []

    # PROMPT is written on the command line, as --input is: it wins over --input-json's
    given = run(
        "generate", "a fox", "--model", "nano-banana-pro", "--input-json", '{"prompt": "a wolf"}',
        "--no-download",
    )  # fmt: skip
    assert given.code == ExitCode.OK, given.err
    assert json.loads(api.posts()[0].content)["input"] == {"prompt": "a fox"}
    only = run("generate", "--model", "nano-banana-pro", "--input", "prompt=a hare", "--no-download")
    assert only.code == ExitCode.OK, only.err
    assert json.loads(api.posts()[1].content)["input"] == {"prompt": "a hare"}


def test_input_with_a_4o_or_flux_model_is_a_usage_error_naming_it(run, api):
    for model in ([], ["--model", "gpt-4o-image"], ["--model", "flux-kontext-pro"]):
        result = run("generate", "a fox", *model, "--input", "aspect_ratio=16:9")

        assert result.code == ExitCode.USAGE
        assert "--input: is for Market models" in result.err
        assert (model[1:] or ["gpt-4o-image"])[0] in result.err
    for flag in ("--input-json", '{"aspect_ratio": "16:9"}'), ("--input", "x=1"):
        assert (
            "--input: is for Market models"
            in run("generate", "a fox", "--model", "flux-kontext-max", *flag).err
        )
    assert api.requests == []  # nothing sent, not even GET /models


def test_a_model_the_catalogue_does_not_list_is_refused_before_submitting(run, api):
    result = run("generate", "a fox", "--model", "midjourney", "--input", "stylize=100")

    assert result.code == ExitCode.USAGE
    assert "'midjourney' is not a model of this API; `imagegen models` lists them" in result.err
    assert api.posts() == []


def test_without_the_catalogue_the_values_are_json_and_the_api_decides(run, api):
    # an API without GET /models answers 403 "Missing Authentication Token" there (API Gateway)
    api.models_script = [json_response(403, {"message": "Missing Authentication Token"})]
    stored_task(api, (PNG, "image/png"))

    result = run("generate", "an owl", "--model", "google/imagen4-fast", "--input", "seed=7", "--no-download")

    assert result.code == ExitCode.OK, result.err
    assert "warning: cannot read the models (GET /models" in result.err
    assert json.loads(api.posts()[0].content)["input"] == {"prompt": "an owl", "seed": 7}


def test_a_market_task_stores_several_images_each_saved_with_its_own_format(run, api, tmp_path):
    webp = b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"fake webp pixels " * 64
    stored_task(api, (JPEG, "image/jpeg"), (webp, "image/webp"), (PNG, "image/png"), (JPEG, "image/jpeg"))

    result = run(
        "generate", "four owls", "--model", "google/imagen4-fast", "--input", "num_images=4",
        "--out", str(tmp_path),
    )  # fmt: skip

    assert result.code == ExitCode.OK, result.err
    saved = sorted(path.name for path in tmp_path.iterdir())
    assert saved == ["task-123_0.jpg", "task-123_1.webp", "task-123_2.png", "task-123_3.jpg"]
    assert (tmp_path / "task-123_1.webp").read_bytes() == webp
    assert "warning" not in result.err


def test_a_refused_input_names_each_field_and_where_to_read_them(run, api):
    result = run(
        "generate", "x", "--model", "nano-banana-pro", "--input", "resolution=8K", "--input", "style=noir",
        "--input", "image_input=ftp://e.com/a.png",
    )  # fmt: skip

    assert result.code == ExitCode.USAGE
    problems = [line for line in result.err.splitlines() if line.startswith("  - ")]
    assert sorted(line.split(":")[0] for line in problems) == [
        "  - input.image_input",
        "  - input.resolution",
        "  - input.style",
    ]
    assert "`imagegen models nano-banana-pro` lists its input fields" in result.err


def test_a_model_the_api_does_not_know_is_pointed_to_imagegen_models(run, api):
    api.models_script = [json_response(403, {"message": "Missing Authentication Token"})]

    result = run("generate", "x", "--model", "midjourney", "--input", "stylize=100")

    assert result.code == ExitCode.USAGE
    assert "  - model: " in result.err and "`imagegen models` lists the models" in result.err


def test_the_help_says_how_an_input_value_is_read(run, api):
    result = run("generate", "--help")

    assert result.code == ExitCode.OK
    text = " ".join(result.out.split())
    assert "VALUE is read as JSON when it parses" in text and "else kept as text" in text
    assert "PROMPT goes in as input.prompt" in text and "`imagegen models`" in text
