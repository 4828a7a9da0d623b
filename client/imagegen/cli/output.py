"""What the CLI writes: its exit codes, messages on stderr and the ``--json`` document on stdout."""

from __future__ import annotations

import json
import sys
from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    OK = 0
    TASK_FAILED = 1
    USAGE = 2
    API = 3
    TIMEOUT = 4
    INTERRUPTED = 130


class UsageError(Exception):
    """A problem with the command line, reported with exit code 2."""


def short_url(url: str | None) -> str:
    """A URL without its query string (presigned links carry credentials there)."""
    return (url or "").split("?", 1)[0]


def print_json(document: Any) -> None:
    """The command's one JSON document, the only thing on stdout with --json."""
    print(json.dumps(document, indent=2), flush=True)


def err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
