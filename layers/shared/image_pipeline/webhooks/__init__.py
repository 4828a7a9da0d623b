"""Webhooks to client apps: Standard Webhooks signatures, receiver URL rules, one pinned delivery.

Plain code (no AWS): the notifier signs an event with :func:`sign`, and :func:`deliver` POSTs it;
the API checks a submitted ``webhookUrl`` with :func:`check_webhook_url`. The address rules, DNS
pinning, deadline and size caps are safe_fetch's (see :mod:`image_pipeline.safe_fetch`).
"""

from image_pipeline.webhooks.deliver import DeliveryResult, deliver
from image_pipeline.webhooks.signing import new_secret, parse_secrets, sign
from image_pipeline.webhooks.urls import WebhookUrlError, check_webhook_url

__all__ = [
    "DeliveryResult",
    "WebhookUrlError",
    "check_webhook_url",
    "deliver",
    "new_secret",
    "parse_secrets",
    "sign",
]
