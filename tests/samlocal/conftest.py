"""`sam local` against containers: these tests need a container engine (Docker or Finch).

Without one they skip, saying why. With SAM_LOCAL_REQUIRED=1 (set by .ci/run once it has started the
engine and built the offline images) they fail instead: in CI a skip would hide a broken sam local.
SAM_LOCAL_SKIP=<reason> (set by .ci/run when the engine or the image build failed) skips them.

To run them here: start Docker or Finch (offline: `sudo bash .ci/sam-local/engine.sh start &&
bash .ci/sam-local/build-images.sh`), then `.venv/bin/python -m pytest tests/samlocal`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devstack import sam_local
from tests.conftest import ROOT

ARCH = sam_local.lambda_arch()
LAMBDA_IMAGE = f"public.ecr.aws/lambda/python:3.13-{ARCH}"
REQUIRED = os.environ.get("SAM_LOCAL_REQUIRED") == "1"
HOW_TO = (
    "start Docker or Finch, or offline: sudo bash .ci/sam-local/engine.sh start && "
    "bash .ci/sam-local/build-images.sh (see .ci/sam-local/README.md)"
)


def engine_or_skip(*images: str) -> None:
    """Skip (or, with SAM_LOCAL_REQUIRED=1, fail) unless an engine answers and holds the images."""
    reason = os.environ.get("SAM_LOCAL_SKIP") or sam_local.engine_problem()
    if not reason and images:
        cli = sam_local.container_cli()
        missing = [image for image in images if not sam_local.image_exists(cli, image)]
        if missing:
            reason = f"images not built: {', '.join(missing)}"
    if reason:
        if REQUIRED:
            pytest.fail(f"SAM_LOCAL_REQUIRED=1 but sam local cannot run: {reason}", pytrace=False)
        pytest.skip(f"sam local tests skipped: {reason}. To run them: {HOW_TO}")


@dataclass
class SamLocal:
    sam: str
    services: sam_local.Services
    config_file: str
    skip_pull: bool

    def invoke(
        self, function: str, event: Path | str
    ) -> tuple[dict[str, object] | None, subprocess.CompletedProcess[str]]:
        return sam_local.sam_invoke(self.sam, self.config_file, function, event, skip_pull=self.skip_pull)


@pytest.fixture(scope="session")
def sam_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local variant of the template, built for this machine; the built template's path."""
    engine_or_skip()
    sam = sam_local.find_sam()
    directory = tmp_path_factory.mktemp("sam-local")
    template = sam_local.write_template(directory)
    build_dir = directory / "build"
    done = subprocess.run(
        sam_local.sam_build_command(sam, template, build_dir),
        capture_output=True,
        text=True,
        timeout=900,
        env=sam_local.sam_environment(),
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    # As `make build` ships it: the Lambda containers run the hash-checked bytecode.
    compiled = subprocess.run(
        sam_local.compile_bytecode_command(build_dir),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert compiled.returncode == 0, compiled.stdout[-4000:] + compiled.stderr[-4000:]
    return build_dir / "template.yaml"


@pytest.fixture(scope="session")
def samlocal(sam_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SamLocal]:
    """moto and the emulator in containers on a network of this run; removed by ID afterwards."""
    state_dir = sam_build.parent.parent
    name = f"imagegen-sam-local-t{os.getpid()}"
    services = sam_local.up(
        name,
        state_dir=state_dir,
        public_base_url="http://127.0.0.1:3000",  # replaced per start-api below
        generation_seconds=1.0,
        callback_retry_schedule="30,60",
    )
    try:
        cli = services.cli
        yield SamLocal(
            sam=sam_local.find_sam(),
            services=services,
            config_file=services.files["samconfig"],
            skip_pull=sam_local.image_exists(cli, LAMBDA_IMAGE),
        )
    finally:
        sam_local.down(services)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def start_api(samlocal: SamLocal, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`sam local start-api` on 127.0.0.1:<free port>, PUBLIC_BASE_URL naming it; its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    services = samlocal.services
    services.public_base_url = base
    services.api_url = base
    sam_local.write_files(
        services, Path(samlocal.config_file).parent, template=Path(services.files["template"])
    )
    log_path = tmp_path_factory.mktemp("start-api") / "start-api.log"
    command = [samlocal.sam, "local", "start-api", "--config-file", samlocal.config_file]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    if samlocal.skip_pull:
        command.append("--skip-pull-image")
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=sam_local.sam_environment(), cwd=ROOT
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                httpx.get(f"{base}/", timeout=2)
                break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sam local start-api did not listen on {base}:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        yield base
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
