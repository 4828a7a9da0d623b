"""The progress of a task: a rich progress bar on a terminal, one plain line per status change elsewhere."""

from __future__ import annotations

import io
import re

from imagegen.progress import ProgressReporter, format_elapsed
from imagegen_fakes import FakeClock

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def frames(stream: io.StringIO) -> list[str]:
    """What the terminal showed, redraw by redraw, without colours and cursor moves."""
    return [f.strip() for f in ANSI.sub("", stream.getvalue()).replace("\n", "\r").split("\r") if f.strip()]


def test_format_elapsed():
    assert format_elapsed(75.9) == "1:15"
    assert format_elapsed(-3) == "0:00"


def test_a_terminal_gets_a_rich_bar_redrawn_in_place_on_the_fake_clock():
    clock = FakeClock()
    stream = FakeTty()
    bar = ProgressReporter(stream, width=100, monotonic=clock.monotonic)
    assert bar.tty

    bar.update("submitted")
    clock.sleep(1)
    bar.update("submitted", 0.4)
    bar.tick()
    bar.update("downloading")  # no progress figure: the phase decides
    bar.note("warning: [not markup] something")
    clock.sleep(64)
    bar.update("stored", 1.0)
    bar.finish()

    shown = frames(stream)
    assert re.fullmatch(r"\S ━+╸?━* +5% generating \(submitted\) 0:00:00", shown[0]), shown[0]
    assert any(re.search(r" 40% generating \(submitted\) 0:00:01$", f) for f in shown)
    assert any(re.search(r" 90% storing images \(downloading\) 0:00:01$", f) for f in shown)
    assert "warning: [not markup] something" in shown  # on its own line, as written
    assert re.fullmatch(r"━{30} 100% done \(stored\) 0:01:05", shown[-1]), shown[-1]  # no spinner: done
    assert "\r" in stream.getvalue()  # redrawn in place
    assert stream.getvalue().endswith("\n") or stream.getvalue().endswith("\x1b[?25h")


def test_a_failed_task_stops_the_spinner_and_the_clock():
    clock = FakeClock()
    stream = FakeTty()
    bar = ProgressReporter(stream, width=100, monotonic=clock.monotonic)

    bar.update("submitted", 0.2)
    clock.sleep(3)
    bar.update("failed")
    clock.sleep(30)
    bar.tick()
    bar.finish()

    assert re.fullmatch(r"━{30} 100% failed 0:00:03", frames(stream)[-1]), frames(stream)[-1]


def test_not_a_tty_prints_one_line_per_status_change_and_no_control_codes():
    clock = FakeClock()
    stream = io.StringIO()
    bar = ProgressReporter(stream, monotonic=clock.monotonic)
    assert not bar.tty

    for status, progress in [
        ("submitted", None),
        ("submitted", 0.3),
        ("submitted", 0.6),
        ("downloading", 1.0),
    ]:
        clock.sleep(2)
        bar.update(status, progress)
        bar.tick()
    bar.note("warning: retrying")
    bar.update("stored", 1.0)
    bar.finish()

    assert stream.getvalue().splitlines() == [
        "[0:02] status: submitted",
        "[0:08] status: downloading (100%)",
        "warning: retrying",
        "[0:08] status: stored (100%)",
    ]
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()


def test_a_note_before_the_first_status_is_a_plain_line_even_on_a_terminal():
    stream = FakeTty()
    ProgressReporter(stream, width=100).note("warning: rate limited")
    assert stream.getvalue() == "warning: rate limited\n"
