"""What a fetch gives back and how it fails, as plain types: the download logic uses them without
importing the fetcher (which is I/O); image_pipeline.safe_fetch produces them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RETRYABLE_BY_DEFAULT = {
    "scheme": False,
    "host_not_allowed": False,
    "port_not_allowed": False,
    "address_blocked": False,
    "dns": True,
    "too_many_redirects": False,
    "bad_redirect": False,
    "http_status": False,
    "too_large": False,
    "deadline": True,
    "network": True,
    "not_image": False,
    "truncated": True,
}


class FetchError(Exception):
    """A fetch was refused or failed.

    ``reason`` is one of ``scheme``, ``host_not_allowed``, ``port_not_allowed``, ``address_blocked``, ``dns``,
    ``too_many_redirects``, ``bad_redirect``, ``http_status``, ``too_large``, ``deadline``,
    ``network``, ``not_image``, ``truncated``. ``retryable`` is True for transient failures
    (network, deadline, 5xx, 429, truncated, temporary DNS failures), False for policy violations.
    ``status_code`` is the upstream HTTP status for ``http_status``.
    """

    reason: str
    retryable: bool
    status_code: int | None

    def __init__(
        self, reason: str, message: str, *, retryable: bool | None = None, status_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.retryable = RETRYABLE_BY_DEFAULT.get(reason, False) if retryable is None else retryable
        self.status_code = status_code

    @property
    def link_expired(self) -> bool:
        """True when the upstream said 403/404/410: a presigned link that expired, re-mint it."""
        return self.reason == "http_status" and self.status_code in (403, 404, 410)

    def __repr__(self) -> str:
        return (
            f"FetchError(reason={self.reason!r}, retryable={self.retryable}, "
            f"status_code={self.status_code!r}, message={str(self)!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:  # picklable despite the keyword-only arguments
        return (rebuild_fetch_error, (self.reason, str(self), self.retryable, self.status_code))


def rebuild_fetch_error(reason: str, message: str, retryable: bool, status_code: int | None) -> FetchError:
    return FetchError(reason, message, retryable=retryable, status_code=status_code)


@dataclass(frozen=True)
class FetchedImage:
    """An image fetched and checked: its bytes, what they are, and their digest."""

    body: bytes = field(repr=False)
    content_type: str  # from the magic bytes: image/png, image/jpeg, image/webp
    extension: str  # png | jpg | webp
    sha256: str  # hex
    width: int
    height: int
    final_url: str  # after redirects, without query string or fragment

    @property
    def size(self) -> int:
        return len(self.body)
