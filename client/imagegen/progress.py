"""A hand-drawn progress bar for a task, on stderr.

On a terminal the bar redraws in place (``\\r``) with a spinner, the percentage, the phase and the
elapsed time. Anywhere else (a pipe, a CI log) it prints one plain line per status change and
nothing more, so logs stay readable.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from typing import Final, TextIO

__all__ = ["PHASES", "ProgressReporter", "format_elapsed", "render_bar"]

# Where each status sits on the bar when the API gives no progress figure.
PHASES: Final[dict[str, float]] = {"submitted": 0.05, "downloading": 0.9, "stored": 1.0, "failed": 1.0}
LABELS: Final[dict[str, str]] = {
    "submitted": "generating",
    "downloading": "storing images",
    "stored": "done",
    "failed": "failed",
}
SPINNER: Final = "|/-\\"


def render_bar(fraction: float, width: int = 30) -> str:
    """``[#########.....................]`` for ``fraction`` in 0..1."""
    fraction = min(1.0, max(0.0, fraction))
    filled = round(fraction * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def format_elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}:{secs:02d}"


class ProgressReporter:
    """Follows one task: call :meth:`update` after each poll, :meth:`tick` while waiting (animates on
    a TTY only), :meth:`note` to print a message without garbling the bar, :meth:`finish` at the end.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        width: int = 30,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty and isatty())
        self.tty = tty
        self.width = width
        self._monotonic = monotonic
        self._started = monotonic()
        self._status: str | None = None
        self._fraction = 0.0
        self._progress: float | None = None
        self._frame = 0
        self._drawn = 0  # length of the line currently on screen (TTY only)

    @property
    def status(self) -> str | None:
        return self._status

    @property
    def fraction(self) -> float:
        return self._fraction

    def update(self, status: str, progress: float | None = None) -> None:
        changed = status != self._status
        self._status = status
        self._progress = progress
        if progress is not None:
            self._fraction = min(1.0, max(0.0, progress))
        elif status in PHASES:
            self._fraction = PHASES[status]
        if status == "stored":
            self._fraction = 1.0
        if self.tty:
            self._draw()
        elif changed:
            line = f"[{format_elapsed(self._elapsed())}] status: {status}"
            if progress is not None:
                line += f" ({round(progress * 100)}%)"
            self.stream.write(line + "\n")
            self.stream.flush()

    def tick(self) -> None:
        """Advance the spinner and the clock (a no-op off a TTY)."""
        if self.tty and self._status is not None:
            self._frame += 1
            self._draw()

    def note(self, message: str) -> None:
        """Print ``message`` on its own line; the bar is redrawn below it."""
        self._clear()
        self.stream.write(message + "\n")
        if self.tty and self._status is not None:
            self._draw()
        self.stream.flush()

    def finish(self) -> None:
        """Leave the last state of the bar on screen and move to a new line."""
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = 0

    # -- drawing

    def _elapsed(self) -> float:
        return self._monotonic() - self._started

    def _line(self) -> str:
        status = self._status or ""
        spinner = " " if status in ("stored", "failed") else SPINNER[self._frame % len(SPINNER)]
        label = LABELS.get(status, status)
        if label != status:
            label = f"{label} ({status})"
        return (
            f"{spinner} {render_bar(self._fraction, self.width)} {round(self._fraction * 100):3d}% "
            f"{label}  {format_elapsed(self._elapsed())}"
        )

    def _draw(self) -> None:
        columns = shutil.get_terminal_size((80, 24)).columns
        line = self._line()[: max(10, columns - 1)]
        padding = " " * max(0, self._drawn - len(line))
        self.stream.write("\r" + line + padding)
        self.stream.flush()
        self._drawn = len(line)

    def _clear(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self._drawn = 0
