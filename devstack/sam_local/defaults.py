"""What every part of the sam local driver shares: names, ports, its error and log, the architecture, URLs."""

from __future__ import annotations

import platform
import sys
from urllib.parse import urlsplit

from devstack.common.template import ROOT

STATE_DIR = ROOT / ".aws-sam" / "sam-local"
DEFAULT_NAME = "imagegen-sam-local"
REGION = "us-east-1"
API_KEY = "local-dev-key"
MOTO_PORT = 5000
UPSTREAM_PORT = 8080


class SamLocalError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"[sam-local] {message}", file=sys.stderr, flush=True)


def lambda_arch() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if arch is None:
        raise SamLocalError(f"no Lambda architecture for machine {machine!r}")
    return arch


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def with_origin(url: str, origin: str) -> str:
    parts = urlsplit(url)
    return origin + parts.path + (f"?{parts.query}" if parts.query else "")
