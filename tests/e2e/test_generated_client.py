"""A client generated from openapi.json by openapi-python-client, driving the local stack: the contract
is one a generated client can use as it stands (create, wait until stored, list, delete, then 404)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from devstack.local.stack import LocalStack
from tests.conftest import ROOT
from tests.e2e.conftest import stack_fixture

pytestmark = pytest.mark.e2e
PACKAGE = "imagegen_generated_client"

keyed_stack = stack_fixture(
    environment={
        "LOCAL_API_KEYS": "alice:key-of-alice",
        "LOCAL_API_PORT": "0",
        "EMULATOR_GENERATION_SECONDS": "0.3",
        "LOCAL_RECONCILE_INTERVAL_SECONDS": "0",
    }
)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """`openapi-python-client generate` on the committed openapi.json, imported from a temporary folder."""
    folder = tmp_path_factory.mktemp("generated")
    tool = Path(sys.executable).with_name("openapi-python-client")
    done = subprocess.run(
        [
            str(tool),
            "generate",
            "--path",
            str(ROOT / "openapi.json"),
            "--output-path",
            str(folder / PACKAGE),
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": f"{tool.parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr  # nothing left out
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def test_a_generated_client_creates_waits_lists_and_deletes_a_task(
    keyed_stack: LocalStack, generated: ModuleType
) -> None:
    create_task = importlib.import_module(f"{PACKAGE}.api.tasks.create_task")
    get_task = importlib.import_module(f"{PACKAGE}.api.tasks.get_task")
    list_tasks = importlib.import_module(f"{PACKAGE}.api.tasks.list_tasks")
    delete_task = importlib.import_module(f"{PACKAGE}.api.tasks.delete_task")
    list_models = importlib.import_module(f"{PACKAGE}.api.models.list_models")
    models = importlib.import_module(f"{PACKAGE}.models")

    client = generated.AuthenticatedClient(
        base_url=keyed_stack.api_url, token="key-of-alice", prefix="", auth_header_name="x-api-key"
    )
    with client:
        request = models.TaskRequest.from_dict(
            {"prompt": "a generated client's fox", "size": "1:1", "nVariants": 2}
        )
        created = create_task.sync_detailed(client=client, body=request)
        assert created.status_code == 202, created.content
        task_id = created.parsed.task_id
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            task = get_task.sync(task_id=task_id, client=client)
            assert isinstance(task, models.TaskView), task
            if task.status in ("stored", "failed"):
                break
            time.sleep(0.5)
        assert task.status == "stored" and len(task.images) == 2
        assert all(image.url.startswith("http") for image in task.images)
        page = list_tasks.sync(client=client, limit=10)
        assert isinstance(page, models.TaskPage) and task_id in [entry.task_id for entry in page.tasks]
        catalogue = list_models.sync(client=client)
        assert isinstance(catalogue, models.ModelCatalog)
        assert "google/nano-banana" in [entry.model for entry in catalogue.models]
        deleted = delete_task.sync_detailed(task_id=task_id, client=client)
        assert deleted.status_code == 204 and deleted.parsed is None
        gone = get_task.sync_detailed(task_id=task_id, client=client)
        assert gone.status_code == 404 and isinstance(gone.parsed, models.ErrorBody)
        assert gone.parsed.message == f"task {task_id} not found"
