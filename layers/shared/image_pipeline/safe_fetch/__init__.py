"""Fetch an image from an attacker-controlled URL without becoming an SSRF proxy.

The image URLs arrive in public callbacks, so every one is hostile until checked:

* **Scheme, host and port**: ``https`` only, host on ``FetchPolicy.allowed_hosts`` (exact, or
  ``*.domain`` for subdomains), port 443 only (an explicit ``:443`` is the same URL), no ``user:pass@``
  part. The only exception are the exact ``trusted_origins`` (scheme, host, port) of a local
  emulator, which may use ``http``, another port and loopback.
* **Addresses**: the host is resolved once per fetch; every address returned (and any IP literal in
  the URL, in whatever numeric spelling: ``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``...) is
  checked, and a single private, loopback, link-local, CGNAT, reserved, multicast or unspecified
  address (including IPv6 forms that embed such an IPv4) refuses the fetch.
* **Pinning**: the request goes to the checked IP itself, with the original name kept for the
  ``Host`` header, TLS SNI and certificate verification, so a second DNS answer (DNS rebinding)
  is never consulted. The peer address of every new connection is compared with the checked one.
* **Redirects**: never followed by httpx; each ``Location`` is resolved against the current URL and
  goes through all of the checks above, at most ``max_redirects`` times.
* **Time and size**: one deadline for the whole fetch (DNS, every hop, headers and body). Each phase
  gets at most the remaining time and a watchdog shuts the socket down when the deadline passes,
  so a server trickling bytes cannot hold the function. Bodies over ``max_bytes`` are refused from
  ``Content-Length`` or while streaming.
* **Content**: the type comes from the magic bytes, then Pillow verifies the image with a pixel cap
  checked before decoding (:mod:`image_pipeline.image_check`).

Errors are :class:`FetchError` with a machine-readable ``reason`` and a ``retryable`` flag; their
message names the host and path but never the query string (presigned links carry signatures).
"""

from image_pipeline.safe_fetch.addresses import Resolver, blocked_address_reason, parse_numeric_ipv4
from image_pipeline.safe_fetch.errors import FetchError
from image_pipeline.safe_fetch.fetch import FetchedImage, fetch_image
from image_pipeline.safe_fetch.policy import FetchPolicy

__all__ = [
    "FetchError",
    "FetchPolicy",
    "FetchedImage",
    "Resolver",
    "blocked_address_reason",
    "fetch_image",
    "parse_numeric_ipv4",
]
