"""Opt-in: record every AWS call the functions make during a whole pytest run, check them at its end.

    IAM_RECORD_DIR=/tmp/iam-calls .venv/bin/python -m pytest tests/unit tests/e2e [-n auto]

tests/conftest.py registers this plugin only when IAM_RECORD_DIR is set; otherwise nothing is hooked.
Every process writes its own file in that directory - each pytest(-xdist) process at its end, each
local-stack worker process after every invocation (`LambdaPool.submit` runs `invoke_recording`
there) - so no two processes write one file. The controlling process (the only one under xdist)
reads them all once every worker has finished, checks each call against its function's role as
deployed (tests/iam/policy.py) and fails the run on a call the role does not allow. It also prints
the grants no call of this run used. tests/iam/test_least_privilege.py is the check `make test`
runs; this one extends it to whatever the suites exercise.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.iam.recorder import (
    RECORD_DIR_VARIABLE,
    Call,
    Recorder,
    invoke_recording,
    read_calls,
    recording,
    write_calls,
)


def _stack_prefix(call: Call, logical_ids: list[str]) -> str:
    """The prefix of the stack whose resources the call names (test-..., imagegen-local-...)."""
    for permission in call.permissions:
        for logical_id in logical_ids:
            found = re.search(
                rf"([A-Za-z0-9_.-]+?)-{logical_id}(?:$|[/:])", permission.resource, re.IGNORECASE
            )
            if found:
                return found.group(1).rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return "test"


class WholeRunRecorder:
    def __init__(self, config: pytest.Config, directory: Path) -> None:
        self.directory = directory
        self.controller = not hasattr(config, "workerinput")
        if self.controller:
            directory.mkdir(parents=True, exist_ok=True)
            for stale in directory.glob("*.jsonl"):
                stale.unlink()
        self.recorder = Recorder()
        self._recording = recording(self.recorder)
        self._recording.__enter__()
        self._pool_submit = self._record_local_stack_workers()
        self.report: list[str] = []
        self.failed = False

    @staticmethod
    def _record_local_stack_workers() -> Any:
        from devstack.local import lambda_runtime

        original = lambda_runtime.LambdaPool.submit

        def submit(pool: Any, logical_id: str, event: dict[str, Any]) -> Any:
            return pool._executor.submit(invoke_recording, pool.specs[logical_id], event)

        lambda_runtime.LambdaPool.submit = submit  # type: ignore[method-assign,assignment]
        return original

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        from devstack.local import lambda_runtime

        lambda_runtime.LambdaPool.submit = self._pool_submit  # type: ignore[method-assign]
        self._recording.__exit__(None, None, None)
        write_calls(self.recorder.calls, self.directory / f"pytest-{os.getpid()}.jsonl")
        if not self.controller:
            return
        self.report, self.failed = verdict(read_calls(self.directory))
        if self.failed:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.controller:
            terminalreporter.section("AWS calls against the functions' roles (IAM_RECORD_DIR)")
            for line in self.report:
                terminalreporter.write_line(line)


def verdict(calls: list[Call]) -> tuple[list[str], bool]:
    from tests.iam.policy import DEPLOYED_PARAMETERS, Deployment, denials, deployed_roles, grants, uses
    from tests.sam.test_policies import translated_template

    template = translated_template()
    logical_ids = sorted(template["Resources"], key=len, reverse=True)
    by_prefix: dict[str, list[Call]] = {}
    for call in calls:
        by_prefix.setdefault(_stack_prefix(call, logical_ids), []).append(call)
    lines = [f"{len(calls)} calls recorded"]
    failed = False
    for prefix, some in sorted(by_prefix.items()):
        roles = deployed_roles(template, prefix=prefix, parameters=DEPLOYED_PARAMETERS)
        deployment = Deployment(template, prefix=prefix, parameters=DEPLOYED_PARAMETERS)
        found = denials(roles, some)
        # A table, queue, bucket or bus the template does not declare: a test pointing a function at
        # a missing resource on purpose (fault injection). Listed, not failed on.
        elsewhere = [d for d in found if _outside_the_template(d.permission.resource, deployment)]
        failing = [d for d in found if d not in elsewhere]
        failed = failed or bool(failing)
        lines.append(f"stack {prefix!r}: {len(some)} calls, {len(failing)} not allowed")
        lines += [f"  NOT ALLOWED {denial}" for denial in failing]
        lines += [f"  on a resource the template does not declare: {denial}" for denial in elsewhere]
        for function, role in sorted(roles.items()):
            unused = [g for g in grants(role) if not uses(g, some)]
            lines += [
                f"  unused by this run: {function} {g.action} {deployment.display(g.resource)}"
                for g in unused
            ]
    return lines, failed


def _outside_the_template(resource: str, deployment: Any) -> bool:
    shown = deployment.display(resource)
    return shown.startswith(("arn:aws:dynamodb:", "arn:aws:sqs:", "arn:aws:s3:::", "arn:aws:events:"))


def register(config: pytest.Config) -> None:
    directory = os.environ.get(RECORD_DIR_VARIABLE)
    if directory:
        config.pluginmanager.register(WholeRunRecorder(config, Path(directory)), "iam-whole-run-recorder")
