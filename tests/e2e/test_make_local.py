"""What `make local` runs, as a user runs it: start, use it with the CLI, Ctrl-C, nothing left behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def children_of(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(line) for line in found.stdout.split()]


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for a reaper."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def local_environment(**settings: str) -> dict[str, str]:
    """`make local`'s environment: this shell's, with none of the settings that would change the stack."""
    env = {**os.environ, "LOCAL_API_PORT": "0", "EMULATOR_GENERATION_SECONDS": "0.5", "PYTHONUNBUFFERED": "1"}
    for name in ("AWS_ENDPOINT_URL", "KIE_API_BASE_URL", "LOCAL_API_KEYS"):
        env.pop(name, None)
    return {**env, **settings}


def start_local_stack(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "devstack"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def read_banner(stack: subprocess.Popen[str]) -> str:
    banner = []
    deadline = time.monotonic() + 90
    assert stack.stdout is not None
    while time.monotonic() < deadline:
        line = stack.stdout.readline()
        if not line:
            break
        banner.append(line)
        if "Ctrl-C stops everything" in line:
            break
    text = "".join(banner)
    assert "Local stack is up." in text, text
    return text


def end(stack: subprocess.Popen[str]) -> None:
    if stack.poll() is None:
        stack.kill()
        stack.wait(timeout=10)


def test_local_stack_serves_the_cli_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    stack = start_local_stack(local_environment())
    try:
        text = read_banner(stack)
        api_url = re.search(r"API\s+(http://127\.0\.0\.1:\d+)", text).group(1)  # type: ignore[union-attr]
        workers = children_of(stack.pid)
        assert workers, "the functions run in worker processes"

        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "imagegen",
                "--api-url",
                api_url,
                "generate",
                "a red fox in snow",
                "--size",
                "3:2",
                "--variants",
                "2",
                "--out",
                str(tmp_path),
                "--poll-interval",
                "0.3",
                "--timeout",
                "60",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert cli.returncode == 0, cli.stderr
        saved = sorted(tmp_path.glob("*.png"))
        assert len(saved) == 2 and all(path.read_bytes().startswith(b"\x89PNG") for path in saved)
        assert [str(path) for path in saved] == sorted(cli.stdout.split()[2:])

        stack.send_signal(signal.SIGINT)
        assert stack.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and [pid for pid in workers if alive(pid)]:
            time.sleep(0.2)
        assert not [pid for pid in workers if alive(pid)]
    finally:
        end(stack)


@pytest.fixture(scope="module")
def keyed_stack() -> Iterator[str]:
    """`LOCAL_API_KEYS=... make local`: its banner."""
    stack = start_local_stack(local_environment(LOCAL_API_KEYS="alice:KEY_A,bob:KEY_B"))
    try:
        yield read_banner(stack)
    finally:
        end(stack)


def banner_command(banner: str, start: str) -> str:
    """The command of the banner's "Try it" lines that begins with `start`, continuation lines and all."""
    lines = banner.splitlines()
    first = next(i for i, line in enumerate(lines) if line.lstrip().startswith(start))
    last = first
    while lines[last].endswith("\\"):
        last += 1
    return "\n".join(lines[first : last + 1])


def bash(command: str) -> subprocess.CompletedProcess[str]:
    """A banner line as a user pastes it, from the repository's root."""
    return subprocess.run(
        ["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_banners_curl_and_cli_lines_carry_the_key(keyed_stack: str) -> None:
    curl = banner_command(keyed_stack, "curl ")
    assert "-H 'x-api-key: KEY_A'" in curl, keyed_stack
    submitted = bash(curl)
    assert submitted.returncode == 0, submitted.stderr
    task = json.loads(submitted.stdout)
    assert task["status"] == "submitted", task
    refused = bash(curl.replace("-H 'x-api-key: KEY_A'", ""))
    assert json.loads(refused.stdout) == {"message": "Forbidden"}  # the key is what let it in

    status = next(line for line in keyed_stack.splitlines() if line.endswith(" status <taskId>"))
    shown = bash(status.strip().replace("<taskId>", task["taskId"]))
    assert shown.returncode == 0, shown.stderr
    assert task["taskId"] in shown.stdout


def test_a_second_make_local_on_the_same_port_names_the_port_and_local_api_port(keyed_stack: str) -> None:
    port = re.search(r"API\s+http://127\.0\.0\.1:(\d+)", keyed_stack).group(1)  # type: ignore[union-attr]
    second = subprocess.run(
        [sys.executable, "-m", "devstack"],
        cwd=ROOT,
        env=local_environment(LOCAL_API_PORT=port),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert second.returncode == 1, second.stderr
    assert f"port {port} is already in use" in second.stderr
    assert "LOCAL_API_PORT=" in second.stderr
    assert "Traceback" not in second.stderr and "Address already in use" not in second.stderr
    assert second.stdout == ""
