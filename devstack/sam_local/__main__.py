"""The command line: python -m devstack.sam_local run|up|down|template|seed|relay|drain."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

from devstack import sam_local
from devstack.common.template import ROOT
from devstack.sam_local.defaults import DEFAULT_NAME, STATE_DIR, SamLocalError, lambda_arch, log
from devstack.sam_local.engine import container_cli, engine_problem, host_gateway_address
from devstack.sam_local.local_template import (
    compile_bytecode_command,
    find_sam,
    sam_build_command,
    sam_environment,
    write_template,
)
from devstack.sam_local.operations import drain, relay, seed
from devstack.sam_local.services import Services, down, up


def skip_pull_default() -> bool:
    return os.environ.get("SAM_SKIP_PULL_IMAGE", "").lower() in ("1", "true", "yes")


def describe(services: Services, *, start_api_running: bool) -> str:
    config = os.path.relpath(services.files["samconfig"], ROOT)
    api = services.api_url
    lines = [
        "sam local is wired up." if start_api_running else "The services for sam local are up.",
        f"  API        {api}   (sam local start-api; no API key: every request is the client local)",
        f"  AWS        moto: {services.moto_url} on network {services.network}"
        f" ({services.moto_host_url} from here)",
        f"  upstream   emulator: {services.upstream_url} ({services.upstream_host_url} from here)",
        f"  callbacks  PUBLIC_BASE_URL={services.public_base_url}",
        "",
    ]
    if os.environ.get("LOCAL_API_KEYS"):
        # sam local start-api enforces no API key and leaves requestContext.identity.apiKeyId unset.
        lines += [
            "  LOCAL_API_KEYS is not honoured here: sam local start-api checks no x-api-key and passes no",
            "  apiKeyId, so every request is the client local. make local checks keys per client.",
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
    if subprocess.run(compile_bytecode_command(build_dir), cwd=ROOT, check=False).returncode != 0:  # noqa: S603
        log("compiling the build's bytecode failed")
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
    parser = argparse.ArgumentParser(prog="python -m devstack.sam_local", description=sam_local.__doc__,
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
