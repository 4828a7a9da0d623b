"""The imagegen CLI against the local stack with two clients' keys, as a user runs it: generate (from a
prompt, and from reference images alone), list, delete, each with --json, configured by environment; and
a Flux Kontext generate, saved with its format's extension; a local photo uploaded with --image and its
result edited again by reference with `imagegen edit`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from devstack.local.stack import LocalStack
from tests.conftest import ROOT
from tests.e2e.conftest import stack_fixture
from tests.http_fixtures import Reply, image_server, png_bytes

pytestmark = pytest.mark.e2e
KEYS = "alice:key-of-alice,bob:key-of-bob,carol:key-of-carol"


stack = stack_fixture(
    environment={
        "LOCAL_API_KEYS": KEYS,
        "LOCAL_API_PORT": "0",
        "EMULATOR_GENERATION_SECONDS": "0.3",
        "LOCAL_RECONCILE_INTERVAL_SECONDS": "0",
    }
)


def imagegen(stack: LocalStack, key: str | None, *argv: str) -> subprocess.CompletedProcess[str]:
    """``python -m imagegen ARGV``, told where the API is and its key by IMAGEGEN_API_URL / _KEY."""
    env = {**os.environ, "IMAGEGEN_API_URL": stack.api_url}
    env.pop("IMAGEGEN_API_KEY", None)
    if key:
        env["IMAGEGEN_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "imagegen", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def document(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # exactly one JSON document on stdout


def test_two_clients_generate_list_and_delete_with_the_cli(stack: LocalStack, tmp_path: Path) -> None:
    wait = ("--poll-interval", "0.2", "--timeout", "60")
    # alice generates from a prompt: the images are downloaded and verified
    drawn = document(
        imagegen(
            stack,
            "key-of-alice",
            "generate",
            "a red fox",
            "--variants",
            "2",
            "--out",
            str(tmp_path),
            *wait,
            "--json",
        )
    )
    assert drawn["status"] == "stored" and len(drawn["files"]) == 2
    for saved in drawn["files"]:
        assert sha256(Path(saved["path"]).read_bytes()).hexdigest() == saved["sha256"]
    # and edits reference images without a prompt (filesUrl alone), which the upstream fetches
    with image_server() as host:
        photo = host.serve("/photo.png", Reply(200, png_bytes()))
        edited = document(
            imagegen(stack, "key-of-alice", "--json", "generate", "--files", photo, "--no-download", *wait)
        )
    assert edited["status"] == "stored" and edited["task"]["images"], edited

    # each client lists only its own tasks, newest first, every page followed
    listed = document(imagegen(stack, "key-of-alice", "list", "--all", "--limit", "1", "--json"))
    assert [t["taskId"] for t in listed["tasks"]] == [edited["taskId"], drawn["taskId"]]
    assert listed["nextCursor"] is None
    assert document(imagegen(stack, "key-of-bob", "list", "--json")) == {"tasks": [], "nextCursor": None}

    # bob cannot delete alice's task: it is unknown to him; alice can, and then it is gone
    refused = imagegen(stack, "key-of-bob", "delete", drawn["taskId"])
    assert refused.returncode == 3 and "not found (HTTP 404)" in refused.stderr and refused.stdout == ""
    assert document(imagegen(stack, "key-of-alice", "delete", drawn["taskId"], "--json")) == {
        "taskId": drawn["taskId"],
        "deleted": True,
    }
    assert imagegen(stack, "key-of-alice", "status", drawn["taskId"]).returncode == 3
    table = imagegen(stack, "key-of-alice", "list")
    assert table.returncode == 0 and drawn["taskId"] not in table.stdout and edited["taskId"] in table.stdout

    # without a key the front door refuses, and the CLI says how to pass one
    anonymous = imagegen(stack, None, "list")
    assert anonymous.returncode == 3 and "IMAGEGEN_API_KEY" in anonymous.stderr


def test_a_flux_kontext_generate_with_the_cli(stack: LocalStack, tmp_path: Path) -> None:
    wait = ("--poll-interval", "0.2", "--timeout", "60")
    # carol draws with Flux Kontext, in 16:9 and PNG
    drawn = document(
        imagegen(
            stack,
            "key-of-carol",
            "generate",
            "--model",
            "flux-kontext-pro",
            "--aspect-ratio",
            "16:9",
            "--format",
            "png",
            "a lighthouse at dusk",
            "--out",
            str(tmp_path),
            *wait,
            "--json",
        )
    )
    # the one image is stored and saved as a .png of that ratio, its bytes those the API vouched for
    assert drawn["status"] == "stored" and drawn["task"]["model"] == "flux-kontext-pro", drawn
    (saved,) = drawn["files"]
    path = Path(saved["path"])
    assert path.name == f"{drawn['taskId']}_0.png"
    assert sha256(path.read_bytes()).hexdigest() == saved["sha256"]
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert abs(image.width / image.height - 16 / 9) < 0.01
    # status says the model; a 4o option with it is refused before anything is sent
    shown = imagegen(stack, "key-of-carol", "status", drawn["taskId"])
    assert shown.returncode == 0 and "model:    flux-kontext-pro" in shown.stdout, shown.stderr
    refused = imagegen(stack, "key-of-carol", "generate", "x", "--model", "flux-kontext-max", "--size", "1:1")
    assert refused.returncode == 2 and "--size is a gpt-4o-image option" in refused.stderr
    listed = document(imagegen(stack, "key-of-carol", "list", "--json"))
    assert [t["taskId"] for t in listed["tasks"]] == [drawn["taskId"]]


def test_a_local_photo_is_uploaded_and_its_result_edited_again_with_the_cli(
    stack: LocalStack, tmp_path: Path
) -> None:
    wait = ("--poll-interval", "0.2", "--timeout", "60")
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes(96, 64, (30, 120, 60)))
    # generate --image uploads the file (POST /uploads, then its presigned PUT) and edits it
    night = document(
        imagegen(stack, "key-of-alice", "generate", "make it night", "--image", str(photo),
                 "--size", "3:2", "--out", str(tmp_path / "night"), *wait, "--json")
    )  # fmt: skip
    assert night["status"] == "stored", night
    (upload_ref,) = [entry["ref"] for entry in night["task"]["inputs"]]
    assert upload_ref.startswith("upload:")
    fetched = stack.emulator.inspect_task(stack.upstream_id(night["taskId"]))["inputs"]
    assert [(i["field"], i["sha256"]) for i in fetched] == [
        ("filesUrl[0]", sha256(photo.read_bytes()).hexdigest())
    ]
    # edit sends the stored image by reference to each family: Flux Kontext, then a Market edit model
    stored_sha = night["files"][0]["sha256"]
    for model, field in (
        ("flux-kontext-pro", "inputImage"),
        ("google/nano-banana-edit", "input.image_urls[0]"),
    ):
        edited = document(
            imagegen(stack, "key-of-alice", "edit", night["taskId"], "--model", model, "add stars",
                     "--out", str(tmp_path / "edit"), *wait, "--json")
        )  # fmt: skip
        assert edited["status"] == "stored", edited
        assert edited["task"]["inputs"] == [{"field": field, "ref": f"task:{night['taskId']}/0"}]
        fetched = stack.emulator.inspect_task(stack.upstream_id(edited["taskId"]))["inputs"]
        assert [(i["field"], i["sha256"]) for i in fetched] == [(field, stored_sha)], fetched
    # --image with a Market edit model goes in its first image field, and is fetched byte for byte
    market = document(
        imagegen(stack, "key-of-alice", "generate", "--model", "google/nano-banana-edit", "--image",
                 str(photo), "watercolour", "--out", str(tmp_path / "market"), *wait, "--json")
    )  # fmt: skip
    assert market["status"] == "stored", market
    fetched = stack.emulator.inspect_task(stack.upstream_id(market["taskId"]))["inputs"]
    assert [(i["field"], i["sha256"]) for i in fetched] == [
        ("input.image_urls[0]", sha256(photo.read_bytes()).hexdigest())
    ]
    # another client cannot edit alice's image: the reference is unknown to bob, and nothing is sent
    refused = imagegen(stack, "key-of-bob", "edit", night["taskId"], "add stars", *wait)
    assert refused.returncode == 3 and f"{night['taskId']} not found" in refused.stderr, refused.stderr
