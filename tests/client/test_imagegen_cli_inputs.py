"""imagegen edit (a stored image by task:<id>/<n>) and generate --image (a local file uploaded first)."""

from __future__ import annotations

import json

import pytest
from imagegen.cli import ExitCode
from imagegen_fakes import PNG, STORAGE_HOST, FakeApi

from tests.client.test_imagegen_cli import stored_task

TASK = "0123456789abcdef0123456789abcdef"


def submitted(api: FakeApi) -> dict:
    (post,) = [r for r in api.posts() if r.url.path == "/Prod/tasks"]
    return json.loads(post.content)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ((), {"filesUrl": [f"task:{TASK}/0"], "size": "1:1"}),
        (("--image", "2"), {"filesUrl": [f"task:{TASK}/2"], "size": "1:1"}),
        (("--model", "flux-kontext-pro"), {"inputImage": f"task:{TASK}/0", "model": "flux-kontext-pro"}),
        (
            ("--model", "qwen/image-edit"),
            {"input": {"image_url": f"task:{TASK}/0", "prompt": "make it night"}},
        ),
        (
            ("--model", "google/nano-banana-edit"),
            {"input": {"image_urls": [f"task:{TASK}/0"], "prompt": "make it night"}},
        ),
    ],
)
def test_edit_sends_the_stored_image_by_reference(run, api, tmp_path, extra, expected):
    stored_task(api, (PNG, "image/png"))
    result = run("edit", TASK, *extra, "make it night", "--out", str(tmp_path))
    assert result.code == ExitCode.OK, result.err
    body = submitted(api)
    assert {key: body[key] for key in expected} == expected, body
    # the stored image itself never travels through the client
    assert not [r for r in api.requests if r.url.host == STORAGE_HOST and f"/images/{TASK}/" in r.url.path]


def test_generate_image_uploads_the_file_then_uses_its_reference(run, api, tmp_path):
    stored_task(api, (PNG, "image/png"))
    photo = tmp_path / "photo.png"
    photo.write_bytes(PNG)
    result = run("generate", "--image", str(photo), "make it night", "--out", str(tmp_path / "out"))
    assert result.code == ExitCode.OK, result.err
    upload = json.loads(next(r for r in api.posts() if r.url.path == "/Prod/uploads").content)
    assert upload == {"contentType": "image/png", "bytes": len(PNG)}
    (put,) = [r for r in api.requests if r.method == "PUT"]
    assert (
        put.content == PNG and put.headers["Content-Type"] == "image/png" and "x-api-key" not in put.headers
    )
    key = put.url.path
    assert api.blobs[key] == (PNG, "image/png")
    assert submitted(api)["filesUrl"] == ["upload:" + key.rsplit("/", 1)[1]]


def test_generate_image_with_flux_is_its_input_image(run, api, tmp_path):
    stored_task(api, (PNG, "image/png"))
    photo = tmp_path / "photo.png"
    photo.write_bytes(PNG)
    result = run("generate", "--model", "flux-kontext-max", "--image", str(photo), "night", "--no-download")
    assert result.code == ExitCode.OK, result.err
    assert submitted(api)["inputImage"].startswith("upload:")


def test_generate_image_refuses_a_file_that_is_not_an_image(run, api, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    result = run("generate", "--image", str(text), "x")
    assert result.code == ExitCode.USAGE and "not a PNG, JPEG or WebP" in result.err
    assert not api.posts()


@pytest.mark.parametrize(
    ("model", "images", "field", "expected"),
    [
        ("google/nano-banana-edit", 2, "image_urls", lambda refs: refs),  # an array: each --image an item
        ("qwen/image-edit", 1, "image_url", lambda refs: refs[0]),  # one URL
    ],
)
def test_generate_image_with_a_market_model_fills_its_first_image_field(
    run, api, tmp_path, model, images, field, expected
):
    stored_task(api, (PNG, "image/png"))
    paths = []
    for number in range(images):
        photo = tmp_path / f"photo{number}.png"
        photo.write_bytes(PNG)
        paths += ["--image", str(photo)]
    result = run("generate", "--model", model, *paths, "night", "--no-download")
    assert result.code == ExitCode.OK, result.err
    keys = [r.url.path for r in api.requests if r.method == "PUT"]
    references = ["upload:" + key.rsplit("/", 1)[1] for key in keys]
    assert len(references) == images
    assert submitted(api)["input"][field] == expected(references)


def test_generate_image_refuses_more_images_than_a_single_image_field_takes(run, api, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(PNG)
    result = run("generate", "--model", "qwen/image-edit", "--image", str(photo), "--image", str(photo), "x")
    assert result.code == ExitCode.USAGE and "image_url takes one image" in result.err, result.err
    assert not [r for r in api.posts() if r.url.path == "/Prod/uploads"]


def test_generate_image_refuses_a_market_model_without_image_fields(run, api, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(PNG)
    result = run("generate", "--model", "google/imagen4-fast", "--image", str(photo), "x")
    assert result.code == ExitCode.USAGE and "takes no input image" in result.err, result.err
    assert not [r for r in api.posts() if r.url.path == "/Prod/uploads"]


@pytest.mark.parametrize(
    ("model", "size", "limit"),
    [
        ("google/nano-banana-edit", 10 * 1_048_576 + 1, 10 * 1_048_576),
        ("gpt-4o-image", 26_214_401, 26_214_400),
    ],
)
def test_generate_image_refuses_a_file_over_the_models_limit_before_uploading_it(
    run, api, tmp_path, model, size, limit
):
    # GET /models says how large an input the model takes: no upload of bytes the API would refuse
    photo = tmp_path / "big.png"
    photo.write_bytes(PNG + b"\0" * (size - len(PNG)))
    result = run("generate", "--model", model, "--image", str(photo), "x")
    assert result.code == ExitCode.USAGE, result.err
    assert f"{size} bytes" in result.err and f"at most {limit}" in result.err, result.err
    assert not [r for r in api.posts() if r.url.path == "/Prod/uploads"]
