"""moto and the emulator as containers on one network: up, down, the files that point sam local at them."""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from devstack.common.aws_resources import QueueResources, StackResources, create_stack_resources
from devstack.common.template import ROOT
from devstack.sam_local.defaults import (
    API_KEY,
    DEFAULT_NAME,
    MOTO_PORT,
    REGION,
    STATE_DIR,
    UPSTREAM_PORT,
    SamLocalError,
    lambda_arch,
    log,
    with_origin,
)
from devstack.sam_local.engine import (
    container_cli,
    default_images,
    engine_problem,
    published_port,
    run_engine,
)
from devstack.sam_local.local_template import local_environments

APP_DIR = "/app"  # the work tree, mounted read-only into the service containers
PYTHONPATH = f"{APP_DIR}:{APP_DIR}/layers/shared:{APP_DIR}/client"
WAIT_SECONDS = 60.0

# moto_server with every DynamoDB request atomic, exactly as the docker-free stack runs it.
MOTO_COMMAND = (
    "import signal; from devstack.common.moto_server import LocalMotoServer; "
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
    resources: dict[str, Any] = field(
        default_factory=dict
    )  # StackResources, as create_stack_resources made it
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

    def stack_resources(self) -> StackResources:
        recorded = dict(self.resources)
        queues = {name: QueueResources(**queue) for name, queue in recorded.pop("queues", {}).items()}
        return StackResources(**recorded, queues=queues)

    def environments(self) -> dict[str, dict[str, str]]:
        """The --env-vars file, by function: the docker-free stack's variables, with in-network addresses."""
        resources = self.stack_resources()
        in_network = dataclasses.replace(
            resources,
            download_queue_url=with_origin(resources.download_queue_url, self.moto_url),
            dead_letter_queue_url=with_origin(resources.dead_letter_queue_url, self.moto_url),
            queues={
                name: dataclasses.replace(
                    queue,
                    url=with_origin(queue.url, self.moto_url),
                    dead_letter_url=with_origin(queue.dead_letter_url, self.moto_url),
                )
                for name, queue in resources.queues.items()
            },
        )
        return local_environments(
            in_network,
            aws_endpoint_url=self.moto_url,
            upstream_url=self.upstream_url,
            public_base_url=self.public_base_url,
            api_key=self.api_key,
            hmac_key=self.hmac_key,
        )

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
        done = run_engine(
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
                done = run_engine(self.cli, "logs", "--tail", "40", container, timeout=30, check=False)
                out.append(f"--- {label} ({container[:12]})\n{done.stdout}{done.stderr}")
        return "\n".join(out)


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
    if run_engine(cli, "network", "inspect", name, timeout=30, check=False).returncode == 0:
        raise SamLocalError(
            f"network {name} exists already, left by an earlier run: python -m devstack.sam_local down"
            f" (or {Path(cli).name} rm -f {name}-moto {name}-upstream; {Path(cli).name} network rm {name})"
        )
    try:
        services.network_id = run_engine(cli, "network", "create", name, timeout=60).stdout.strip()
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
        services.moto_id = run_engine(
            cli, *common, "--name", f"{name}-moto", "-p", f"127.0.0.1::{MOTO_PORT}",
            "--entrypoint", "python3", moto_image, "-c", MOTO_COMMAND, timeout=120,
        ).stdout.strip()  # fmt: skip
        emulator_args = [
            "python3", "-m", "devstack.emulator", "--host", "0.0.0.0", "--port", str(UPSTREAM_PORT),  # noqa: S104
            "--api-key", services.api_key, "--public-base-url", services.upstream_url,
            "--allow-external-callbacks", "--allow-external-inputs",
            "--generation-seconds", f"{generation_seconds:g}",
            "--callback-retry-schedule", callback_retry_schedule,
        ]  # fmt: skip
        if hmac_key:
            emulator_args += ["--hmac-key", hmac_key]
        extra = ["--add-host", "host.docker.internal:host-gateway"] if host_gateway else []
        services.upstream_id = run_engine(
            cli, *common, *extra, "--name", f"{name}-upstream", "-p", f"127.0.0.1::{UPSTREAM_PORT}",
            emulator_image, *emulator_args, timeout=120,
        ).stdout.strip()  # fmt: skip
        services.moto_port = published_port(cli, services.moto_id, MOTO_PORT)
        services.upstream_port = published_port(cli, services.upstream_id, UPSTREAM_PORT)
        _wait_http(f"{services.moto_host_url}/moto-api/", "moto")
        _wait_http(
            f"{services.upstream_host_url}/api/v1/chat/credit",
            "the emulator",
            headers={"Authorization": f"Bearer {services.api_key}"},
        )
        services.resources = asdict(create_stack_resources(services.aws(), prefix=prefix))
        write_files(services, state_dir)
    except BaseException:
        with suppress(Exception):
            log(services.logs())
        down(services)
        raise
    return services


def write_files(services: Services, state_dir: Path, *, template: Path | None = None) -> None:
    """env.json (--env-vars), samconfig.toml (--config-file) and state.json for this run."""
    state_dir.mkdir(parents=True, exist_ok=True)
    env_path = state_dir / "env.json"
    env_path.write_text(json.dumps(services.environments(), indent=2) + "\n")
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
        listed = run_engine(
            cli, "ps", "-aq", "--filter", f"network={services.network_id}", timeout=30, check=False
        )
        leftovers = [c for c in listed.stdout.split() if c]
    ours = {c[:12] for c in (services.moto_id, services.upstream_id) if c}
    sam_made = []
    for container in leftovers:
        if container[:12] in ours:
            continue
        labels = run_engine(
            cli, "inspect", "--format", "{{json .Config.Labels}}", container, timeout=30, check=False
        )
        if "sam.cli.container.type" in labels.stdout:
            sam_made.append(container)
    for container in [services.moto_id, services.upstream_id, *sam_made]:
        if container:
            run_engine(cli, "rm", "-f", container, timeout=60, check=False)
    if services.network_id:
        run_engine(cli, "network", "rm", services.network_id, timeout=60, check=False)
    services.moto_id = services.upstream_id = services.network_id = ""


@contextmanager
def running(name: str, state_dir: Path, **options: Any) -> Iterator[Services]:
    services = up(name, state_dir=state_dir, **options)
    try:
        yield services
    finally:
        down(services)
