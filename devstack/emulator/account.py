"""The caller's account: the Bearer key, sliding-window rate limits, the credit balance."""

from __future__ import annotations

import hmac
import time
from collections import deque

from .model import SUBMIT_MESSAGES, ApiReply, envelope, number
from .state import CoreState


def hit(window: deque[float], limit: int, seconds: float) -> bool:
    """Count a request in a sliding window; False when over the limit."""
    if limit <= 0:
        return True
    now = time.monotonic()
    while window and now - window[0] >= seconds:
        window.popleft()
    if len(window) >= limit:
        return False
    window.append(now)
    return True


class AccountMixin(CoreState):
    def authorize(self, header: str | None) -> str | None:
        """The API key of a valid ``Authorization: Bearer`` header, else None."""
        scheme, _, token = (header or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        expected = self.config.api_key
        if expected is not None and not hmac.compare_digest(token.encode(), expected.encode()):
            return None
        return token

    def unauthorized(self) -> ApiReply:
        return self._error(401, SUBMIT_MESSAGES[401], self._faults_for(None))

    # ----------------------------------------------------------------- API: credit
    def credit(self) -> ApiReply:
        with self._lock:
            return ApiReply(200, envelope(200, "success", number(self._credits)))

    def set_credits(self, value: float) -> float:
        with self._lock:
            self._credits = float(value)
            return self._credits
