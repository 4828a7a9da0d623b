"""The emulator fetches input images as the upstream would (filesUrl, maskUrl, inputImage, a Market
model's image fields): what it fetched is recorded, and a URL that cannot be fetched, or does not answer
an image, ends the task the way the platform documents (docs/upstream.md)."""

from __future__ import annotations

import hashlib

import pytest
from emulator_helpers import api, finished, flux_submit, submit
from market_helpers import submit_market

from tests.http_fixtures import Reply, image_server, png_bytes, unreachable_url


def test_an_unreachable_files_url_ends_the_4o_task_451(emulator):
    server = emulator()
    with api(server) as client:
        task_id = submit(client, prompt="make it night", filesUrl=[unreachable_url()])
    task = finished(server, task_id)
    assert (task["status"], task["errorCode"]) == ("GENERATE_FAILED", 451), task
    assert task["callbackBody"] is None or task["callbackBody"]["code"] == 451
    assert task["inputs"][0]["field"] == "filesUrl[0]" and task["inputs"][0]["ok"] is False


def test_each_4o_input_is_fetched_and_recorded_byte_for_byte(emulator, receiver):
    server, hook = emulator(), receiver()
    photo, mask = png_bytes(64, 48), png_bytes(64, 48, (0, 0, 0))
    with image_server() as host, api(server) as client:
        task_id = submit(
            client,
            filesUrl=[host.serve("/photo.png", Reply(200, photo))],
            maskUrl=host.serve("/mask.png", Reply(200, mask)),
            callBackUrl=hook.url,
        )
        task = finished(server, task_id)
        fetched = client.get(f"/admin/tasks/{task_id}").json()["inputs"]
        listed = client.get("/admin/images").json()["fetched"]
    assert task["status"] == "SUCCESS", task
    assert [
        (e["field"], e["sha256"], e["bytes"], e["format"], (e["width"], e["height"])) for e in fetched
    ] == [
        ("filesUrl[0]", sha256(photo), len(photo), "png", (64, 48)),
        ("maskUrl", sha256(mask), len(mask), "png", (64, 48)),
    ]
    assert [entry["taskId"] for entry in listed] == [task_id, task_id]
    assert host.requests == ["/photo.png", "/mask.png"]
    assert hook.wait_for(1)[0]["body"]["code"] == 200


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (Reply(404, b"not found", "text/plain"), "HTTP 404"),
        (Reply(200, b"<!DOCTYPE html><html>an error page</html>", "image/png"), "not an image"),
        (Reply(200, b"\x89PNG\r\n\x1a\n but not really a png", "image/png"), "not an image"),
    ],
)
def test_a_files_url_that_answers_no_image_ends_451_naming_the_input(emulator, reply, why):
    server = emulator()
    with image_server() as host, api(server) as client:
        task_id = submit(client, filesUrl=[png_url(host), host.serve("/bad.png", reply)])
        task = finished(server, task_id)
    assert (task["status"], task["errorCode"]) == ("GENERATE_FAILED", 451)
    assert "filesUrl[1]" in task["errorMessage"] and why in task["errorMessage"]
    assert [entry["ok"] for entry in task["inputs"]] == [True, False]


def test_a_mask_of_another_size_than_its_image_ends_400(emulator):
    server = emulator()
    with image_server() as host, api(server) as client:
        task_id = submit(
            client,
            filesUrl=[host.serve("/photo.png", Reply(200, png_bytes(64, 48)))],
            maskUrl=host.serve("/mask.png", Reply(200, png_bytes(32, 32))),
        )
        task = finished(server, task_id)
    assert (task["status"], task["errorCode"]) == ("GENERATE_FAILED", 400)
    assert task["errorMessage"].startswith("maskUrl: the mask is 32x32, its image 64x48")


def test_an_input_on_a_non_loopback_host_is_blocked_not_fetched(emulator):
    server = emulator()
    with api(server) as client:
        task_id = submit(client, filesUrl=["https://images.example.com/day.png"])
        task = finished(server, task_id)
    assert task["errorCode"] == 451 and task["inputs"][0]["error"].startswith("blocked")


def test_flux_kontext_fetches_its_input_image_and_fails_500_without_it(emulator, receiver):
    server, hook = emulator(), receiver()
    photo = png_bytes(80, 60)
    with image_server() as host, api(server) as client:
        good = flux_submit(client, inputImage=host.serve("/in.png", Reply(200, photo)))
        bad = flux_submit(client, inputImage=unreachable_url(), callBackUrl=hook.url)
        done, failed = finished(server, good), finished(server, bad)
    assert done["status"] == "SUCCESS" and done["inputs"][0]["sha256"] == sha256(photo)
    assert (failed["successFlag"], failed["errorCode"]) == (3, 500)
    assert "inputImage" in failed["errorMessage"]
    callback = hook.wait_for(1)[0]["body"]
    assert callback["code"] == 500 and callback["data"]["info"] == {
        "originImageUrl": "",
        "resultImageUrl": "",
    }


def test_a_market_model_fetches_each_image_field_and_fails_with_fail_code_500(emulator):
    server = emulator()
    photo = png_bytes(50, 50)
    with image_server() as host, api(server) as client:
        good = submit_market(
            client,
            "google/nano-banana-edit",
            prompt="night",
            image_urls=[host.serve("/a.png", Reply(200, photo))],
        )
        bad = submit_market(client, "qwen/image-edit", prompt="night", image_url=unreachable_url("/b.png"))
        done, failed = finished(server, good), finished(server, bad)
    assert done["status"] == "SUCCESS"
    assert [(e["field"], e["sha256"]) for e in done["inputs"]] == [("input.image_urls[0]", sha256(photo))]
    assert (failed["status"], failed["errorCode"]) == ("FAILED", 500)
    assert "input.image_url" in failed["errorMessage"]


def png_url(host) -> str:
    return host.serve("/ok.png", Reply(200, png_bytes()))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_market_field_takes_inputs_up_to_its_own_size_and_no_larger(emulator):
    # nano-banana-edit's image_urls take 10 MB each, nano-banana-pro's image_input 30 MB (its own table,
    # written apart from the bundle's registry, which says the same)
    server = emulator()
    large = png_bytes(40, 30) + b"\0" * (10 * 1_048_576)  # a PNG that decodes, padded past 10 MB
    with image_server() as host, api(server) as client:
        url = host.serve("/large.png", Reply(200, large))
        refused = submit_market(client, "google/nano-banana-edit", prompt="night", image_urls=[url])
        taken = submit_market(client, "nano-banana-pro", prompt="night", image_input=[url])
        failed, done = finished(server, refused), finished(server, taken)
    assert (failed["status"], failed["errorCode"]) == ("FAILED", 500)
    assert "input.image_urls[0]" in failed["errorMessage"] and "over 10485760 bytes" in failed["errorMessage"]
    assert done["status"] == "SUCCESS", done
    assert [(e["field"], e["bytes"]) for e in done["inputs"]] == [("input.image_input[0]", len(large))]
