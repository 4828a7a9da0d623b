"""What `make local` runs, as a user runs it: start, use it with the CLI, Ctrl-C, nothing left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
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


def test_local_stack_serves_the_cli_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "LOCAL_API_PORT": "0",
        "EMULATOR_GENERATION_SECONDS": "0.5",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("AWS_ENDPOINT_URL", None)
    env.pop("KIE_API_BASE_URL", None)
    stack = subprocess.Popen(
        [sys.executable, "-m", "devstack"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
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
        if stack.poll() is None:
            stack.kill()
            stack.wait(timeout=10)
