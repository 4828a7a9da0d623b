"""Finding one of our tasks as the upstream (the emulator) knows it: by the upstream's id."""

from __future__ import annotations

import time
from typing import Any

from devstack.common.layer import import_layer


def wait_for_upstream_id(
    dynamodb: Any, table_name: str, task_id: str, *, deadline: float, interval: float = 0.1
) -> str | None:
    """The upstream's id of our task `task_id` once the tasks table has it (TaskRecord.upstream_id);
    None if it still has none at `deadline` (time.monotonic())."""
    import_layer()
    from image_pipeline.adapters.tasks_table import TasksTable

    table = TasksTable(table_name, dynamodb=dynamodb)
    while True:
        task = table.get_task(task_id)
        if task is not None and task.upstream_id:
            return task.upstream_id
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)
