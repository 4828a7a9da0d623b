"""The emulated service itself, without HTTP: one object, assembled from one module per part.

========================  =====================================================================
``state.CoreState``       the tables and the lock, timers, callback dispatcher, start/stop
``account.AccountMixin``  Bearer key, rate limits, credit balance
``tasks.TaskMixin``       generate, record-info, completion, callback and redelivery (4o, Flux)
``market.MarketMixin``    the Market's createTask, recordInfo, states, results and callback
``links.LinkMixin``       download-url, presigned-style links, GETs of result files (file faults)
``admin.AdminMixin``      run-wide faults, inspection, reset
``callbacks``             scheduler and callback delivery (retries, duplicates, signing)
``model``                 tasks, images, replies and the upstream's messages
========================  =====================================================================
"""

from __future__ import annotations

from .account import AccountMixin
from .admin import AdminMixin
from .links import LinkMixin
from .market import MarketMixin

__all__ = ["EmulatorCore"]


class EmulatorCore(AccountMixin, MarketMixin, LinkMixin, AdminMixin):
    """All state behind one lock; the HTTP layer only parses and streams."""
