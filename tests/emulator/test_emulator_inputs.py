"""The emulator fetches input images as the upstream would (filesUrl, maskUrl, inputImage, a Market
model's image fields): what it fetched is recorded, and a URL that cannot be fetched, or does not answer
an image, ends the task the way the platform documents (docs/upstream.md)."""

from __future__ import annotations

from emulator_helpers import api, finished, submit

from tests.http_fixtures import unreachable_url


def test_an_unreachable_files_url_ends_the_4o_task_451(emulator):
    server = emulator()
    with api(server) as client:
        task_id = submit(client, prompt="make it night", filesUrl=[unreachable_url()])
    task = finished(server, task_id)
    assert (task["status"], task["errorCode"]) == ("GENERATE_FAILED", 451), task
    assert task["callbackBody"] is None or task["callbackBody"]["code"] == 451
    assert task["inputs"][0]["field"] == "filesUrl[0]" and task["inputs"][0]["ok"] is False
