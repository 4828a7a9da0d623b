"""The container engine (Docker or Finch): finding it, running its CLI, the images of the services."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from devstack.common.template import ROOT
from devstack.sam_local.defaults import SamLocalError, log

# The offline images .ci/sam-local/build-images.sh builds (CI); used when present.
STANDIN_MOTO_IMAGE = "imagegen-sam-local/moto:latest"
STANDIN_EMULATOR_IMAGE = "imagegen-sam-local/devstack:latest"
# Elsewhere, both services run on one image built from the official Python image.
SERVICES_BASE_IMAGE = "public.ecr.aws/docker/library/python:3.13-slim"
SERVICES_PACKAGES = ("moto", "werkzeug", "pillow", "httpx", "pydantic")


def container_cli() -> str:
    chosen = os.environ.get("SAM_LOCAL_CONTAINER_CLI")
    if chosen:
        found = shutil.which(chosen)
        if not found:
            raise SamLocalError(f"SAM_LOCAL_CONTAINER_CLI={chosen} is not on PATH")
        return found
    for name in ("docker", "finch"):
        found = shutil.which(name)
        if found:
            return found
    raise SamLocalError("neither docker nor finch is on PATH: sam local needs a container engine")


def run_engine(
    cli: str, *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`<cli> <args>`, bounded; a SamLocalError with its stderr when it fails (unless check=False)."""
    try:
        done = subprocess.run(  # noqa: S603 - the engine's CLI, with arguments built here
            [cli, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise SamLocalError(
            f"{Path(cli).name} {' '.join(args[:3])} ... did not finish within {timeout:g}s"
        ) from None
    if check and done.returncode != 0:
        raise SamLocalError(f"{Path(cli).name} {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return done


def engine_problem(timeout: float = 20) -> str | None:
    """Why no container engine can be used here, or None when one answers."""
    try:
        cli = container_cli()
    except SamLocalError as error:
        return str(error)
    try:
        done = subprocess.run(  # noqa: S603
            [cli, "info"], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return f"{cli} info did not answer within {timeout:g}s"
    if done.returncode != 0:
        return f"no container engine answers ({cli} info: {done.stderr.strip()[-300:]})"
    return None


def image_exists(cli: str, image: str) -> bool:
    return run_engine(cli, "image", "inspect", image, timeout=30, check=False).returncode == 0


def published_port(cli: str, container: str, port: int) -> int:
    """The 127.0.0.1 port the container's `port` is published on."""
    done = run_engine(cli, "port", container, f"{port}/tcp", timeout=30)
    for line in done.stdout.splitlines():
        host, _, published = line.strip().rpartition(":")
        if host in ("127.0.0.1", "localhost") and published.isdigit():
            return int(published)
    raise SamLocalError(f"container {container[:12]} publishes {port} not on 127.0.0.1: {done.stdout!r}")


def host_gateway_address(cli: str) -> str:
    """The address `host-gateway` stands for: the default bridge's gateway."""
    done = run_engine(
        cli, "network", "inspect", "bridge", "--format", "{{(index .IPAM.Config 0).Gateway}}", timeout=30
    )
    address = done.stdout.strip()
    if not re.fullmatch(r"[0-9.]+", address):
        raise SamLocalError(f"could not read the default bridge's gateway address: {address!r}")
    return address


def _locked_versions(names: Sequence[str]) -> list[str]:
    lock = (ROOT / "requirements-dev.lock").read_text()
    pins = []
    for name in names:
        found = re.search(
            rf"^{re.escape(name)}(?:\[[^\]]*\])?==([^\s;\\]+)", lock, re.MULTILINE | re.IGNORECASE
        )
        pins.append(f"{name}=={found.group(1)}" if found else name)
    return pins


def services_image(cli: str) -> str:
    """One image for moto and the emulator, from the official Python image (needs a registry)."""
    packages = [
        f"moto[server]=={p.split('==')[1]}" if p.startswith("moto==") else p
        for p in _locked_versions(SERVICES_PACKAGES)
    ]
    dockerfile = (
        f"FROM {SERVICES_BASE_IMAGE}\n"
        'LABEL description="imagegen sam local services: moto server and the 4o Image API emulator"\n'
        f"RUN pip install --no-cache-dir --disable-pip-version-check {' '.join(packages)}\n"
    )
    tag = f"imagegen-sam-local/services:{hashlib.sha256(dockerfile.encode()).hexdigest()[:12]}"
    if image_exists(cli, tag):
        return tag
    log(f"building {tag} ({', '.join(packages)}) from {SERVICES_BASE_IMAGE}")
    with tempfile.TemporaryDirectory() as context:
        (Path(context) / "Dockerfile").write_text(dockerfile)
        run_engine(cli, "build", "-t", tag, context, timeout=900)
    return tag


def default_images(cli: str) -> tuple[str, str]:
    moto = os.environ.get("SAM_LOCAL_MOTO_IMAGE") or (
        STANDIN_MOTO_IMAGE if image_exists(cli, STANDIN_MOTO_IMAGE) else ""
    )
    emulator = os.environ.get("SAM_LOCAL_EMULATOR_IMAGE") or (
        STANDIN_EMULATOR_IMAGE if image_exists(cli, STANDIN_EMULATOR_IMAGE) else ""
    )
    if not moto or not emulator:
        built = services_image(cli)
        moto, emulator = moto or built, emulator or built
    return moto, emulator
