"""A task's progress on stderr, drawn by ``rich.progress`` on a terminal.

On a terminal: a spinner, the bar, the percentage, the phase and the elapsed time, redrawn in place.
Anywhere else (a pipe, a CI log) one plain line per status change and nothing more, so logs stay
readable and carry no terminal control codes. Nothing is ever written to stdout.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Final, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["LABELS", "PHASES", "ProgressReporter", "format_elapsed"]

# Where each status sits on the bar when the API gives no progress figure.
PHASES: Final[dict[str, float]] = {
    "submitting": 0.02,
    "submitted": 0.05,
    "downloading": 0.9,
    "stored": 1.0,
    "failed": 1.0,
}
LABELS: Final[dict[str, str]] = {
    "submitting": "waiting for the image service to confirm",
    "submitted": "generating",
    "downloading": "storing images",
    "stored": "done",
    "failed": "failed",
}


def format_elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}:{secs:02d}"


class ProgressReporter:
    """Follows one task: call :meth:`update` after each poll, :meth:`tick` while waiting (animates on
    a terminal only), :meth:`note` to print a message without garbling the bar, :meth:`finish` at the end.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        width: int | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty and isatty())
        self.tty = tty
        self._monotonic = monotonic
        self._started = monotonic()
        self._status: str | None = None
        self._fraction = 0.0
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        if tty:
            console = Console(file=self.stream, force_terminal=True, width=width, highlight=False)
            self._bar = Progress(
                SpinnerColumn(finished_text=" "),
                BarColumn(bar_width=30),
                TaskProgressColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=console,
                auto_refresh=False,  # redrawn on update/tick: no thread, and the clock is ours
                get_time=monotonic,
                redirect_stdout=False,  # stdout is the command's answer (--json): never draw into it
                redirect_stderr=False,
            )

    @property
    def status(self) -> str | None:
        return self._status

    @property
    def fraction(self) -> float:
        return self._fraction

    def update(self, status: str, progress: float | None = None) -> None:
        changed = status != self._status
        self._status = status
        if progress is not None:
            self._fraction = min(1.0, max(0.0, progress))
        elif status in PHASES:
            self._fraction = PHASES[status]
        if status == "stored":
            self._fraction = 1.0
        if self._bar is not None:
            self._draw(status)
        elif changed:
            line = f"[{format_elapsed(self._monotonic() - self._started)}] status: {status}"
            if progress is not None:
                line += f" ({round(progress * 100)}%)"
            self.stream.write(line + "\n")
            self.stream.flush()

    def tick(self) -> None:
        """Advance the spinner and the clock (a no-op off a terminal)."""
        if self._bar is not None and self._task is not None:
            self._bar.refresh()

    def note(self, message: str) -> None:
        """Print ``message`` on its own line (above the bar on a terminal)."""
        if self._bar is not None and self._task is not None:
            self._bar.console.print(message, markup=False, highlight=False, soft_wrap=True)
            self._bar.refresh()
            return
        self.stream.write(message + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """Leave the last state of the bar on screen and move to a new line."""
        if self._bar is not None and self._task is not None:
            self._bar.stop()
            self._task = None

    def _draw(self, status: str) -> None:
        assert self._bar is not None
        label = LABELS.get(status, status)
        description = f"{label} ({status})" if label != status else status
        # stored and failed end the task: the bar is full, the spinner and the clock stop.
        completed = 1.0 if status in ("stored", "failed") else self._fraction
        if self._task is None:
            self._task = self._bar.add_task(description, total=1.0)
            self._bar.update(self._task, completed=completed)
            self._bar.start()  # the first frame, already where the task is
        else:
            self._bar.update(self._task, description=description, completed=completed, refresh=True)
