"""`sam local` wired to local services: moto and the upstream emulator in containers, on one network.

``make sam-local`` runs ``python -m devstack.sam_local run``:

1. writes ``.aws-sam/sam-local/template.yaml``: template.yaml, plus declarations of the variables only a
   local run sets (AWS_ENDPOINT_URL, KIE_API_KEY, DOWNLOAD_TRUSTED_ORIGINS ...). ``sam local`` passes a
   function only the variables its template declares, whatever ``--env-vars`` holds; template.yaml, which
   is what gets deployed, stays as it is;
2. ``sam build`` of that template for this machine's architecture, into ``.aws-sam/sam-local/build``;
3. ``up``: a user-defined container network; moto (``<name>-moto:5000``) and the emulator
   (``<name>-upstream:8080``) as containers on it, their ports published on 127.0.0.1 only; the tables,
   queues and bucket of template.yaml created in that moto (through the published port); then
   ``env.json`` (for ``--env-vars``: the same variables the docker-free stack gives the functions, with
   the addresses the Lambda containers use on the network) and ``samconfig.toml``;
4. ``sam local start-api --config-file .aws-sam/sam-local/samconfig.toml`` on 127.0.0.1:3000 until
   Ctrl-C, then ``down``: the containers and the network are removed by ID.

The other commands (``python -m devstack.sam_local <command> --help``):

  up / down   the services alone, for ``sam local invoke ... --config-file .aws-sam/sam-local/samconfig.toml``
  seed        put the example task and callback capability that events/*.json name into the table
              (``--clear`` removes them)
  relay ID    hand the emulator's callback for task ID to start-api (where the emulator cannot reach it)
  drain       one SQS batch from the download queue -> ``sam local invoke DownloaderFunction``, as
              Lambda's event source mapping would (deletes what succeeded)
  template    only step 1

Containers cannot reach the host's 127.0.0.1, where start-api listens: the emulator's own callback
delivery fails unless PUBLIC_BASE_URL names an address it can reach (``--public-base-url``, e.g.
http://host.docker.internal:3000 on Docker Desktop or Finch; ``SAM_LOCAL_HOST_GATEWAY=1`` on Linux).
``relay`` does that delivery from this machine instead.

Environment: SAM_LOCAL_CONTAINER_CLI (docker or finch; default: whichever is on PATH),
SAM_LOCAL_MOTO_IMAGE, SAM_LOCAL_EMULATOR_IMAGE (defaults: the offline images of .ci/sam-local when
present, else one image built from python:3.13-slim with moto, pillow, httpx and pydantic),
SAM_LOCAL_PORT, SAM_LOCAL_PUBLIC_BASE_URL, SAM_LOCAL_HOST_GATEWAY, SAM_SKIP_PULL_IMAGE.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from devstack.template import ROOT, load_template

STATE_DIR = ROOT / ".aws-sam" / "sam-local"
DEFAULT_NAME = "imagegen-sam-local"
REGION = "us-east-1"
API_KEY = "local-dev-key"
MOTO_PORT = 5000
UPSTREAM_PORT = 8080
APP_DIR = "/app"  # the work tree, mounted read-only into the service containers
PYTHONPATH = f"{APP_DIR}:{APP_DIR}/layers/shared:{APP_DIR}/client"

# The offline images .ci/sam-local/build-images.sh builds (CI); used when present.
STANDIN_MOTO_IMAGE = "imagegen-sam-local/moto:latest"
STANDIN_EMULATOR_IMAGE = "imagegen-sam-local/devstack:latest"
# Elsewhere, both services run on one image built from the official Python image.
SERVICES_BASE_IMAGE = "public.ecr.aws/docker/library/python:3.13-slim"
SERVICES_PACKAGES = ("moto", "werkzeug", "pillow", "httpx", "pydantic")

# What events/*.json name: the example task and the callback capability POST /tasks would have minted.
EXAMPLE_TASK_ID = "d231a99a9a9f1dd8f895be1b97be8065"
EXAMPLE_SUBMISSION_ID = "5f0c2a4b9e8d7c6b5a4f3e2d1c0b9a88"
EXAMPLE_TOKEN = "example-callback-token-0123456789abcdefABCDEF_-xyz"  # noqa: S105 - in events/*.json

# moto_server with every DynamoDB request atomic, exactly as the docker-free stack runs it.
MOTO_COMMAND = (
    "import signal; from devstack.moto_server import LocalMotoServer; "
    f"LocalMotoServer('0.0.0.0', {MOTO_PORT}).start(); "
    f"print('moto on :{MOTO_PORT}', flush=True); signal.pause()"
)
# The emulator's admin API answers loopback clients only: ask it from inside its own container.
ADMIN_GET = (
    "import sys, urllib.request, urllib.error\n"
    "try:\n"
    "    r = urllib.request.urlopen(sys.argv[1], timeout=10); sys.stdout.write(r.read().decode())\n"
    "except urllib.error.HTTPError as e:\n"
    "    sys.stdout.write(e.read().decode()); sys.exit(3 if e.code == 404 else 4)\n"
)

WAIT_SECONDS = 60.0


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


# ----------------------------------------------------------------------------------------------------
# The container engine
# ----------------------------------------------------------------------------------------------------


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


def _run(cli: str, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
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
    return _run(cli, "image", "inspect", image, timeout=30, check=False).returncode == 0


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
        _run(cli, "build", "-t", tag, context, timeout=900)
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


# ----------------------------------------------------------------------------------------------------
# The local variant of the template
# ----------------------------------------------------------------------------------------------------


def function_environment(
    resources: Any, *, upstream_url: str, public_base_url: str, api_key: str, hmac_key: str
) -> dict[str, str]:
    """The variables the docker-free stack gives every function (devstack.stack), for these addresses."""
    from devstack.stack import LocalStack, StackConfig

    stack = LocalStack(
        StackConfig(
            upstream_api_key=api_key,
            hmac_key=hmac_key,
            # The emulator is not on loopback for the Lambda containers: trust its origin by name.
            extra_environment={"DOWNLOAD_TRUSTED_ORIGINS": _origin(upstream_url)},
        )
    )
    stack.resources = resources
    stack.upstream_url = upstream_url
    return stack._function_environment(public_base_url)


def local_variable_names() -> list[str]:
    from devstack.aws_resources import StackResources

    placeholder = StackResources("t", "i", "q", "arn", "dlq", "b", 5, 360)
    names = function_environment(
        placeholder, upstream_url="http://upstream:1", public_base_url="", api_key="k", hmac_key=""
    )
    return ["AWS_ENDPOINT_URL", *names]


def write_template(directory: Path, arch: str | None = None) -> Path:
    """template.yaml with absolute code paths, this machine's architecture, the local variables declared."""
    template = copy.deepcopy(load_template())
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):
                properties[key] = str((ROOT / properties[key]).resolve())
    if "Architecture" in template.get("Parameters", {}):
        template["Parameters"]["Architecture"]["Default"] = arch or lambda_arch()
    variables = (
        template.setdefault("Globals", {})
        .setdefault("Function", {})
        .setdefault("Environment", {})
        .setdefault("Variables", {})
    )
    for name in local_variable_names():
        variables.setdefault(name, "")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "template.yaml"
    header = (
        "# Generated by `python -m devstack.sam_local template`, for sam local only: do not edit or deploy.\n"
        "# template.yaml + declarations of the variables a local run sets (sam local passes a function only\n"
        "# the variables its template declares) + this machine's architecture as the default.\n"
    )
    target.write_text(header + yaml.safe_dump(template, sort_keys=False, width=120))
    return target


def sam_build_command(sam: str, template: Path, build_dir: Path, arch: str | None = None) -> list[str]:
    return [
        sam,
        "build",
        "--template-file",
        str(template),
        "--build-dir",
        str(build_dir),
        "--parameter-overrides",
        f"Architecture={arch or lambda_arch()}",
    ]


def sam_environment() -> dict[str, str]:
    """What sam runs with: placeholder credentials (they reach the containers), never a real profile."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL")
    }
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "SAM_CLI_TELEMETRY": "0",
        }
    )
    # sam build runs python3.13 from PATH: the venv that runs this has one.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


# ----------------------------------------------------------------------------------------------------
# The services
# ----------------------------------------------------------------------------------------------------


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def with_origin(url: str, origin: str) -> str:
    parts = urlsplit(url)
    return origin + parts.path + (f"?{parts.query}" if parts.query else "")


class _EndpointSession:
    """A boto3 session whose clients all go to one endpoint (create_stack_resources takes a session)."""

    def __init__(self, endpoint_url: str) -> None:
        import boto3

        self._session = boto3.Session(
            aws_access_key_id="local",
            aws_secret_access_key="local",  # noqa: S106 - moto takes any
            region_name=REGION,
        )
        self._endpoint_url = endpoint_url
        self.region_name = REGION

    def client(self, service: str) -> Any:
        return self._session.client(service, endpoint_url=self._endpoint_url)  # type: ignore[call-overload]


@dataclass
class Services:
    name: str
    cli: str
    network_id: str = ""
    moto_id: str = ""
    upstream_id: str = ""
    moto_port: int = 0
    upstream_port: int = 0
    api_key: str = API_KEY
    hmac_key: str = ""
    public_base_url: str = ""
    api_url: str = "http://127.0.0.1:3000"
    resources: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    # addresses, as the Lambda containers see them (on the network) and as this machine does (published)
    @property
    def network(self) -> str:
        return self.name

    @property
    def moto_url(self) -> str:
        return f"http://{self.name}-moto:{MOTO_PORT}"

    @property
    def upstream_url(self) -> str:
        return f"http://{self.name}-upstream:{UPSTREAM_PORT}"

    @property
    def moto_host_url(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    @property
    def upstream_host_url(self) -> str:
        return f"http://127.0.0.1:{self.upstream_port}"

    @property
    def download_queue_url_here(self) -> str:
        return with_origin(self.resources["download_queue_url"], self.moto_host_url)

    def aws(self) -> _EndpointSession:
        return _EndpointSession(self.moto_host_url)

    def stack_resources(self) -> Any:
        from devstack.aws_resources import StackResources

        return StackResources(**self.resources)

    def environment(self) -> dict[str, str]:
        """The --env-vars values: the docker-free stack's variables, with in-network addresses."""
        resources = self.stack_resources()
        in_network = type(resources)(
            **{
                **self.resources,
                "download_queue_url": with_origin(resources.download_queue_url, self.moto_url),
                "dead_letter_queue_url": with_origin(resources.dead_letter_queue_url, self.moto_url),
            }
        )
        env = function_environment(
            in_network,
            upstream_url=self.upstream_url,
            public_base_url=self.public_base_url,
            api_key=self.api_key,
            hmac_key=self.hmac_key,
        )
        return {"AWS_ENDPOINT_URL": self.moto_url, **env}

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "state.json"
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: Path) -> Services:
        path = directory / "state.json"
        if not path.exists():
            raise SamLocalError(f"no services recorded in {path}: python -m devstack.sam_local up")
        return cls(**json.loads(path.read_text()))

    def admin(self, path: str) -> dict[str, Any] | None:
        """GET /admin/<path> of the emulator, from inside its container (admin answers loopback only)."""
        url = f"http://127.0.0.1:{UPSTREAM_PORT}/admin/{path.lstrip('/')}"
        done = _run(
            self.cli, "exec", self.upstream_id, "python3", "-c", ADMIN_GET, url, timeout=30, check=False
        )
        if done.returncode == 3:
            return None
        if done.returncode != 0:
            raise SamLocalError(
                f"emulator admin GET {path} failed: {done.stdout} {done.stderr.strip()[-500:]}"
            )
        answer: dict[str, Any] = json.loads(done.stdout)
        return answer

    def logs(self) -> str:
        out = []
        for label, container in (("moto", self.moto_id), ("upstream", self.upstream_id)):
            if container:
                done = _run(self.cli, "logs", "--tail", "40", container, timeout=30, check=False)
                out.append(f"--- {label} ({container[:12]})\n{done.stdout}{done.stderr}")
        return "\n".join(out)


def _published_port(cli: str, container: str, port: int) -> int:
    done = _run(cli, "port", container, f"{port}/tcp", timeout=30)
    for line in done.stdout.splitlines():
        host, _, published = line.strip().rpartition(":")
        if host in ("127.0.0.1", "localhost") and published.isdigit():
            return int(published)
    raise SamLocalError(f"container {container[:12]} publishes {port} not on 127.0.0.1: {done.stdout!r}")


def _wait_http(
    url: str, what: str, headers: dict[str, str] | None = None, timeout: float = WAIT_SECONDS
) -> None:
    """Until anything answers HTTP at url (bounded)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - http to 127.0.0.1 only
        try:
            with urllib.request.urlopen(request, timeout=3):  # noqa: S310
                return
        except urllib.error.HTTPError:
            return  # it answered
        except (OSError, ValueError) as error:
            last = error
        time.sleep(0.3)
    raise SamLocalError(f"{what} did not answer at {url} within {timeout:g}s ({last})")


def host_gateway_address(cli: str) -> str:
    """The address `host-gateway` stands for: the default bridge's gateway."""
    done = _run(
        cli, "network", "inspect", "bridge", "--format", "{{(index .IPAM.Config 0).Gateway}}", timeout=30
    )
    address = done.stdout.strip()
    if not re.fullmatch(r"[0-9.]+", address):
        raise SamLocalError(f"could not read the default bridge's gateway address: {address!r}")
    return address


def up(
    name: str = DEFAULT_NAME,
    *,
    state_dir: Path = STATE_DIR,
    public_base_url: str = "http://127.0.0.1:3000",
    api_url: str = "http://127.0.0.1:3000",
    generation_seconds: float = 6.0,
    callback_retry_schedule: str = "60,300,900",
    hmac_key: str = "",
    host_gateway: bool = False,
    images: tuple[str, str] | None = None,
    prefix: str = "imagegen-local",
) -> Services:
    """Network, moto and emulator containers, the template's resources in that moto; files for sam local."""
    cli = container_cli()
    problem = engine_problem()
    if problem:
        raise SamLocalError(problem)
    moto_image, emulator_image = images or default_images(cli)
    services = Services(
        name=name, cli=cli, hmac_key=hmac_key, public_base_url=public_base_url.rstrip("/"), api_url=api_url
    )
    if _run(cli, "network", "inspect", name, timeout=30, check=False).returncode == 0:
        raise SamLocalError(
            f"network {name} exists already, left by an earlier run: python -m devstack.sam_local down"
            f" (or {Path(cli).name} rm -f {name}-moto {name}-upstream; {Path(cli).name} network rm {name})"
        )
    try:
        services.network_id = _run(cli, "network", "create", name, timeout=60).stdout.strip()
        common = [
            "run",
            "-d",
            "--network",
            name,
            "-v",
            f"{ROOT}:{APP_DIR}:ro",
            "-e",
            f"PYTHONPATH={PYTHONPATH}",
        ]
        common += ["-e", "PYTHONDONTWRITEBYTECODE=1", "--label", f"org.imagegen.sam-local={name}"]
        services.moto_id = _run(
            cli,
            *common,
            "--name",
            f"{name}-moto",
            "-p",
            f"127.0.0.1::{MOTO_PORT}",
            "--entrypoint",
            "python3",
            moto_image,
            "-c",
            MOTO_COMMAND,
            timeout=120,
        ).stdout.strip()
        emulator_args = [
            "python3", "-m", "devstack.emulator", "--host", "0.0.0.0", "--port", str(UPSTREAM_PORT),  # noqa: S104
            "--api-key", services.api_key, "--public-base-url", services.upstream_url,
            "--allow-external-callbacks", "--generation-seconds", f"{generation_seconds:g}",
            "--callback-retry-schedule", callback_retry_schedule,
        ]  # fmt: skip
        if hmac_key:
            emulator_args += ["--hmac-key", hmac_key]
        extra = ["--add-host", "host.docker.internal:host-gateway"] if host_gateway else []
        services.upstream_id = _run(
            cli,
            *common,
            *extra,
            "--name",
            f"{name}-upstream",
            "-p",
            f"127.0.0.1::{UPSTREAM_PORT}",
            emulator_image,
            *emulator_args,
            timeout=120,
        ).stdout.strip()
        services.moto_port = _published_port(cli, services.moto_id, MOTO_PORT)
        services.upstream_port = _published_port(cli, services.upstream_id, UPSTREAM_PORT)
        _wait_http(f"{services.moto_host_url}/moto-api/", "moto")
        _wait_http(
            f"{services.upstream_host_url}/api/v1/chat/credit",
            "the emulator",
            headers={"Authorization": f"Bearer {services.api_key}"},
        )
        from devstack.aws_resources import create_stack_resources

        services.resources = asdict(create_stack_resources(services.aws(), prefix=prefix))
        write_files(services, state_dir)
    except BaseException:
        with suppress(Exception):
            log(services.logs())
        down(services)
        raise
    return services


def write_files(services: Services, state_dir: Path, *, template: Path | None = None) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    env_path = state_dir / "env.json"
    env_path.write_text(json.dumps({"Parameters": services.environment()}, indent=2) + "\n")
    services.files["env_vars"] = str(env_path)
    template = template or state_dir / "build" / "template.yaml"
    services.files["template"] = str(template)
    config = state_dir / "samconfig.toml"
    api = urlsplit(services.api_url)
    services.files["samconfig"] = str(config)
    common = {
        "template_file": str(template),
        "env_vars": str(env_path),
        "docker_network": services.network,
        "parameter_overrides": f"Architecture={lambda_arch()}",
    }

    def table(section: str, values: dict[str, Any]) -> str:
        lines = [f"[default.{section}.parameters]"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
        return "\n".join(lines)

    config.write_text(
        "# Generated by `python -m devstack.sam_local up`: sam local wired to the containers of this run.\n"
        "version = 0.1\n\n"
        + table("local_invoke", common)
        + "\n\n"
        + table(
            "local_start_api", {**common, "host": api.hostname, "port": api.port, "warm_containers": "LAZY"}
        )
        + "\n"
    )
    services.save(state_dir)


def down(services: Services) -> None:
    """Remove what `up` created, by ID, and the Lambda containers sam left on that network."""
    cli = services.cli
    leftovers: list[str] = []
    if services.network_id:
        listed = _run(cli, "ps", "-aq", "--filter", f"network={services.network_id}", timeout=30, check=False)
        leftovers = [c for c in listed.stdout.split() if c]
    ours = {c[:12] for c in (services.moto_id, services.upstream_id) if c}
    sam_made = []
    for container in leftovers:
        if container[:12] in ours:
            continue
        labels = _run(
            cli, "inspect", "--format", "{{json .Config.Labels}}", container, timeout=30, check=False
        )
        if "sam.cli.container.type" in labels.stdout:
            sam_made.append(container)
    for container in [services.moto_id, services.upstream_id, *sam_made]:
        if container:
            _run(cli, "rm", "-f", container, timeout=60, check=False)
    if services.network_id:
        _run(cli, "network", "rm", services.network_id, timeout=60, check=False)
    services.moto_id = services.upstream_id = services.network_id = ""


@contextmanager
def running(name: str, state_dir: Path, **options: Any) -> Iterator[Services]:
    services = up(name, state_dir=state_dir, **options)
    try:
        yield services
    finally:
        down(services)


# ----------------------------------------------------------------------------------------------------
# Working with the running services
# ----------------------------------------------------------------------------------------------------


def _import_layer() -> None:
    """The shared layer's package (image_pipeline), importable here as it is in the functions."""
    layer = str(ROOT / "layers" / "shared")
    if layer not in sys.path:
        sys.path.insert(0, layer)


def _tasks_table(services: Services) -> Any:
    _import_layer()
    from image_pipeline.adapters.tasks_table import TasksTable

    return TasksTable(services.resources["tasks_table"], dynamodb=services.aws().client("dynamodb"))


def seed(services: Services, *, clear: bool = False) -> None:
    """The example task and callback capability of events/*.json, as POST /tasks leaves them (or none)."""
    _import_layer()
    from datetime import timedelta

    from image_pipeline.task_models import utc_now
    from image_pipeline.tokens import hash_token

    store = _tasks_table(services)
    dynamodb = services.aws().client("dynamodb")
    for key in (f"task#{EXAMPLE_TASK_ID}", f"sub#{EXAMPLE_SUBMISSION_ID}"):
        dynamodb.delete_item(TableName=services.resources["tasks_table"], Key={"pk": {"S": key}})
    if clear:
        return
    now = utc_now()
    store.put_submission(EXAMPLE_SUBMISSION_ID, hash_token(EXAMPLE_TOKEN), now)
    store.bind_submission(EXAMPLE_SUBMISSION_ID, EXAMPLE_TASK_ID)
    store.record_submitted(
        EXAMPLE_TASK_ID,
        EXAMPLE_SUBMISSION_ID,
        {"prompt": "example", "size": "1:1"},
        now,
        now + timedelta(minutes=30),
    )


def relay(services: Services, task_id: str, api_url: str, *, timeout: float = 60.0) -> tuple[int, str]:
    """POST the emulator's callback for task_id to api_url (start-api), as the emulator would have."""
    import httpx

    deadline = time.monotonic() + timeout
    info = services.admin(f"tasks/{task_id}")
    while info is None or info.get("callbackBody") is None:
        if time.monotonic() > deadline:
            state = "unknown to the emulator" if info is None else f"still {info.get('status')}"
            raise SamLocalError(f"task {task_id} has no callback after {timeout:g}s ({state})")
        time.sleep(0.3)
        info = services.admin(f"tasks/{task_id}")
    callback_url = info["request"]["callBackUrl"]
    if not callback_url:
        raise SamLocalError(f"task {task_id} was submitted without a callBackUrl")
    target = with_origin(callback_url, _origin(api_url))
    headers = {"Content-Type": "application/json", "User-Agent": "kie-4o-emulator/1 (relayed)"}
    if services.hmac_key:
        from devstack.emulator.callbacks import sign

        timestamp = str(int(time.time()))
        headers["X-Webhook-Timestamp"] = timestamp
        headers["X-Webhook-Signature"] = sign(services.hmac_key, task_id, timestamp)
    payload = json.dumps(info["callbackBody"], ensure_ascii=False).encode()
    response = httpx.post(target, content=payload, headers=headers, timeout=180)
    return response.status_code, response.text


def sam_invoke(
    sam: str,
    config_file: Path | str,
    function: str,
    event: Path | str,
    *,
    skip_pull: bool,
    timeout: float = 300,
) -> tuple[dict[str, Any] | None, subprocess.CompletedProcess[str]]:
    """`sam local invoke FUNCTION -e EVENT --config-file ...`; the function's answer (last stdout line)."""
    command = [sam, "local", "invoke", function, "-e", str(event), "--config-file", str(config_file)]
    if skip_pull:
        command.append("--skip-pull-image")
    done = subprocess.run(  # noqa: S603 - the SAM CLI
        command, capture_output=True, text=True, timeout=timeout, env=sam_environment(), cwd=ROOT, check=False
    )
    answer = None
    for line in reversed(done.stdout.strip().splitlines()):
        with suppress(ValueError):
            parsed = json.loads(line)
            if isinstance(parsed, dict):
                answer = parsed
                break
    return answer, done


def downloader_event(services: Services, *, wait_seconds: int = 5, max_messages: int = 10) -> dict[str, Any]:
    """One receive from the download queue, as the SQS event Lambda would hand the downloader."""
    from devstack.sqs_poller import sqs_record

    resources = services.stack_resources()
    sqs = services.aws().client("sqs")
    received = sqs.receive_message(
        QueueUrl=services.download_queue_url_here,
        MaxNumberOfMessages=max_messages,
        WaitTimeSeconds=wait_seconds,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", [])
    return {"Records": [sqs_record(m, resources.download_queue_arn, REGION) for m in received]}


def drain(
    services: Services, sam: str, config_file: Path | str, *, skip_pull: bool, wait_seconds: int = 5
) -> tuple[dict[str, Any], dict[str, Any] | None, subprocess.CompletedProcess[str] | None]:
    """One batch: receive, `sam local invoke DownloaderFunction -e <event>`, delete what succeeded."""
    event = downloader_event(services, wait_seconds=wait_seconds)
    if not event["Records"]:
        return event, None, None
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="sqs-event-", delete=False) as handle:
        json.dump(event, handle, indent=2)
    try:
        answer, done = sam_invoke(sam, config_file, "DownloaderFunction", handle.name, skip_pull=skip_pull)
    finally:
        os.unlink(handle.name)
    if answer is not None and "batchItemFailures" in answer:
        failed = {failure["itemIdentifier"] for failure in answer["batchItemFailures"]}
        finished = [r for r in event["Records"] if r["messageId"] not in failed]
        if finished:
            services.aws().client("sqs").delete_message_batch(
                QueueUrl=services.download_queue_url_here,
                Entries=[{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(finished)],
            )
    return event, answer, done


# ----------------------------------------------------------------------------------------------------
# make sam-local
# ----------------------------------------------------------------------------------------------------


def find_sam(explicit: str | None = None) -> str:
    sam = explicit or shutil.which("sam", path=str(Path(sys.executable).parent)) or shutil.which("sam")
    if not sam:
        raise SamLocalError("the SAM CLI is not installed (make install)")
    return sam


def skip_pull_default() -> bool:
    return os.environ.get("SAM_SKIP_PULL_IMAGE", "").lower() in ("1", "true", "yes")


def describe(services: Services, *, start_api_running: bool) -> str:
    config = os.path.relpath(services.files["samconfig"], ROOT)
    api = services.api_url
    lines = [
        "sam local is wired up." if start_api_running else "The services for sam local are up.",
        f"  API        {api}   (sam local start-api; no API key locally)",
        f"  AWS        moto: {services.moto_url} on network {services.network}"
        f" ({services.moto_host_url} from here)",
        f"  upstream   emulator: {services.upstream_url} ({services.upstream_host_url} from here)",
        f"  callbacks  PUBLIC_BASE_URL={services.public_base_url}",
        "",
    ]
    if not start_api_running:
        lines += [f"  sam local start-api --config-file {config}", ""]
    lines += [
        "In another terminal:",
        f"  curl -s -X POST {api}/tasks -H 'Content-Type: application/json' \\",
        '       -d \'{"prompt": "a lighthouse at dusk", "size": "1:1"}\'',
        "  .venv/bin/python -m devstack.sam_local relay <taskId>  # when the emulator cannot call back",
        "  .venv/bin/python -m devstack.sam_local drain           # download jobs -> sam local invoke",
        f"  curl -s {api}/tasks/<taskId>",
        f"  sam local invoke ApiFunction -e events/api_get_task_unknown.json --config-file {config}",
        "",
        "Ctrl-C stops start-api and removes the containers and the network."
        if start_api_running
        else "python -m devstack.sam_local down removes the containers and the network.",
    ]
    return "\n".join(lines)


def _stop_process(process: subprocess.Popen[Any], grace: float = 20.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _up_from_args(args: argparse.Namespace, state_dir: Path) -> tuple[Services, str]:
    """`up` as the command line asks; also the address start-api is to bind."""
    # Default: start-api on loopback only. SAM_LOCAL_HOST_GATEWAY=1 (Linux, opt-in): on the default bridge's
    # gateway, which the emulator container reaches as host.docker.internal (--add-host ...:host-gateway).
    bind = host_gateway_address(container_cli()) if args.host_gateway else "127.0.0.1"
    callback_host = "host.docker.internal" if args.host_gateway else "127.0.0.1"
    services = up(
        args.name,
        state_dir=state_dir,
        public_base_url=args.public_base_url or f"http://{callback_host}:{args.port}",
        api_url=f"http://{bind}:{args.port}",
        generation_seconds=args.generation_seconds,
        hmac_key=args.hmac_key,
        host_gateway=args.host_gateway,
    )
    return services, bind


def run(args: argparse.Namespace) -> int:
    sam = find_sam(args.sam)
    state_dir = Path(args.state_dir)
    arch = lambda_arch()
    problem = engine_problem()
    if problem:
        log(f"{problem}\n  sam local needs Docker or Finch running (see the README's 'sam local' section).")
        return 1
    template = write_template(state_dir)
    build_dir = state_dir / "build"
    build = sam_build_command(sam, template, build_dir, arch)
    log(" ".join(build))
    if subprocess.run(build, env=sam_environment(), cwd=ROOT, check=False).returncode != 0:  # noqa: S603
        log("sam build failed")
        return 1
    services, bind = _up_from_args(args, state_dir)
    process: subprocess.Popen[Any] | None = None
    stop = {"requested": False}

    def on_signal(signum: int, _frame: object) -> None:
        stop["requested"] = True
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)

    # Ctrl-C and SIGTERM alike: stop start-api, then remove the containers (also when SIGINT came ignored).
    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        command = [sam, "local", "start-api", "--config-file", services.files["samconfig"]]
        command += ["--host", bind, "--port", str(args.port)]
        if args.skip_pull_image:
            command.append("--skip-pull-image")
        log(" ".join(command))
        print(describe(services, start_api_running=True), flush=True)
        process = subprocess.Popen(command, env=sam_environment(), cwd=ROOT)  # noqa: S603
        while process.poll() is None and not stop["requested"]:
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=1)
    finally:
        if stop["requested"]:
            print("\nstopping ...", file=sys.stderr)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if process is not None:
            _stop_process(process)
        down(services)
        log("containers and network removed")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.sam_local", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--state-dir", default=str(STATE_DIR), help="where env.json, samconfig.toml ... go")
    parser.add_argument("--name", default=DEFAULT_NAME, help="network name and container name prefix")
    commands = parser.add_subparsers(dest="command", required=True)

    def service_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--port", type=int, default=int(os.environ.get("SAM_LOCAL_PORT", "3000")))
        p.add_argument("--public-base-url", default=os.environ.get("SAM_LOCAL_PUBLIC_BASE_URL", ""))
        p.add_argument("--generation-seconds", type=float, default=6.0)
        p.add_argument("--hmac-key", default=os.environ.get("KIE_WEBHOOK_HMAC_KEY", ""))
        p.add_argument(
            "--host-gateway",
            action="store_true",
            default=os.environ.get("SAM_LOCAL_HOST_GATEWAY", "") == "1",
            help="Linux: start-api on the bridge's gateway address, the emulator calls back via host-gateway",
        )

    p_run = commands.add_parser("run", help="template, sam build, up, sam local start-api; down on exit")
    service_options(p_run)
    p_run.add_argument("--sam", default=None)
    p_run.add_argument("--skip-pull-image", action="store_true", default=skip_pull_default())
    p_up = commands.add_parser("up", help="network, moto and emulator containers, resources, env.json")
    service_options(p_up)
    commands.add_parser("down", help="remove what up created (by ID)")
    commands.add_parser("template", help="write the local variant of template.yaml")
    p_seed = commands.add_parser("seed", help="the example task/capability of events/*.json")
    p_seed.add_argument("--clear", action="store_true")
    p_relay = commands.add_parser("relay", help="deliver the emulator's callback for a task to start-api")
    p_relay.add_argument("task_id")
    p_relay.add_argument("--api-url", default=None, help="start-api's URL (default: the one `up` recorded)")
    p_drain = commands.add_parser("drain", help="one SQS batch -> sam local invoke DownloaderFunction")
    p_drain.add_argument("--sam", default=None)
    p_drain.add_argument("--skip-pull-image", action="store_true", default=skip_pull_default())
    args = parser.parse_args(argv)
    state_dir = Path(args.state_dir)

    try:
        if args.command == "run":
            return run(args)
        if args.command == "template":
            print(write_template(state_dir))
            return 0
        if args.command == "up":
            services, _bind = _up_from_args(args, state_dir)
            print(describe(services, start_api_running=False))
            return 0
        services = Services.load(state_dir)
        if args.command == "down":
            down(services)
            (state_dir / "state.json").unlink(missing_ok=True)
            return 0
        if args.command == "seed":
            seed(services, clear=args.clear)
            return 0
        if args.command == "relay":
            status, body = relay(services, args.task_id, args.api_url or services.api_url)
            print(status, body)
            return 0 if 200 <= status < 300 else 1
        if args.command == "drain":
            event, answer, done = drain(
                services, find_sam(args.sam), services.files["samconfig"], skip_pull=args.skip_pull_image
            )
            if done is None:
                print("the download queue is empty")
                return 0
            print(f"{len(event['Records'])} message(s) -> DownloaderFunction: {json.dumps(answer)}")
            if answer is None:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            return 0
    except SamLocalError as error:
        log(f"error: {error}")
        return 1
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
