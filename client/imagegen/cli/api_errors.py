"""Each API error the CLI meets, explained on stderr in the user's terms, and the exit code it ends with."""

from __future__ import annotations

import argparse
import json

import httpx

from imagegen.api import (
    DEFAULT_API_URL,
    ApiConnectionError,
    ApiError,
    ConflictError,
    ForbiddenError,
    InsufficientCreditsError,
    RateLimitedError,
    RequestValidationError,
    ServiceUnavailableError,
    TaskNotFoundError,
    UpstreamAuthError,
)
from imagegen.cli.context import ENV_API_KEY, ENV_API_URL
from imagegen.cli.output import ExitCode, err, short_url


def report_api_error(exc: ApiError, args: argparse.Namespace) -> int:
    api_url = getattr(args, "resolved_api_url", DEFAULT_API_URL)
    status = f"HTTP {exc.status}" if exc.status is not None else ""
    match exc:
        case RequestValidationError():
            err(f"error: the API rejected the request ({status}): {exc.message}")
            for field_error in exc.field_errors:
                err(f"  - {field_error.field}: {field_error.message}")
            fields = {field_error.field for field_error in exc.field_errors}
            model = getattr(args, "model", None)
            if "model" in fields:
                err("`imagegen models` lists the models of this API")
            elif model and any(field.startswith("input.") or field == "input" for field in fields):
                err(f"`imagegen models {model}` lists its input fields (set each with --input KEY=VALUE)")
            return ExitCode.USAGE
        case InsufficientCreditsError():
            err(f"error: insufficient credits on the image service account ({status}): {exc.message}")
        case ForbiddenError():
            hint = (
                "the API key was rejected: check --api-key / " + ENV_API_KEY
                if getattr(args, "resolved_api_key", None)
                else f"this API needs a key: pass --api-key KEY or set {ENV_API_KEY}"
            )
            err(f"error: forbidden ({status}): {hint}")
        case ConflictError() if args.command == "delete":
            err(
                f"error: task {args.task_id} is still running ({status}): it can be deleted once it is "
                f"stored or failed (`imagegen status {args.task_id}`)"
            )
        case ConflictError():
            err(f"error: conflict ({status}): {exc.message}{_advice(exc.message)}")
        case TaskNotFoundError():
            task_id = getattr(args, "task_id", "?")
            detail = "" if "not found" in exc.message.lower() else f": {exc.message}"
            err(f"error: task {task_id} not found ({status}){detail}")
        case RateLimitedError():
            advice = _advice(exc.message)
            err(f"error: still rate limited after several tries ({status}): {exc.message}{advice}")
        case UpstreamAuthError():
            err(
                f"error: the image service rejected the API's own upstream key ({status}); "
                "not your fault: the operator of the API must fix it"
            )
        case ServiceUnavailableError():
            what = status if "unavailable" in exc.message.lower() else f"service unavailable ({status})"
            err(f"error: {what}: {exc.message}{_advice(exc.message)}")
        case ApiConnectionError() if exc.refused:
            local = "start the local stack with `make local`, or " if _is_local(api_url) else ""
            err(
                f"error: cannot connect to {api_url} (connection refused): "
                f"{local}check --api-url / {ENV_API_URL}"
            )
        case ApiConnectionError():
            err(f"error: network error talking to {api_url}: {exc.message}")
        case _:
            where = f" from {exc.method} {short_url(exc.url)}" if exc.method and exc.url else ""
            body = exc.body if isinstance(exc.body, str) or exc.body is None else json.dumps(exc.body)
            detail = f"{status}{where}" if status else f"bad answer{where}"
            err(f"error: unexpected API answer ({detail}): {_one_line(body or exc.message)}")
    return ExitCode.API


def _advice(message: str) -> str:
    """``"; try again later"``, unless the API's message already says when to try again."""
    said = any(word in message.lower() for word in ("try again", "retry"))
    return "" if said else "; try again later"


def _is_local(url: str) -> bool:
    host = httpx.URL(url).host
    return host in ("127.0.0.1", "localhost", "::1", "0.0.0.0")  # noqa: S104


def _one_line(text: str, limit: int = 500) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
