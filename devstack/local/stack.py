"""The whole pipeline on one machine: moto, the upstream emulator, the API front door, the SQS poller.

Configuration (environment):
  LOCAL_API_PORT            front door port (default 3000)
  KIE_API_BASE_URL          use this upstream instead of starting the emulator (with KIE_API_KEY,
                            KIE_WEBHOOK_HMAC_KEY); otherwise the emulator starts on a free port
  AWS_ENDPOINT_URL          use these AWS endpoints instead of starting moto (resources are created
                            there if missing)
  EMULATOR_GENERATION_SECONDS, EMULATOR_CALLBACK_RETRY_SCHEDULE (e.g. "60,300,900")
  LOCAL_LAMBDA_WORKERS      concurrent function instances (default 4)
  LOCAL_RECONCILE_INTERVAL_SECONDS  how often the scheduled reconciler runs (default 30; 0 = never)
  RECONCILE_AFTER_SECONDS   how long a task waits for its callback before the reconciler polls (default 60)
  LOCAL_PUBLIC_BASE_URL     the front door's public URL (a tunnel), when the upstream is the real API
  LOCAL_API_KEYS            "alice:KEY_A,bob:KEY_B": client apps and their x-api-key, checked as API
                            Gateway does (without it no key is needed: every request is client "local")
  LOCAL_WEBHOOK_SECRET      whsec_... that signs the local clients' webhooks (generated and printed if unset)
  WEBHOOK_TRUSTED_ORIGINS   exact origins (http://127.0.0.1:8123) a webhookUrl may use on loopback

Any other variable a function's settings read (image_pipeline.settings: DOWNLOAD_RETRY_BASE_SECONDS,
DOWNLOAD_CHECK_AFTER_SECONDS, DOWNLOAD_GIVE_UP_SECONDS, KIE_API_TIMEOUT_SECONDS, ...) is passed to
the functions as it is set here, so any of them can be compressed for a local run.
"""

from __future__ import annotations

import errno
import gc
import os
import shlex
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

import boto3

from devstack.common.aws_resources import StackResources, create_stack_resources
from devstack.common.function_environment import LocalValues, function_environments, loopback_origin
from devstack.common.layer import import_layer
from devstack.common.template import resources_of_type
from devstack.local.front_door import FrontDoor, parse_api_keys
from devstack.local.lambda_runtime import LambdaPool
from devstack.local.scheduler import Scheduler
from devstack.local.sqs_poller import SqsPoller

__all__ = ["LocalStack", "PortInUseError", "StackConfig", "loopback_origin"]
REGION = "us-east-1"


@dataclass
class StackConfig:
    api_port: int = 3000
    upstream_base_url: str | None = None
    upstream_api_key: str = "local-dev-key"
    hmac_key: str = ""
    aws_endpoint_url: str | None = None
    generation_seconds: float = 6.0
    callback_retry_schedule: tuple[float, ...] = (60.0, 300.0, 900.0)
    workers: int = 4
    reconcile_interval_seconds: float = 30.0
    reconcile_after_seconds: float = 60.0
    emulator_overrides: dict[str, Any] = field(default_factory=dict)
    aws_middleware: Any = None  # chaos: wraps the moto WSGI app (see devstack.local.aws_faults)
    poller_crash_probability: float = 0.0
    access_log: bool = True
    public_base_url: str | None = (
        None  # where the upstream reaches the front door (a tunnel for the real API)
    )
    extra_environment: dict[str, str] = field(default_factory=dict)
    api_keys: dict[str, str] | None = None  # {key: client name} (LOCAL_API_KEYS); None: no key needed
    webhook_secret: str = ""  # whsec_... signing every local client's webhooks; generated when empty

    @classmethod
    def from_environment(cls) -> StackConfig:
        env = os.environ
        schedule = env.get("EMULATOR_CALLBACK_RETRY_SCHEDULE")
        return cls(
            api_port=int(env.get("LOCAL_API_PORT", "3000")),
            upstream_base_url=env.get("KIE_API_BASE_URL") or None,
            upstream_api_key=env.get("KIE_API_KEY", "local-dev-key"),
            hmac_key=env.get("KIE_WEBHOOK_HMAC_KEY", ""),
            aws_endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            generation_seconds=float(env.get("EMULATOR_GENERATION_SECONDS", "6")),
            callback_retry_schedule=tuple(float(s) for s in schedule.split(","))
            if schedule
            else (60.0, 300.0, 900.0),
            workers=int(env.get("LOCAL_LAMBDA_WORKERS", "4")),
            reconcile_interval_seconds=float(env.get("LOCAL_RECONCILE_INTERVAL_SECONDS", "30")),
            reconcile_after_seconds=float(env.get("RECONCILE_AFTER_SECONDS", "60")),
            public_base_url=env.get("LOCAL_PUBLIC_BASE_URL") or None,
            extra_environment=function_settings_from(env),
            api_keys=parse_api_keys(env["LOCAL_API_KEYS"]) if env.get("LOCAL_API_KEYS") else None,
            webhook_secret=env.get("LOCAL_WEBHOOK_SECRET", ""),
        )


# Names of the resources and endpoints the stack creates: what it sets wins over the shell.
STACK_OWNED = frozenset(
    {
        "TASKS_TABLE",
        "IDEMPOTENCY_TABLE",
        "DOWNLOAD_QUEUE_URL",
        "IMAGES_BUCKET",
        "KIE_API_BASE_URL",
        "KIE_API_KEY",
        "KIE_API_KEY_PARAMETER",
        "KIE_WEBHOOK_HMAC_KEY",
        "KIE_WEBHOOK_HMAC_KEY_PARAMETER",
        "PUBLIC_BASE_URL",
    }
)


def sqs_event_sources() -> list[tuple[str, str, int]]:
    """(function, queue logical id, batch size) of every SQS event in the template, the downloader's first."""
    sources = [
        (name, event["Properties"]["Queue"]["Fn::GetAtt"][0], int(event["Properties"].get("BatchSize", 10)))
        for name, function in resources_of_type("AWS::Serverless::Function").items()
        for event in function.get("Events", {}).values()
        if event["Type"] == "SQS"
    ]
    if not sources:
        raise LookupError("template.yaml has no function with an SQS event")
    return sorted(sources, key=lambda source: source[1] != "DownloadQueue")


def function_settings_from(env: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """The functions' own setting variables found in `env`, for the functions (bar the stack's own)."""
    import_layer()
    from image_pipeline.settings import setting_variables

    return {name: env[name] for name in setting_variables() - STACK_OWNED if name in env}


class PortInUseError(OSError):
    """The front door's port is taken (by another `make local`, say)."""

    def __init__(self, port: int) -> None:
        super().__init__(errno.EADDRINUSE, f"port {port} is already in use")
        self.port = port

    def __str__(self) -> str:
        return str(self.strerror)


class LocalStack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.moto: Any = None
        self.emulator: Any = None
        self.pool: LambdaPool | None = None
        self.front_door: FrontDoor | None = None
        self.poller: SqsPoller | None = None  # the download queue's
        self.pollers: list[SqsPoller] = []
        self.scheduler: Scheduler | None = None
        self.resources: StackResources | None = None
        self.endpoint_url = ""
        self.upstream_url = ""
        self._saved_environment: dict[str, str | None] = {}
        self.environments: dict[str, dict[str, str]] = {}
        self.webhook_secret = ""
        self._froze = False
        self._sqs: Any = None  # queued_messages()'s client

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        config = self.config
        # Bind the front door first: a port in use fails before anything else starts, and the callback
        # URL the functions hand out must name its port.
        try:
            self.front_door = FrontDoor(
                port=config.api_port, access_log=config.access_log, api_keys=config.api_keys
            )
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortInUseError(config.api_port) from error
            raise
        if config.aws_endpoint_url:
            self.endpoint_url = config.aws_endpoint_url
        else:
            from devstack.common.moto_server import LocalMotoServer

            self.moto = LocalMotoServer(middleware=config.aws_middleware).start()
            self.endpoint_url = self.moto.endpoint_url
        self._set_environment(
            {
                "AWS_ENDPOINT_URL": self.endpoint_url,
                "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", REGION),
                "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "local"),
                "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
            }
        )
        session = boto3.Session(region_name=os.environ["AWS_DEFAULT_REGION"])
        self.resources = create_stack_resources(session)

        if config.upstream_base_url:
            self.upstream_url = config.upstream_base_url.rstrip("/")
        else:
            from devstack.emulator import EmulatorConfig, EmulatorServer

            self.emulator = EmulatorServer(
                EmulatorConfig(
                    api_key=config.upstream_api_key,
                    hmac_key=config.hmac_key or None,
                    generation_seconds=config.generation_seconds,
                    callback_retry_schedule=config.callback_retry_schedule,
                    **config.emulator_overrides,
                )
            ).start()
            self.upstream_url = self.emulator.base_url

        self.environments = self.function_environments(config.public_base_url or self.front_door.base_url)
        self.pool = LambdaPool(workers=config.workers, environments=self.environments)
        self.front_door.pool = self.pool
        self.front_door.start()
        self.pool.warm_up(config.workers)

        # One poller per SQS event source, as Lambda's event source mappings (the downloader's first).
        for function, queue_id, batch_size in sqs_event_sources():
            queue = self.resources.queues[queue_id]
            poller = SqsPoller(
                self.pool,
                session.client("sqs"),
                function=function,
                queue_url=queue.url,
                queue_arn=queue.arn,
                batch_size=batch_size,
                region=session.region_name or REGION,
                crash_probability=config.poller_crash_probability if queue_id == "DownloadQueue" else 0.0,
            ).start()
            self.pollers.append(poller)
        self.poller = self.pollers[0]
        self.scheduler = Scheduler(self.pool, config.reconcile_interval_seconds)
        if config.reconcile_interval_seconds > 0:
            self.scheduler.start()
        # Every AWS call is answered in this process (moto, with the emulator and the front door beside
        # it): a full collection walked everything start-up built (botocore models, moto's backends,
        # ~200k objects) and held the interpreter ~150 ms each time, stalling every call in flight.
        # What exists now is left out of the collections until stop() (most of it lives as long as
        # the stack; what dies meanwhile is still freed by reference counting).
        gc.collect()
        gc.freeze()
        self._froze = True

    def stop(self) -> None:
        if self._froze:
            gc.unfreeze()  # what the stack built can be collected once it is gone
            self._froze = False
        if self.scheduler is not None and self.config.reconcile_interval_seconds > 0:
            self.scheduler.stop()
        for poller in self.pollers:
            poller.request_stop()  # each ends its long poll at the same time, not one after another
        for part in (*self.pollers, self.front_door):
            if part is not None:
                part.stop()
        self.pollers = []
        if self.pool is not None:
            self.pool.shutdown()
        for part in (self.emulator, self.moto):
            if part is not None:
                part.stop()
        self.poller = self.front_door = self.pool = self.emulator = self.moto = self.scheduler = None
        for name, value in self._saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_environment = {}

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- wiring -----------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        assert self.front_door is not None
        return self.front_door.base_url

    def _set_environment(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self._saved_environment.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def function_environments(self, public_base_url: str) -> dict[str, dict[str, str]]:
        """Each function's own environment: template.yaml's, resolved for this stack."""
        assert self.resources is not None
        overrides = {"RECONCILE_AFTER_SECONDS": f"{self.config.reconcile_after_seconds:g}"}
        if not self.webhook_secret:
            import_layer()
            from image_pipeline.webhooks.signing import new_secret

            self.webhook_secret = self.config.webhook_secret or new_secret()
        overrides.update(self.config.extra_environment)
        return function_environments(
            LocalValues(
                resources=self.resources,
                upstream_url=self.upstream_url,
                callback_base_url=public_base_url,
                upstream_api_key=self.config.upstream_api_key,
                hmac_key=self.config.hmac_key,
                webhook_secret=self.webhook_secret,
                overrides=overrides,
            )
        )

    def upstream_id(self, task_id: str, timeout: float = 30.0) -> str:
        """The upstream's id of one of our tasks (what the emulator knows it by), once the task has it."""
        import time

        from devstack.common.task_lookup import wait_for_upstream_id

        assert self.resources is not None
        dynamodb = boto3.client("dynamodb", endpoint_url=self.endpoint_url, region_name="us-east-1")
        found = wait_for_upstream_id(
            dynamodb, self.resources.tasks_table, task_id, deadline=time.monotonic() + timeout
        )
        if found is None:
            raise LookupError(f"task {task_id} has no upstream id after {timeout:g} s")
        return found

    def queued_messages(self, *, besides: tuple[str, ...] = ()) -> int:
        """Messages on the stack's queues (their dead-letter queues and `besides` aside), visible, in
        flight or delayed: 0 once every message sent to them has been handled and deleted."""
        assert self.resources is not None
        if self._sqs is None:
            region = os.environ.get("AWS_DEFAULT_REGION", REGION)  # the stack's, while it runs
            self._sqs = boto3.client("sqs", endpoint_url=self.endpoint_url, region_name=region)
        counts = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        total = 0
        for name, queue in self.resources.queues.items():
            if name in besides:
                continue
            answer = self._sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=counts)
            total += sum(int(answer["Attributes"][name]) for name in counts)
        return total

    def describe(self) -> str:
        assert self.resources is not None
        upstream = (
            f"{self.upstream_url}   (emulator; generation takes {self.config.generation_seconds:g} s)"
            if self.emulator
            else f"{self.upstream_url}   (KIE_API_BASE_URL)"
        )
        aws = f"{self.endpoint_url}   ({'moto' if self.moto else 'AWS_ENDPOINT_URL'})"
        keys = self.config.api_keys
        access = (
            f"clients {', '.join(sorted(keys.values()))} (x-api-key from LOCAL_API_KEYS)"
            if keys
            else "no API key locally"
        )
        # The CLI's default is port 3000; any other port has to be named. With keys, the first one.
        key = next(iter(keys)) if keys else None
        cli = ".venv/bin/imagegen" + ("" if self.api_url.endswith(":3000") else f" --api-url {self.api_url}")
        cli += f" --api-key {shlex.quote(key)}" if key else ""
        curl_key = [f"       -H {shlex.quote(f'x-api-key: {key}')} \\"] if key else []
        return "\n".join(
            [
                "Local stack is up.",
                f"  API        {self.api_url}   (/tasks, /tasks/{{taskId}}, /models, /openapi.json;"
                f" {access})",
                f"  webhooks   signed with {self.webhook_secret}"
                + (
                    "   (LOCAL_WEBHOOK_SECRET)"
                    if self.config.webhook_secret
                    else "   (generated: set LOCAL_WEBHOOK_SECRET to keep one)"
                ),
                f"  upstream   {upstream}",
                f"  AWS        {aws}",
                f"             table {self.resources.tasks_table}, bucket {self.resources.images_bucket}",
                f"             queue {self.resources.download_queue_url.rsplit('/', 1)[-1]}"
                f" (dead letters: {self.resources.dead_letter_queue_url.rsplit('/', 1)[-1]})",
                f"  reconciler every {self.config.reconcile_interval_seconds:g} s, for tasks waiting over"
                f" {self.config.reconcile_after_seconds:g} s"
                if self.config.reconcile_interval_seconds > 0
                else "  reconciler off",
                "",
                "Try it, in another terminal:",
                f'  {cli} generate "a red fox in snow" --size 3:2 --variants 2 --out ./images',
                f"  {cli} status <taskId>",
                f"  curl -s -X POST {self.api_url}/tasks -H 'Content-Type: application/json' \\",
                *curl_key,
                '       -d \'{"prompt": "a lighthouse at dusk", "size": "1:1"}\'',
                "",
                "Ctrl-C stops everything.",
            ]
        )


def main() -> int:
    stack = LocalStack(StackConfig.from_environment())
    try:
        stack.start()
    except PortInUseError as error:
        print(
            f"could not start the local stack: {error} (another make local?). Stop what holds it, or"
            f" choose another port with LOCAL_API_PORT: LOCAL_API_PORT={error.port + 1} make local",
            file=sys.stderr,
        )
        return 1
    except OSError as error:
        print(f"could not start the local stack: {error}", file=sys.stderr)
        return 1
    print(stack.describe(), flush=True)
    try:
        # Ctrl-C and SIGTERM both stop everything, even when started from a shell that ignores SIGINT.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        signal.pause()
    except KeyboardInterrupt:
        print("\nstopping ...", file=sys.stderr)
    finally:
        stack.stop()
    return 0
