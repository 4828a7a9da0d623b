"""The emulator's state behind one lock, its timers and callback dispatcher, and what every answer consults.

Each part of :class:`~devstack.emulator.core.EmulatorCore` is a mixin over :class:`CoreState`, so they
all share these tables and this lock.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from .callbacks import CallbackDispatcher, Scheduler
from .config import EmulatorConfig
from .faults import Faults
from .model import FLUX_FAULT_DEFAULTS, ApiReply, Task, envelope

MAX_SERVED_RECORDS = 5000


class CoreState:
    """All state behind one lock; the HTTP layer only parses and streams."""

    def __init__(self, config: EmulatorConfig, base_url: Callable[[], str]) -> None:
        self.config = config
        self._base_url = base_url
        self._lock = threading.RLock()
        self._tasks: OrderedDict[str, Task] = OrderedDict()
        self._run_faults: dict[str, Any] = dict(config.faults)
        self._credits = float(config.credits)
        self._generate_hits: dict[str, deque[float]] = {}
        self._served: deque[dict[str, Any]] = deque(maxlen=MAX_SERVED_RECORDS)
        self._links: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._image_gets: dict[str, int] = {}
        self._link_counter = 0
        self._secret = os.urandom(32)
        self.stop_event = threading.Event()
        self.scheduler = Scheduler()
        self.dispatcher = CallbackDispatcher(
            self.scheduler,
            self._record_delivery,
            retry_schedule=config.callback_retry_schedule,
            timeout=config.callback_timeout_seconds,
            hmac_key=config.hmac_key,
            allow_external=config.allow_external_callbacks,
        )

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.scheduler.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.scheduler.stop()
        self.dispatcher.close()

    @property
    def public_base(self) -> str:
        return self.config.public_base_url or self._base_url()

    # ----------------------------------------------------------------- shared by every answer
    def run_faults(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._run_faults)

    def _faults_for(self, task: Task | None) -> Faults:
        """Run-wide faults under the task's markers (over Flux's own defaults for a Flux task)."""
        with self._lock:
            base = FLUX_FAULT_DEFAULTS if task is not None and task.is_flux else {}
            return Faults.build(base, self._run_faults, task.faults if task else {})

    def _error(self, code: int, msg: str, faults: Faults, data: Any = None) -> ApiReply:
        status = 429 if code == 429 else (code if faults.mirror_http else 200)
        return ApiReply(status, envelope(code, msg, data))

    def _record_delivery(self, task_id: str, entry: dict[str, Any]) -> None:
        """Kept in the order the attempts started ("at"): an attempt is recorded once it is answered, and
        a quick one may be answered before an earlier, slower one."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is not None:
                kept = task.deliveries
                if kept.maxlen is not None and len(kept) == kept.maxlen:
                    kept.popleft()  # the oldest goes, as append would drop it
                bisect.insort(kept, entry, key=lambda recorded: recorded.get("at", 0.0))
