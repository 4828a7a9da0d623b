"""The commands on tasks already submitted: ``status``, ``list`` and ``delete``."""

from __future__ import annotations

import argparse
from typing import Any

from imagegen.cli.context import Runtime, open_client
from imagegen.cli.output import ExitCode, UsageError, err, print_json


def cmd_status(args: argparse.Namespace, runtime: Runtime) -> int:
    if not args.task_id.strip():
        raise UsageError("the task id is empty")
    with open_client(args, runtime, err) as client:
        task = client.get_task(args.task_id)
    if args.json:
        print_json(task.raw)  # the API's answer as is
        return ExitCode.OK
    rows: list[tuple[str, Any]] = [("task", task.task_id)]
    if task.model:
        rows.append(("model", task.model))
    rows.append(("status", task.status))
    rows.append(("progress", "-" if task.progress is None else f"{round(task.progress * 100)}%"))
    if task.created_at:
        rows.append(("created", task.created_at))
    if task.updated_at:
        rows.append(("updated", task.updated_at))
    if task.error:
        rows.append(("error", str(task.error)))
    if task.notification:
        rows.append(("webhook", str(task.notification)))
    rows.append(("images", len(task.images)))
    for name, value in rows:
        print(f"{name + ':':<10}{value}")
    for image in task.images:
        size = f"{image.bytes} bytes" if image.bytes is not None else "? bytes"
        print(f"  [{image.index}] {image.content_type}, {size}, sha256 {image.sha256 or '?'}")
        print(f"      {image.url}")
    return ExitCode.OK


def cmd_list(args: argparse.Namespace, runtime: Runtime) -> int:
    with open_client(args, runtime, err) as client:
        if args.all:
            pages = list(client.iter_pages(status=args.status, limit=args.limit, cursor=args.cursor))
            tasks = [task for page in pages for task in page.tasks]
            answer: dict[str, Any] = {"tasks": [dict(task.raw) for task in tasks], "nextCursor": None}
        else:
            # One request examines a bounded slice of the history: a page filtered by a rare status
            # may be empty with a cursor, so the first page with a task (or the last) is shown.
            for page in client.iter_pages(status=args.status, limit=args.limit, cursor=args.cursor):
                if page.tasks or not page.next_cursor:
                    break
            tasks, answer = list(page.tasks), dict(page.raw)
    if args.json:
        print_json(answer)
        return ExitCode.OK
    if not tasks:
        err("no tasks" + (f" with status {args.status}" if args.status else ""))
    else:
        rows = [("TASK", "STATUS", "MODEL", "IMAGES", "CREATED", "ERROR")]
        rows += [
            (
                t.task_id,
                t.status,
                t.model or "-",
                str(len(t.images)),
                t.created_at or "-",
                str(t.error) if t.error else "",
            )
            for t in tasks
        ]
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
        for row in rows:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if cursor := answer.get("nextCursor"):
        err(f"more tasks: add --all for every page, or --cursor {cursor} for the next one")
    return ExitCode.OK


def cmd_delete(args: argparse.Namespace, runtime: Runtime) -> int:
    if not args.task_id.strip():
        raise UsageError("the task id is empty")
    with open_client(args, runtime, err) as client:
        deleted_now = client.delete_task(args.task_id)
    if args.json:
        print_json({"taskId": args.task_id, "deleted": True})
    elif deleted_now:
        print(f"deleted task {args.task_id}")
    else:
        print(f"deleted task {args.task_id} (by an earlier try whose answer was lost)")
    return ExitCode.OK
