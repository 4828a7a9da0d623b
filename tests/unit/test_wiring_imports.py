"""Each handler imports what its path needs and nothing else: the callback never loads the HTTP client,
the safe fetcher, Pillow or the webhook sender; only the API loads the router. In a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# pydantic (about 60 ms of import) is the API's alone: the pipeline reads our own records and the
# upstream's replies with plain code (image_pipeline.task_records, upstream_replies, settings).
NEVER = {
    "callback_handler": ("pydantic", "httpx", "PIL", "image_pipeline.safe_fetch", "image_pipeline.webhooks",
                         "aws_lambda_powertools.event_handler", "image_pipeline.client_api",
                         "image_pipeline.client_requests", "image_pipeline.model_catalog",
                         "aws_lambda_powertools.utilities.data_classes"),
    "reconciler_handler": ("pydantic", "PIL", "image_pipeline.safe_fetch", "image_pipeline.webhooks",
                           "aws_lambda_powertools.event_handler", "image_pipeline.client_api",
                           "image_pipeline.client_requests", "image_pipeline.model_catalog"),
    # Powertools' batch utility (every event source's data classes, asyncio): image_pipeline.sqs_batch.
    "downloader_handler": ("pydantic", "PIL", "image_pipeline.webhooks",
                           "aws_lambda_powertools.event_handler", "image_pipeline.client_api",
                           "image_pipeline.client_requests", "image_pipeline.model_catalog",
                           "aws_lambda_powertools.utilities.batch",
                           "aws_lambda_powertools.utilities.data_classes"),
    "notifier_handler": ("pydantic", "PIL", "image_pipeline.safe_fetch",
                         "aws_lambda_powertools.event_handler", "image_pipeline.client_api",
                         "image_pipeline.client_requests", "image_pipeline.model_catalog",
                         "aws_lambda_powertools.utilities.batch",
                         "aws_lambda_powertools.utilities.data_classes"),
    # Powertools' OpenAPI document models serve GET /openapi.json only; idempotency, an Idempotency-Key.
    "api_handler": ("PIL", "aws_lambda_powertools.event_handler.openapi.models",
                    "aws_lambda_powertools.utilities.idempotency"),
}  # fmt: skip
FOLDERS = {
    "callback_handler": "callback",
    "reconciler_handler": "reconciler",
    "downloader_handler": "downloader",
    "notifier_handler": "notifier",
    "api_handler": "api",
}


@pytest.mark.parametrize("module", sorted(NEVER))
def test_a_handler_imports_only_what_its_path_needs(module: str) -> None:
    # Given a fresh interpreter with the layer and the function's folder; When the handler is imported
    paths = [str(ROOT / "layers" / "shared"), str(ROOT / "functions" / FOLDERS[module])]
    code = (
        f"import sys, json; sys.path[:0] = {paths!r}; import {module}; print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = json.loads(done.stdout.splitlines()[-1])
    # Then none of what it never uses is loaded
    unexpected = [p for p in NEVER[module] if any(m == p or m.startswith(p + ".") for m in loaded)]
    assert unexpected == []


def test_the_models_are_built_on_first_use() -> None:
    # Given the API's pydantic models imported; Then no model is built until it is used (defer_build)
    code = (
        f"import sys; sys.path[:0] = [{str(ROOT / 'layers' / 'shared')!r}]\n"
        "from image_pipeline import client_api, client_requests, model_catalog, upstream_requests\n"
        "built = [m.__name__ for mod in (client_api, client_requests, model_catalog, upstream_requests)\n"
        "         for m in vars(mod).values() if isinstance(m, type) and issubclass(m, mod.Model)\n"
        "         and m is not mod.Model and m.__pydantic_complete__]\n"
        "print(built)\n"
        "upstream_requests.GenerateRequest(prompt='a cat', size='1:1')\n"
        "print(upstream_requests.GenerateRequest.__pydantic_complete__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines() == ["[]", "True"]


def test_the_upstream_client_is_made_by_its_first_call() -> None:
    # Given the upstream as the handlers get it, in a fresh interpreter
    code = (
        f"import sys; sys.path[:0] = [{str(ROOT / 'layers' / 'shared')!r}]\n"
        "from image_pipeline import wiring\n"
        "from image_pipeline.settings import UpstreamSettings\n"
        "upstream = wiring.upstream_client(UpstreamSettings.from_environ({'KIE_API_KEY': 'k'}))\n"
        "print('httpx' in sys.modules)\n"
        "print(type(upstream.client()).__name__, 'httpx' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    # Then nothing is made (no httpx, no TLS context, no key read) until a call needs the upstream
    assert done.stdout.splitlines() == ["False", "UpstreamClient True"]
