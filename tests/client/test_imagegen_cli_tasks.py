"""imagegen list, imagegen delete, and --json on every command, against the emulated API."""

from __future__ import annotations

import json

import httpx
import pytest
from imagegen.api import ImageApiClient, UnexpectedResponseError
from imagegen.cli import ExitCode
from imagegen_fakes import API_KEY, API_URL, PNG, FakeApi, FakeClock, json_response, task_body


def add_tasks(api: FakeApi, *statuses: str) -> list[str]:
    """Tasks t-0, t-1, ... in these statuses, added oldest first (so listed t-N first)."""
    ids = []
    for number, status in enumerate(statuses):
        state: dict[str, object] = {"status": status}
        if status == "stored":
            state["images"] = [api.image(0, PNG, "image/png")]
        if status == "failed":
            state["error"] = {"code": 400, "message": "prompt flagged"}
        ids.append(api.add_task(state, task_id=f"t-{number}"))
    return ids


def list_requests(api: FakeApi) -> list[httpx.Request]:
    return [r for r in api.requests if r.method == "GET" and r.url.path == "/Prod/tasks"]


# ---------------------------------------------------------------------------------------------- list


def test_list_prints_the_tasks_newest_first(run, api):
    add_tasks(api, "stored", "failed", "submitted")
    api.models["t-2"] = "flux-kontext-pro"

    result = run("list")

    assert result.code == ExitCode.OK, result.err
    header, *rows = result.out.splitlines()
    assert header.split() == ["TASK", "STATUS", "MODEL", "IMAGES", "CREATED", "ERROR"]
    assert [row.split()[:4] for row in rows] == [
        ["t-2", "submitted", "flux-kontext-pro", "0"],
        ["t-1", "failed", "gpt-4o-image", "0"],
        ["t-0", "stored", "gpt-4o-image", "1"],
    ]
    assert rows[1].endswith("[400] prompt flagged")
    assert list_requests(api)[0].url.params == httpx.QueryParams()  # the API's own defaults


def test_list_passes_the_status_and_the_page_size_and_says_when_there_is_more(run, api):
    add_tasks(api, "stored", "stored", "failed", "stored")

    result = run("list", "--status", "stored", "--limit", "2")

    assert result.code == ExitCode.OK, result.err
    assert [row.split()[0] for row in result.out.splitlines()[1:]] == ["t-3", "t-1"]
    assert dict(list_requests(api)[0].url.params) == {"status": "stored", "limit": "2"}
    assert "more tasks: add --all for every page, or --cursor page-after-2 for the next one" in result.err
    # and that cursor is the next page
    more = run("list", "--status", "stored", "--limit", "2", "--cursor", "page-after-2")
    assert [row.split()[0] for row in more.out.splitlines()[1:]] == ["t-0"]
    assert "more tasks" not in more.err


def test_list_all_follows_next_cursor_to_the_last_page(run, api):
    add_tasks(api, *["stored"] * 5)

    result = run("list", "--all", "--limit", "2")

    assert result.code == ExitCode.OK, result.err
    assert [row.split()[0] for row in result.out.splitlines()[1:]] == ["t-4", "t-3", "t-2", "t-1", "t-0"]
    assert [r.url.params.get("cursor") for r in list_requests(api)] == [None, "page-after-2", "page-after-4"]
    assert "more tasks" not in result.err


def test_list_all_stops_when_the_api_hands_out_a_cursor_again(run, api):
    page = {"tasks": [], "nextCursor": "same"}
    api.list_script = [json_response(200, page) for _ in range(3)]

    result = run("list", "--all")

    assert result.code == ExitCode.API
    assert len(list_requests(api)) == 2
    assert "cursor it had given before" in result.err


def test_list_skips_empty_pages_the_api_hands_out_while_it_looks_for_a_rare_status(run, api):
    # The API examines a bounded slice of a long history per request: an empty page with a cursor.
    found = task_body("t-9", "failed", error={"code": 400, "message": "prompt flagged"})
    api.list_script = [
        json_response(200, {"tasks": [], "nextCursor": "slice-2"}),
        json_response(200, {"tasks": [], "nextCursor": "slice-3"}),
        json_response(200, {"tasks": [found], "nextCursor": None}),
    ]

    result = run("list", "--status", "failed")

    assert result.code == ExitCode.OK, result.err
    assert [row.split()[0] for row in result.out.splitlines()[1:]] == ["t-9"]
    assert [r.url.params.get("cursor") for r in list_requests(api)] == [None, "slice-2", "slice-3"]


def test_list_with_no_tasks(run, api):
    result = run("list", "--status", "failed")

    assert (result.code, result.out) == (ExitCode.OK, "")
    assert "no tasks with status failed" in result.err


def test_a_cursor_the_api_refuses_is_a_usage_error(run, api):
    result = run("list", "--cursor", "forged")

    assert result.code == ExitCode.USAGE
    assert "the API rejected the request (HTTP 400): invalid cursor" in result.err
    assert "  - cursor: not yours" in result.err


# ---------------------------------------------------------------------------------------------- delete


def test_delete_a_finished_task(run, api):
    add_tasks(api, "stored", "failed")

    result = run("delete", "t-0")

    assert (result.code, result.out) == (ExitCode.OK, "deleted task t-0\n"), result.err
    (request,) = [r for r in api.requests if r.method == "DELETE"]
    assert request.url == f"{API_URL}/tasks/t-0" and request.headers["x-api-key"] == API_KEY
    assert run("status", "t-0").code == ExitCode.API  # gone
    assert run("delete", "t-1").code == ExitCode.OK


def test_delete_a_running_task_says_to_wait(run, api):
    add_tasks(api, "downloading")

    result = run("delete", "t-0")

    assert result.code == ExitCode.API
    (line,) = result.err.splitlines()
    assert line.startswith("error: task t-0 is still running (HTTP 409)")
    assert "imagegen status t-0" in line
    assert len([r for r in api.requests if r.method == "DELETE"]) == 1  # not retried


def test_delete_an_unknown_task(run, api):
    result = run("delete", "nope")

    assert result.code == ExitCode.API
    assert result.err.strip() == "error: task nope not found (HTTP 404)"


def test_a_delete_whose_answer_was_lost_is_not_an_error_when_its_retry_finds_the_task_gone(run, api, clock):
    # Given the first DELETE deletes the task but its answer never arrives
    add_tasks(api, "stored")

    def delete_then_time_out(request: httpx.Request) -> httpx.Response:
        del api.tasks["t-0"]
        raise httpx.ReadTimeout("timed out", request=request)

    api.delete_script = [delete_then_time_out]
    # When the client retries and the task is gone
    result = run("delete", "t-0")
    # Then the task was deleted, as asked
    assert result.code == ExitCode.OK, result.err
    assert result.out == "deleted task t-0 (by an earlier try whose answer was lost)\n"
    assert len([r for r in api.requests if r.method == "DELETE"]) == 2


# ---------------------------------------------------------------------------------------------- --json


def one_document(out: str) -> object:
    """stdout holds exactly one JSON document (json.loads refuses anything around it)."""
    return json.loads(out)


@pytest.mark.parametrize("where", ["before", "after"])
def test_json_works_before_or_after_the_command(run, api, where):
    add_tasks(api, "stored")
    argv = ["--json", "status", "t-0"] if where == "before" else ["status", "t-0", "--json"]

    result = run(*argv)

    assert result.code == ExitCode.OK
    assert one_document(result.out)["taskId"] == "t-0"  # type: ignore[index]


def test_generate_json_prints_one_document_and_sends_progress_to_stderr(run, api, tmp_path):
    image = api.image(0, PNG, "image/png")
    api.add_task({"status": "submitted", "progress": 0.5}, {"status": "stored", "images": [image]})
    api.post_script = [json_response(429, {"message": "slow down"}, {"Retry-After": "1"})]

    result = run("--json", "generate", "a fox", "--out", str(tmp_path))

    assert result.code == ExitCode.OK, result.err
    document = one_document(result.out)
    saved = tmp_path / "task-123_0.png"
    assert document == {
        "taskId": "task-123",
        "status": "stored",
        "task": task_body("task-123", "stored", images=[image]),  # the API's last answer, as is
        "files": [{"index": 0, "path": str(saved), "bytes": len(PNG), "sha256": image["sha256"]}],
    }
    assert saved.read_bytes() == PNG
    assert "status: stored" in result.err and "retrying in 1s" in result.err  # progress, warnings


def test_generate_json_still_names_the_task_when_it_fails_or_times_out(run, api, tmp_path):
    api.add_task({"status": "failed", "error": {"code": 400, "message": "prompt flagged"}})
    failed = run("generate", "a fox", "--json", "--out", str(tmp_path))
    assert failed.code == ExitCode.TASK_FAILED
    assert one_document(failed.out) == {
        "taskId": "task-123",
        "status": "failed",
        "task": {
            "taskId": "task-123",
            "model": "gpt-4o-image",
            "status": "failed",
            "progress": None,
            "images": [],
            "error": {"code": 400, "message": "prompt flagged"},
            "createdAt": "2025-01-01T00:00:00Z",
            "updatedAt": "2025-01-01T00:00:10Z",
        },
        "files": [],
    }
    assert "prompt flagged" in failed.err

    api.add_task({"status": "submitted"})
    waited = run("generate", "a fox", "--json", "--timeout", "3", "--out", str(tmp_path))
    assert waited.code == ExitCode.TIMEOUT
    document = one_document(waited.out)
    assert (document["taskId"], document["status"]) == ("task-123", "submitted")  # type: ignore[index]
    assert "imagegen status task-123" in waited.err


def test_generate_json_before_submission_errors_prints_nothing_on_stdout(run, api, tmp_path):
    api.post_script = [json_response(402, {"message": "insufficient credits"})]
    result = run("generate", "a fox", "--json", "--out", str(tmp_path))
    assert (result.code, result.out) == (ExitCode.API, "")
    assert "insufficient credits" in result.err


def test_generate_no_download_json_has_the_links_in_the_task(run, api):
    image = api.image(0, PNG, "image/png")
    api.add_task({"status": "stored", "images": [image]})

    result = run("generate", "a fox", "--no-download", "--json")

    assert result.code == ExitCode.OK, result.err
    document = one_document(result.out)
    assert document["task"]["images"][0]["url"] == image["url"]  # type: ignore[index]
    assert document["files"] == []  # type: ignore[index]


def test_list_json_is_the_page_as_the_api_answered(run, api):
    add_tasks(api, "stored", "failed", "stored")

    page = one_document(run("list", "--limit", "2", "--json").out)
    assert [t["taskId"] for t in page["tasks"]] == ["t-2", "t-1"]  # type: ignore[index]
    assert page["nextCursor"] == "page-after-2"  # type: ignore[index]

    every = one_document(run("list", "--limit", "2", "--all", "--json").out)
    assert [t["taskId"] for t in every["tasks"]] == ["t-2", "t-1", "t-0"]  # type: ignore[index]
    assert every["nextCursor"] is None  # type: ignore[index]


def test_delete_json(run, api):
    add_tasks(api, "stored")
    result = run("delete", "t-0", "--json")
    assert result.code == ExitCode.OK
    assert one_document(result.out) == {"taskId": "t-0", "deleted": True}


def test_errors_with_json_go_to_stderr_only(run, api):
    result = run("--json", "delete", "nope")
    assert (result.code, result.out) == (ExitCode.API, "")
    assert "not found" in result.err


# ---------------------------------------------------------------------------------------------- client


def test_iter_pages_follows_the_cursor_from_where_it_is_told(clock: FakeClock):
    api = FakeApi()
    add_tasks(api, *["stored"] * 5)
    with ImageApiClient(API_URL, API_KEY, transport=httpx.MockTransport(api.handler)) as client:
        pages = list(client.iter_pages(limit=2, cursor="page-after-1"))
    assert [[t.task_id for t in page.tasks] for page in pages] == [["t-3", "t-2"], ["t-1", "t-0"]]
    assert all(image.url is None for page in pages for t in page.tasks for image in t.images)


def test_a_page_that_is_not_one_is_an_unexpected_answer(clock: FakeClock):
    api = FakeApi()
    api.list_script = [json_response(200, {"items": []})]
    with (
        ImageApiClient(API_URL, API_KEY, transport=httpx.MockTransport(api.handler)) as client,
        pytest.raises(UnexpectedResponseError, match="GET /Prod/tasks answered 200: the task list answer"),
    ):
        client.list_tasks()
