"""Each function's environment as template.yaml declares it, resolved for a local run.

template.yaml is the one source of what a function is given: its `Environment` (and the Globals'),
with every `!Ref` / `!Sub` / `!GetAtt` resolved against the resources the local stack created and the
parameters' defaults. What only a local run adds is named in `local_additions` and nowhere else.
The docker-free stack, `sam local` and the tests all build the functions' environments here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from devstack.common.aws_resources import StackResources
from devstack.common.template import load_template, resources_of_type

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass(frozen=True)
class LocalValues:
    """What a local run puts where the deployed stack has its resources and secrets."""

    resources: StackResources
    upstream_url: str
    callback_base_url: str  # where the upstream reaches the callback route, e.g. http://127.0.0.1:3000
    upstream_api_key: str = "local-dev-key"
    hmac_key: str = ""
    webhook_secret: str = ""  # signs every local client's webhooks (LOCAL_WEBHOOK_SECRET)
    # Setting variables from the shell or a test (they win over the template's values).
    overrides: Mapping[str, str] = field(default_factory=dict)


class UnresolvedValue(LookupError):
    """A template value that a local run has no stand-in for."""


def loopback_origin(url: str) -> str | None:
    """scheme://host:port of a loopback URL, or None when the URL is not on loopback."""
    parts = urlsplit(url)
    if (parts.hostname or "") not in LOOPBACK_HOSTS and parts.hostname != "::1":
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    return f"{parts.scheme}://{host}:{port}"


def declared_environment(logical_id: str, template: dict[str, Any] | None = None) -> dict[str, Any]:
    """The variables the template gives one function (Globals first, its own on top), unresolved."""
    template = template or load_template()
    globals_ = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    function = resources_of_type("AWS::Serverless::Function", template)[logical_id]
    return {**globals_, **function.get("Environment", {}).get("Variables", {})}


def local_additions(values: LocalValues, declared: Mapping[str, Any]) -> dict[str, str]:
    """The only variables a local run sets that the template does not declare, each for a reason."""
    additions: dict[str, str] = {
        # Metrics are printed as EMF log lines in Lambda; locally they would only clutter the output.
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
    }
    if "KIE_API_KEY_PARAMETER" in declared:  # no SSM locally: the key itself
        additions["KIE_API_KEY"] = values.upstream_api_key
    if "KIE_WEBHOOK_HMAC_KEY_PARAMETER" in declared:
        additions["KIE_WEBHOOK_HMAC_KEY"] = values.hmac_key
    if "WEBHOOK_SECRET_PARAMETER_PREFIX" in declared and values.webhook_secret:  # no SSM locally
        additions["WEBHOOK_SECRET"] = values.webhook_secret
    if "DOWNLOAD_ALLOWED_HOSTS" in declared:
        # Downloads from exactly the local upstream's origin, and from nothing else on loopback.
        additions["DOWNLOAD_TRUSTED_ORIGINS"] = loopback_origin(values.upstream_url) or ""
    return additions


def function_environment(
    logical_id: str, values: LocalValues, template: dict[str, Any] | None = None
) -> dict[str, str]:
    template = template or load_template()
    declared = declared_environment(logical_id, template)
    resolver = _Resolver(template, values)
    environment = {name: resolver.resolve(raw, name) for name, raw in declared.items()}
    environment.update(local_additions(values, declared))
    environment.update(values.overrides)
    return environment


def function_environments(
    values: LocalValues, template: dict[str, Any] | None = None
) -> dict[str, dict[str, str]]:
    """Every function's own environment, by logical id."""
    template = template or load_template()
    return {
        name: function_environment(name, values, template)
        for name in resources_of_type("AWS::Serverless::Function", template)
    }


_PLACEHOLDER = re.compile(r"\$\{([^}!]+)\}")


class _Resolver:
    def __init__(self, template: dict[str, Any], values: LocalValues) -> None:
        resources = values.resources
        self.parameters = {
            name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()
        }
        # Locally the upstream and its key are the emulator's (or KIE_API_BASE_URL's); no SSM.
        self.parameters.update(
            {
                "UpstreamBaseUrl": values.upstream_url,
                "UpstreamApiKeyParameter": "",
                "WebhookHmacKeyParameter": "",
            }
        )
        self.refs = {
            "TasksTable": resources.tasks_table,
            "IdempotencyTable": resources.idempotency_table,
            "DownloadQueue": resources.download_queue_url,
            "DownloadDeadLetterQueue": resources.dead_letter_queue_url,
            "ImagesBucket": resources.images_bucket,
            **{queue_id: queue.url for queue_id, queue in resources.queues.items()},
            **{queue.dead_letter_id: queue.dead_letter_url for queue in resources.queues.values()},
            **resources.event_buses,
            "AWS::Region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            "AWS::AccountId": "123456789012",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        self.callback_base_url = values.callback_base_url.rstrip("/")

    def resolve(self, raw: Any, name: str) -> str:
        if isinstance(raw, str | int | float):
            return str(raw)
        if isinstance(raw, dict) and "Ref" in raw:
            return self._ref(raw["Ref"], name)
        if isinstance(raw, dict) and "Fn::Sub" in raw:
            text = raw["Fn::Sub"] if isinstance(raw["Fn::Sub"], str) else raw["Fn::Sub"][0]
            if "${CallbackApi}" in text:  # the callback API is the front door locally
                return self.callback_base_url + text.rsplit("}", 1)[-1]
            return _PLACEHOLDER.sub(lambda match: self._ref(match.group(1), name), text)
        raise UnresolvedValue(f"{name}: no local value for {raw!r}")

    def _ref(self, target: str, name: str) -> str:
        if target in self.parameters:
            return self.parameters[target]
        if target in self.refs:
            return self.refs[target]
        raise UnresolvedValue(
            f"{name}: no local value for !Ref {target} (add it to devstack/common/function_environment.py)"
        )
