"""imagegen's command line, driven through main(argv) against the emulated API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import imagegen_contract as contract
import pytest
from imagegen.api import FLUX_FIELDS, FOUR_O_FIELDS
from imagegen.cli import ExitCode, main
from imagegen_fakes import API_KEY, API_URL, JPEG, PNG, FakeApi, json_response, sha256


def stored_task(api: FakeApi, *images: tuple[bytes, str]) -> str:
    """submitted -> submitted (40%) -> downloading -> stored, over four polls."""
    listed = [api.image(i, data, ctype) for i, (data, ctype) in enumerate(images)]
    return api.add_task(
        {"status": "submitted"},
        {"status": "submitted", "progress": 0.4},
        {"status": "downloading", "progress": 1.0},
        {"status": "stored", "progress": 1.0, "images": listed},
    )


# ---------------------------------------------------------------------------------------------- generate


def test_generate_follows_the_task_and_writes_verified_files(run, api, clock, tmp_path):
    task_id = stored_task(api, (PNG, "image/png"), (JPEG, "image/jpeg"))
    out = tmp_path / "images"

    result = run("generate", "a red fox in snow", "--size", "3:2", "--variants", "2", "--out", str(out))

    assert result.code == ExitCode.OK, result.err
    png, jpg = out / f"{task_id}_0.png", out / f"{task_id}_1.jpg"
    assert png.read_bytes() == PNG
    assert jpg.read_bytes() == JPEG
    assert result.out.splitlines() == [f"taskId: {task_id}", str(png), str(jpg)]
    assert sorted(p.name for p in out.iterdir()) == [png.name, jpg.name]  # no temp files left

    (post,) = api.posts()
    assert post.url == f"{API_URL}/tasks"
    assert json.loads(post.content) == {
        "prompt": "a red fox in snow",
        "size": "3:2",
        "nVariants": 2,
        "isEnhance": False,
        "enableFallback": False,
    }
    assert post.headers["x-api-key"] == API_KEY
    assert uuid.UUID(post.headers["Idempotency-Key"]).version == 4
    assert len(api.gets()) == 4
    assert all(r.url == f"{API_URL}/tasks/{task_id}" for r in api.gets())
    assert clock.sleeps == [2.0] * 4  # the default poll interval, before each poll
    # the presigned links are fetched as they are, without our API key
    assert [r.url.params["X-Amz-Signature"] for r in api.downloads()] == ["secret0", "secret1"]
    assert all("x-api-key" not in r.headers for r in api.downloads())
    # stderr is not a TTY here: one line per status change, not per poll
    status_lines = [line for line in result.err.splitlines() if "status:" in line]
    assert [line.split("status: ")[1].split()[0] for line in status_lines] == [
        "submitted",
        "downloading",
        "stored",
    ]


def test_generate_sends_every_option(run, api, tmp_path):
    stored_task(api, (PNG, "image/png"))
    files = [f"https://example.com/ref{i}.png" for i in range(3)]

    result = run(
        "generate",
        "edit this",
        "--model",
        "gpt-4o-image",
        "--files",
        *files[:2],
        "--files",
        files[2],
        "--mask",
        "https://example.com/mask.png",
        "--enhance",
        "--fallback",
        "--fallback-model",
        "FLUX_MAX",
        "--webhook",
        "https://hooks.example.com/imagegen",
        "--poll-interval",
        "0.5",
        "--out",
        str(tmp_path),
    )

    assert result.code == ExitCode.OK, result.err
    body = json.loads(api.posts()[0].content)
    assert body == {
        "model": "gpt-4o-image",
        "prompt": "edit this",
        "size": "1:1",
        "nVariants": 1,
        "isEnhance": True,
        "enableFallback": True,
        "filesUrl": files,
        "maskUrl": "https://example.com/mask.png",
        "fallbackModel": "FLUX_MAX",
        "webhookUrl": "https://hooks.example.com/imagegen",
    }
    # every field the API takes for 4o can be set from the command line
    assert sorted(body) == sorted(FIELDS - set(FLUX_FIELDS) - {"input"})


FIELDS = set(contract.resolve(contract.request_schema("POST", "/tasks"))["properties"])


def flux_task(api: FakeApi, data: bytes, content_type: str) -> str:
    """submitted -> stored with one image, as Flux Kontext makes them (images/{taskId}/0.jpg or .png)."""
    return api.add_task(
        {"status": "submitted", "progress": 0.5},
        {"status": "stored", "progress": 1.0, "images": [api.image(0, data, content_type)]},
    )


@pytest.mark.parametrize(
    ("argv", "data", "content_type", "saved_as"),
    [
        ([], JPEG, "image/jpeg", "jpg"),  # jpeg, the API's default
        (["--format", "jpeg"], JPEG, "image/jpeg", "jpg"),
        (["--format", "png"], PNG, "image/png", "png"),
    ],
)
def test_a_flux_kontext_generate_saves_its_image_with_the_formats_extension(
    run, api, tmp_path, argv, data, content_type, saved_as
):
    # Given a Flux Kontext task that stores one image in the format asked for
    task_id = flux_task(api, data, content_type)
    # When it is generated with a Flux Kontext model
    result = run(
        "generate",
        "--model",
        "flux-kontext-pro",
        "--aspect-ratio",
        "16:9",
        *argv,
        "a lighthouse",
        "--out",
        str(tmp_path),
    )
    # Then the request carries the model and its own fields only, and the image is saved as .jpg or .png
    assert result.code == ExitCode.OK, result.err
    body = json.loads(api.posts()[0].content)
    assert body == {"model": "flux-kontext-pro", "prompt": "a lighthouse", "aspectRatio": "16:9"} | (
        {"outputFormat": argv[1]} if argv else {}
    )
    saved = tmp_path / f"{task_id}_0.{saved_as}"
    assert saved.read_bytes() == data
    assert result.out.splitlines() == [f"taskId: {task_id}", str(saved)]
    assert "warning" not in result.err  # one image is what Flux Kontext makes


def test_a_flux_kontext_edit_sends_every_option(run, api, tmp_path):
    flux_task(api, PNG, "image/png")
    image = "https://example.com/photo.jpg?size=large"

    result = run(
        "generate",
        "make it snow",
        "--model",
        "flux-kontext-max",
        "--aspect-ratio",
        "9:16",
        "--input-image",
        image,
        "--format",
        "png",
        "--safety-tolerance",
        "2",
        "--no-translate",
        "--upsample-prompt",
        "--watermark",
        "acme",
        "--webhook",
        "https://hooks.example.com/imagegen",
        "--out",
        str(tmp_path),
    )

    assert result.code == ExitCode.OK, result.err
    body = json.loads(api.posts()[0].content)
    assert body == {
        "model": "flux-kontext-max",
        "prompt": "make it snow",
        "aspectRatio": "9:16",
        "inputImage": image,
        "outputFormat": "png",
        "enableTranslation": False,
        "promptUpsampling": True,
        "safetyTolerance": 2,
        "watermark": "acme",
        "webhookUrl": "https://hooks.example.com/imagegen",
    }
    # every field the API takes for Flux Kontext can be set from the command line
    assert sorted(body) == sorted(FIELDS - set(FOUR_O_FIELDS) - {"input"})
    assert run("generate", "x", "--model", "flux-kontext-pro", "--translate", "--no-download").code == 0
    assert json.loads(api.posts()[1].content)["enableTranslation"] is True


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--size", "1:1"], "--size"),
        (["--variants", "1"], "--variants"),
        (["--files", "https://e.com/p.png"], "--files"),
        (["--mask", "https://e.com/m.png"], "--mask"),
        (["--enhance"], "--enhance"),
        (["--fallback"], "--fallback"),
        (["--fallback-model", "FLUX_MAX"], "--fallback-model"),
    ],
)
def test_a_4o_option_with_a_flux_kontext_model_is_refused_before_anything_is_sent(
    run, api, tmp_path, argv, option
):
    result = run("generate", "a fox", "--model", "flux-kontext-pro", *argv, "--out", str(tmp_path))

    assert result.code == ExitCode.USAGE
    assert f"{option} is a gpt-4o-image option: --model flux-kontext-pro does not take it" in result.err
    assert api.requests == []


def test_every_option_of_the_other_model_is_named_at_once(run, api, tmp_path):
    argv = ("a fox", "--model", "flux-kontext-max", "--size", "3:2", "--files", "https://e.com/p.png")

    result = run("generate", *argv, "--aspect-ratio", "1:1", "--out", str(tmp_path))

    assert result.code == ExitCode.USAGE
    (line,) = [line for line in result.err.splitlines() if line.startswith("imagegen: error:")]
    # both named at once, and not the model's own option
    expected = "--size, --files are gpt-4o-image options: --model flux-kontext-max does not take them"
    assert line.split(" (")[0] == f"imagegen: error: {expected}"
    assert api.requests == []


@pytest.mark.parametrize("model", [[], ["--model", "gpt-4o-image"]])
@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--aspect-ratio", "16:9"], "--aspect-ratio"),
        (["--input-image", "https://e.com/p.png"], "--input-image"),
        (["--format", "jpeg"], "--format"),
        (["--safety-tolerance", "2"], "--safety-tolerance"),
        (["--translate"], "--translate"),
        (["--no-translate"], "--no-translate"),
        (["--upsample-prompt"], "--upsample-prompt"),
        (["--watermark", "acme"], "--watermark"),
    ],
)
def test_a_flux_kontext_option_with_4o_is_refused_before_anything_is_sent(
    run, api, tmp_path, model, argv, option
):
    result = run("generate", "a fox", *model, *argv, "--out", str(tmp_path))

    assert result.code == ExitCode.USAGE
    assert f"{option} is a Flux Kontext option: gpt-4o-image does not take it" in result.err
    assert "--model flux-kontext-pro" in result.err
    assert api.requests == []


def test_generate_an_edit_from_reference_images_alone(run, api, tmp_path):
    # Given reference images and no prompt (the API takes filesUrl alone)
    task_id = stored_task(api, (PNG, "image/png"))
    files = ["https://example.com/photo.png", "https://example.com/style.JPG?v=2"]
    # When they are generated from
    result = run("generate", "--files", *files, "--size", "2:3", "--out", str(tmp_path))
    # Then the request carries the images and no prompt, and the result is downloaded as for a prompt
    assert result.code == ExitCode.OK, result.err
    assert json.loads(api.posts()[0].content) == {
        "size": "2:3",
        "nVariants": 1,
        "isEnhance": False,
        "enableFallback": False,
        "filesUrl": files,
    }
    assert (tmp_path / f"{task_id}_0.png").read_bytes() == PNG


def test_a_mask_edit_from_reference_images_alone(run, api, tmp_path):
    stored_task(api, (PNG, "image/png"))
    image, mask = "https://example.com/photo.webp", "https://example.com/mask.png"

    result = run("generate", "--files", image, "--mask", mask, "--no-download")

    assert result.code == ExitCode.OK, result.err
    body = json.loads(api.posts()[0].content)
    assert (body["filesUrl"], body["maskUrl"], "prompt" in body) == ([image], mask, False)


def test_generate_no_download_prints_the_links(run, api, tmp_path):
    task_id = stored_task(api, (PNG, "image/png"))
    out = tmp_path / "never"

    result = run("generate", "a fox", "--no-download", "--out", str(out))

    assert result.code == ExitCode.OK, result.err
    assert result.out.splitlines()[0] == f"taskId: {task_id}"
    assert result.out.splitlines()[1].startswith(f"image 0: https://bucket.s3.test/images/{task_id}/0.png?")
    assert api.downloads() == []
    assert not out.exists()


def test_generate_failed_task_exits_1_with_code_and_message(run, api, tmp_path):
    api.add_task(
        {"status": "submitted", "progress": 0.2},
        {"status": "failed", "error": {"code": 400, "message": "prompt flagged by content policy"}},
    )

    result = run("generate", "something", "--out", str(tmp_path))

    assert result.code == ExitCode.TASK_FAILED == 1
    assert "task task-123 failed: [400] prompt flagged by content policy" in result.err
    assert list(tmp_path.iterdir()) == []


def test_generate_times_out_with_exit_4_after_a_bounded_number_of_polls(run, api, clock, tmp_path):
    api.add_task({"status": "submitted", "progress": 0.1})

    result = run("generate", "slow", "--timeout", "10", "--poll-interval", "3", "--out", str(tmp_path))

    assert result.code == ExitCode.TIMEOUT == 4
    assert "timed out after 10s" in result.err
    assert "last status: submitted" in result.err
    assert "imagegen status task-123" in result.err
    assert len(api.gets()) == 4  # at 3, 6, 9 and 10 seconds
    assert sum(clock.sleeps) == pytest.approx(10)


def test_generate_sha256_mismatch_is_an_error_and_keeps_no_file(run, api, tmp_path):
    good = api.image(0, PNG, "image/png")
    bad = api.image(1, JPEG, "image/jpeg", sha="0" * 64)
    api.add_task({"status": "stored", "images": [good, bad]})

    result = run("generate", "a fox", "--variants", "2", "--out", str(tmp_path))

    assert result.code == ExitCode.API == 3
    assert "sha256 mismatch for task-123_1.jpg" in result.err
    assert f"got {sha256(JPEG)}" in result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["task-123_0.png"]
    assert (tmp_path / "task-123_0.png").read_bytes() == PNG


def test_generate_expired_download_link(run, api, tmp_path):
    image = api.image(0, PNG, "image/png")
    api.blobs.clear()  # the storage answers 403 AccessDenied, as S3 does for an expired link
    api.add_task({"status": "stored", "images": [image]})

    result = run("generate", "a fox", "--out", str(tmp_path))

    assert result.code == ExitCode.API
    assert "HTTP 403" in result.err and "expired" in result.err
    assert "X-Amz-Signature" not in result.err  # presigned credentials are not echoed


def test_generate_429_waits_for_retry_after_and_reuses_the_idempotency_key(run, api, clock, tmp_path):
    stored_task(api, (PNG, "image/png"))
    api.post_script = [json_response(429, {"message": "Too Many Requests"}, {"Retry-After": "7"})]

    result = run("generate", "a fox", "--out", str(tmp_path))

    assert result.code == ExitCode.OK, result.err
    first, second = api.posts()
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert first.content == second.content
    assert clock.sleeps[0] == 7.0
    assert "rate limited (HTTP 429)" in result.err
    assert "retrying in 7s (attempt 2 of 3)" in result.err


def test_generate_429_gives_up_after_three_tries(run, api, clock, tmp_path):
    api.post_script = [
        json_response(429, {"message": "Too Many Requests"}, {"Retry-After": "2"}) for _ in range(5)
    ]

    result = run("generate", "a fox", "--out", str(tmp_path))

    assert result.code == ExitCode.API
    assert len(api.posts()) == 3
    assert len({r.headers["Idempotency-Key"] for r in api.posts()}) == 1
    assert clock.sleeps == [2.0, 2.0]
    assert "still rate limited" in result.err


def test_generate_retry_after_is_capped(run, api, clock, tmp_path):
    stored_task(api, (PNG, "image/png"))
    api.post_script = [json_response(429, {"message": "slow down"}, {"Retry-After": "86400"})]

    result = run("generate", "a fox", "--out", str(tmp_path))

    assert result.code == ExitCode.OK
    assert clock.sleeps[0] == 60.0


def test_generate_network_error_and_5xx_retries_reuse_the_idempotency_key(run, api, clock, tmp_path):
    stored_task(api, (PNG, "image/png"))
    api.post_script = [
        httpx.ReadTimeout("timed out"),
        json_response(500, {"message": "Internal server error"}),
    ]

    result = run("generate", "a fox", "--out", str(tmp_path))

    assert result.code == ExitCode.OK, result.err
    keys = [r.headers["Idempotency-Key"] for r in api.posts()]
    assert len(keys) == 3 and len(set(keys)) == 1
    assert clock.sleeps[:2] == [1.0, 2.0]  # exponential backoff without Retry-After
    assert "network error" in result.err and "HTTP 500" in result.err


def test_each_generate_invocation_uses_a_fresh_idempotency_key(run, api, tmp_path):
    stored_task(api, (PNG, "image/png"))
    run("generate", "a fox", "--out", str(tmp_path))
    stored_task(api, (PNG, "image/png"))
    run("generate", "a fox", "--out", str(tmp_path))

    first, second = api.posts()
    assert first.headers["Idempotency-Key"] != second.headers["Idempotency-Key"]


def test_a_transient_poll_error_is_retried(run, api, tmp_path):
    stored_task(api, (PNG, "image/png"))
    api.get_script = [json_response(503, {"message": "busy"})]

    result = run("generate", "a fox", "--out", str(tmp_path))

    assert result.code == ExitCode.OK, result.err
    assert "HTTP 503 on GET" in result.err


def test_a_lasting_poll_error_tells_how_to_resume(run, api, tmp_path):
    api.get_script = [httpx.ConnectTimeout("timed out") for _ in range(3)]

    result = run("generate", "a fox", "--out", str(tmp_path))

    assert result.code == ExitCode.API
    assert "network error" in result.err
    assert "imagegen status task-123" in result.err


# ---------------------------------------------------------------------------------------------- errors


def test_422_prints_each_bad_field_and_exits_2(run, api, tmp_path):
    api.post_script = [
        json_response(
            422,
            {
                "message": "invalid request",
                "errors": [
                    {"field": "size", "message": "must be one of 1:1, 3:2, 2:3"},
                    {"field": "filesUrl.0", "message": "unreachable URL"},
                ],
            },
        )
    ]

    result = run("generate", "a fox", "--out", str(tmp_path))

    assert result.code == ExitCode.USAGE == 2
    assert "the API rejected the request (HTTP 422): invalid request" in result.err
    assert "  - size: must be one of 1:1, 3:2, 2:3" in result.err
    assert "  - filesUrl.0: unreachable URL" in result.err
    assert len(api.posts()) == 1  # not retried


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (402, "insufficient credits (need 4, have 1)", "insufficient credits"),
        (503, "upstream under maintenance", "service unavailable"),
        (418, "I'm a teapot", "unexpected API answer (HTTP 418 from POST"),
    ],
)
def test_error_statuses_exit_3_with_a_clear_message(run, api, clock, tmp_path, status, message, expected):
    api.post_script = [json_response(status, {"message": message}) for _ in range(3)]

    result = run("generate", "a fox", "--out", str(tmp_path))

    assert result.code == ExitCode.API
    last_line = result.err.strip().splitlines()[-1]
    assert expected in last_line
    assert message in last_line
    assert f"HTTP {status}" in last_line


def test_402_is_not_retried(run, api, tmp_path):
    api.post_script = [json_response(402, {"message": "insufficient credits"})]
    assert run("generate", "a fox", "--out", str(tmp_path)).code == ExitCode.API
    assert len(api.posts()) == 1


def test_a_gateway_502_is_retried_with_the_same_key(run, api, clock, tmp_path):
    api.post_script = [json_response(502, {"message": "Internal server error"}) for _ in range(3)]

    result = run("generate", "a fox", "--out", str(tmp_path))

    assert result.code == ExitCode.API
    assert len({r.headers["Idempotency-Key"] for r in api.posts()}) == 1
    assert len(api.posts()) == 3


KEY_REJECTED = "the image service rejected this deployment's API key (not your request)"  # the API's 502


def test_a_502_for_the_deployments_upstream_key_is_not_retried_and_said_once(run, api, clock, tmp_path):
    # Given the API answers that the image service rejects its own upstream key
    api.post_script = [json_response(502, {"message": KEY_REJECTED}) for _ in range(3)]
    # When a task is submitted
    result = run("generate", "a fox", "--out", str(tmp_path))
    # Then one try is enough: waiting cannot fix a key
    assert result.code == ExitCode.API
    assert len(api.posts()) == 1 and clock.sleeps == []
    assert "retrying" not in result.err
    (line,) = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert "HTTP 502" in line and "operator" in line
    assert line.lower().count("key") == 1 and line.lower().count("not your") == 1


@pytest.mark.parametrize(
    ("status", "message", "headers"),
    [
        (503, "the image service is unavailable (maintenance); try again shortly", {"Retry-After": "30"}),
        (503, "storage is temporarily unavailable; try again shortly", {"Retry-After": "5"}),
        (429, "too many generation requests; retry in 3 s", {"Retry-After": "3"}),
    ],
)
def test_advice_the_api_already_gives_is_not_repeated(run, api, tmp_path, status, message, headers):
    api.post_script = [json_response(status, {"message": message}, headers) for _ in range(3)]

    result = run("generate", "a fox", "--out", str(tmp_path))

    assert result.code == ExitCode.API
    last_line = result.err.strip().splitlines()[-1]
    assert message in last_line and f"HTTP {status}" in last_line
    assert last_line.count("try again") + last_line.count("retry in") == 1
    assert last_line.count("unavailable") <= 1


def test_an_empty_task_id_is_a_usage_error_not_a_key_problem(run, api):
    # API Gateway answers GET /tasks/ (no id) with 403 Missing Authentication Token
    api.get_script = [json_response(403, {"message": "Missing Authentication Token"})]

    result = run("status", "")

    assert result.code == ExitCode.USAGE
    assert "error: the task id is empty" in result.err
    assert "forbidden" not in result.err and "needs a key" not in result.err
    assert api.requests == []


def test_downloaded_images_follow_the_umask(run, api, tmp_path):
    task_id = stored_task(api, (PNG, "image/png"))
    previous = os.umask(0o027)
    try:
        result = run("generate", "a fox", "--out", str(tmp_path))
    finally:
        os.umask(previous)

    assert result.code == ExitCode.OK, result.err
    assert (tmp_path / f"{task_id}_0.png").stat().st_mode & 0o777 == 0o640


def test_403_without_a_key_says_how_to_pass_one(run, api, tmp_path):
    result = run("--api-url", API_URL, "generate", "a fox", "--out", str(tmp_path), auth=False)

    assert result.code == ExitCode.API
    assert "forbidden (HTTP 403)" in result.err
    assert "--api-key" in result.err and "IMAGEGEN_API_KEY" in result.err
    assert "x-api-key" not in api.posts()[0].headers


def test_403_with_a_wrong_key_says_it_was_rejected(run, api, tmp_path):
    result = run("--api-url", API_URL, "--api-key", "wrong", "status", "task-123", auth=False)

    assert result.code == ExitCode.API
    assert "the API key was rejected" in result.err


def test_connection_refused_suggests_make_local(clock, capsys, tmp_path):
    posts: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        posts.append(request)
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    code = main(
        ["generate", "a fox", "--out", str(tmp_path)],
        transport=httpx.MockTransport(refuse),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
    )

    err = capsys.readouterr().err
    assert code == ExitCode.API
    assert "cannot connect to http://127.0.0.1:3000 (connection refused)" in err
    assert "make local" in err
    assert len(posts) == 1 and clock.sleeps == []  # nothing listens: no point retrying


def test_malformed_success_answer(run, api, tmp_path):
    api.post_script = [httpx.Response(202, text="<html>oops</html>")]

    result = run("generate", "a fox", "--out", str(tmp_path))

    assert result.code == ExitCode.API
    assert "unexpected API answer" in result.err


# ---------------------------------------------------------------------------------------------- usage


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["generate"],
        ["generate", "a fox", "--size", "4:3"],
        ["generate", "a fox", "--variants", "3"],
        ["generate", "a fox", "--files", "not-a-url"],
        ["generate", "a fox", "--files", *[f"https://e.com/{i}.png" for i in range(6)]],
        ["generate", "a fox", "--mask", "ftp://e.com/m.png"],
        ["generate", "a fox", "--fallback-model", "GPT_IMAGE_1"],
        ["generate", "a fox", "--fallback", "--fallback-model", "DALL_E"],
        ["generate", "a fox", "--timeout", "0"],
        ["generate", "a fox", "--poll-interval", "-1"],
        ["generate", "   "],
        ["generate", "x" * 5001],
        ["generate", "--size", "3:2"],  # neither a prompt nor reference images
        ["generate", "a fox", "--mask", "https://e.com/m.png"],  # a mask needs the image it masks
        ["generate", "a fox", "--files", "https://e.com/anim.gif"],  # not an image type the API takes
        ["generate", "a fox", "--files", "https://photo.png"],  # a host, not an image file
        ["generate", "a fox", "--webhook", "ftp://hooks.example.com/x"],
        ["generate", "a fox", "--webhook-url", "http://hooks example.com/x"],  # not a URL
        ["generate", "a fox", "--files", "https://exa_mple.com/p.png"],  # not a plain host name
        ["generate", "a fox", "--model", "nano-banana-pro", "--size", "3:2"],  # a 4o option, Market model
        ["generate", "a fox", "--input", "aspect_ratio=16:9"],  # --input is for Market models
        ["generate", "a fox", "--model", "nano-banana-pro", "--input", "no-equals-sign"],
        ["generate", "a fox", "--model", "nano-banana-pro", "--input-json", "[1, 2]"],
        ["generate", "--model", "flux-kontext-pro"],  # Flux Kontext needs a prompt
        ["generate", "--model", "flux-kontext-pro", "--input-image", "https://e.com/p.png"],
        ["generate", "a fox", "--model", "flux-kontext-pro", "--aspect-ratio", "3:2"],
        ["generate", "a fox", "--model", "flux-kontext-pro", "--format", "webp"],
        ["generate", "a fox", "--model", "flux-kontext-pro", "--input-image", "not-a-url"],
        ["generate", "a fox", "--model", "flux-kontext-pro", "--safety-tolerance", "7"],
        ["generate", "a fox", "--model", "flux-kontext-pro", "--safety-tolerance", "-1"],
        ["generate", "a fox", "--model", "flux-kontext-pro", "--safety-tolerance", "two"],
        ["generate", "a fox", "--model", "flux-kontext-pro", "--watermark", "w" * 201],
        ["list", "--limit", "0"],
        ["list", "--limit", "101"],
        ["list", "--status", "done"],
        ["delete", "  "],
        ["delete"],
        ["--api-url", "abc.execute-api.us-east-1.amazonaws.com", "status", "t"],
        ["status"],
    ],
)
def test_usage_errors_exit_2_before_any_request(run, api, tmp_path, argv):
    result = run(*argv, "--out", str(tmp_path)) if argv[:1] == ["generate"] and len(argv) > 1 else run(*argv)

    assert result.code == ExitCode.USAGE == 2
    assert "error" in result.err
    assert api.requests == []


def test_the_safety_tolerance_of_an_edit_is_at_most_2(run, api, tmp_path):
    edit = ("--model", "flux-kontext-pro", "--input-image", "https://e.com/p.png", "--safety-tolerance")

    result = run("generate", "a fox", *edit, "3", "--out", str(tmp_path))

    assert result.code == ExitCode.USAGE
    assert "--safety-tolerance: must be 0 to 2 when editing an --input-image" in result.err
    assert api.requests == []
    # while a text-to-image task takes up to 6, and an edit 2
    flux_task(api, JPEG, "image/jpeg")
    assert run("generate", "a fox", *edit[:2], "--safety-tolerance", "6", "--no-download").code == ExitCode.OK
    assert run("generate", "a fox", *edit, "2", "--no-download").code == ExitCode.OK
    assert [json.loads(post.content)["safetyTolerance"] for post in api.posts()] == [6, 2]


def test_out_must_be_a_directory(run, api, tmp_path):
    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("x")

    result = run("generate", "a fox", "--out", str(not_a_dir))

    assert result.code == ExitCode.USAGE
    assert "output directory" in result.err
    assert api.requests == []


def test_help_exits_0(run, capsys):
    assert run("--help").code == 0
    assert run("generate", "--help").code == 0


# ---------------------------------------------------------------------------------------------- status


def test_status_prints_status_progress_and_images(run, api):
    image = api.image(0, PNG, "image/png")
    api.add_task({"status": "stored", "progress": 1.0, "images": [image]})

    result = run("status", "task-123")

    assert result.code == ExitCode.OK
    assert "model:    gpt-4o-image" in result.out
    assert "status:   stored" in result.out
    assert "progress: 100%" in result.out
    assert f"[0] image/png, {len(PNG)} bytes, sha256 {sha256(PNG)}" in result.out
    assert image["url"] in result.out


def test_status_shows_the_model(run, api):
    image = api.image(0, JPEG, "image/jpeg")
    api.add_task({"status": "stored", "progress": 1.0, "images": [image], "model": "flux-kontext-max"})

    result = run("status", "task-123")

    assert result.code == ExitCode.OK
    assert result.out.splitlines()[:3] == [
        "task:     task-123",
        "model:    flux-kontext-max",
        "status:   stored",
    ]
    assert f"[0] image/jpeg, {len(JPEG)} bytes" in result.out
    assert "images/task-123/0.jpg?" in result.out


def test_status_of_a_failed_task_shows_the_error(run, api):
    api.add_task({"status": "failed", "error": {"code": "GENERATION_FAILED", "message": "upstream failed"}})

    result = run("status", "task-123")

    assert result.code == ExitCode.OK
    assert "status:   failed" in result.out
    assert "error:    [GENERATION_FAILED] upstream failed" in result.out
    assert "progress: -" in result.out


def test_status_json_prints_the_raw_answer(run, api):
    api.add_task({"status": "downloading", "progress": 0.5})

    result = run("status", "task-123", "--json")

    assert result.code == ExitCode.OK
    assert json.loads(result.out) == {
        "taskId": "task-123",
        "model": "gpt-4o-image",
        "status": "downloading",
        "progress": 0.5,
        "images": [],
        "error": None,
        "createdAt": "2025-01-01T00:00:00Z",
        "updatedAt": "2025-01-01T00:00:10Z",
    }


def test_status_404(run, api):
    result = run("status", "nope")

    assert result.code == ExitCode.API
    assert result.err.strip().splitlines()[-1] == "error: task nope not found (HTTP 404)"  # said once


def test_status_task_id_is_escaped_in_the_path(run, api):
    run("status", "../admin?x=1")
    assert api.gets()[0].url.raw_path == b"/Prod/tasks/..%2Fadmin%3Fx%3D1"


# ---------------------------------------------------------------------------------------------- config


def test_global_options_may_follow_the_command(api, clock, capsys):
    api.add_task({"status": "submitted"})
    code = main(
        ["status", "task-123", "--api-url", API_URL + "///", "--api-key", API_KEY],
        transport=httpx.MockTransport(api.handler),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
    )
    assert code == ExitCode.OK
    assert api.gets()[0].url == f"{API_URL}/tasks/task-123"


def test_environment_variables(api, clock, capsys, monkeypatch):
    monkeypatch.setenv("IMAGEGEN_API_URL", API_URL + "/")
    monkeypatch.setenv("IMAGEGEN_API_KEY", API_KEY)
    api.add_task({"status": "submitted"})

    code = main(["status", "task-123"], transport=httpx.MockTransport(api.handler), sleep=clock.sleep)

    assert code == ExitCode.OK
    assert api.gets()[0].headers["x-api-key"] == API_KEY


def test_default_api_url_is_the_local_stack(clock, capsys):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return json_response(404, {"message": "task t not found"})

    assert main(["status", "t"], transport=httpx.MockTransport(handler), sleep=clock.sleep) == ExitCode.API
    assert str(seen[0].url) == "http://127.0.0.1:3000/tasks/t"


def test_python_dash_m_imagegen():
    client_dir = Path(__file__).resolve().parents[2] / "client"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(client_dir), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "imagegen", "--version"], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("imagegen ")


def test_fake_clock_is_used_for_polling_not_real_time(run, api, tmp_path):
    # guard: a 600 s default timeout must not make the suite wait
    api.add_task({"status": "submitted"})
    assert run("generate", "a fox", "--out", str(tmp_path)).code == ExitCode.TIMEOUT
    assert len(api.gets()) == 300
