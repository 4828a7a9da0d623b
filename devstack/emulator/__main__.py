"""``python -m devstack.emulator``: run the 4o Image / Flux Kontext emulator (127.0.0.1 unless --host)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from .config import EmulatorConfig
from .faults import FaultSpecError, parse_fault_spec
from .server import EmulatorServer


def _schedule(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated seconds, got {text!r}") from None


def _faults(text: str) -> dict[str, object]:
    try:
        return parse_fault_spec(text)
    except FaultSpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    d = EmulatorConfig()
    p = argparse.ArgumentParser(prog="python -m devstack.emulator", description=__doc__)
    p.add_argument("--port", type=int, default=8099, help="port on --host (0 = any free port)")
    p.add_argument(
        "--host", default=d.host, help="address to bind (default 127.0.0.1; 0.0.0.0 only inside a container)"
    )
    p.add_argument("--api-key", default=None, help="the only accepted Bearer token (default: any)")
    p.add_argument("--hmac-key", default=None, help="sign callbacks with this webhook HMAC key")
    p.add_argument("--generation-seconds", type=float, default=d.generation_seconds)
    p.add_argument("--callback-timeout-seconds", type=float, default=d.callback_timeout_seconds)
    p.add_argument(
        "--callback-retry-schedule",
        type=_schedule,
        default=d.callback_retry_schedule,
        help="seconds before each retry, comma-separated (default 60,300,900)",
    )
    p.add_argument("--link-ttl-seconds", type=float, default=d.link_ttl_seconds, help="presigned links")
    p.add_argument("--result-ttl-seconds", type=float, default=None, help="result URLs (default: retention)")
    p.add_argument(
        "--origin-ttl-seconds", type=float, default=d.origin_ttl_seconds, help="Flux originImageUrl (600)"
    )
    p.add_argument("--retention-seconds", type=float, default=d.retention_seconds)
    p.add_argument("--credits", type=float, default=d.credits)
    p.add_argument("--generate-rate-limit", type=int, default=d.generate_rate_limit, help="per 10 s, 0 = off")
    p.add_argument(
        "--record-info-rate-limit", type=int, default=d.record_info_rate_limit, help="per s, 0 = off"
    )
    p.add_argument(
        "--market-record-info-rate-limit",
        type=int,
        default=d.market_record_info_rate_limit,
        help="Market recordInfo per task per s, 0 = off",
    )
    p.add_argument("--public-base-url", default=None, help="base of the URLs handed out")
    p.add_argument("--allow-external-callbacks", action="store_true", help="deliver to non-loopback hosts")
    p.add_argument(
        "--allow-external-inputs", action="store_true", help="fetch input images from non-loopback hosts"
    )
    p.add_argument("--faults", type=_faults, default={}, help='run-wide faults, e.g. "duplicate=2,trickle=1"')
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s"
    )
    try:
        config = EmulatorConfig(
            port=args.port,
            host=args.host,
            api_key=args.api_key,
            hmac_key=args.hmac_key,
            generation_seconds=args.generation_seconds,
            callback_timeout_seconds=args.callback_timeout_seconds,
            callback_retry_schedule=args.callback_retry_schedule,
            link_ttl_seconds=args.link_ttl_seconds,
            result_ttl_seconds=args.result_ttl_seconds,
            origin_ttl_seconds=args.origin_ttl_seconds,
            retention_seconds=args.retention_seconds,
            credits=args.credits,
            generate_rate_limit=args.generate_rate_limit,
            record_info_rate_limit=args.record_info_rate_limit,
            market_record_info_rate_limit=args.market_record_info_rate_limit,
            public_base_url=args.public_base_url,
            allow_external_callbacks=args.allow_external_callbacks,
            allow_external_inputs=args.allow_external_inputs,
            faults=args.faults,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    server = EmulatorServer(config).start()
    print(f"4o image emulator on {server.base_url} (Ctrl-C to stop)", flush=True)
    try:
        while not done.wait(1.0):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
