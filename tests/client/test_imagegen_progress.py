"""The hand-drawn progress bar: animated on a TTY, one line per status change elsewhere."""

from __future__ import annotations

import io

from imagegen.progress import ProgressReporter, format_elapsed, render_bar
from imagegen_fakes import FakeClock


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_render_bar_and_elapsed():
    assert render_bar(0.0, 10) == "[..........]"
    assert render_bar(0.5, 10) == "[#####.....]"
    assert render_bar(1.5, 10) == "[##########]"
    assert format_elapsed(75.9) == "1:15"


def test_tty_redraws_in_place_with_progress_and_phases():
    clock = FakeClock()
    stream = FakeTty()
    bar = ProgressReporter(stream, width=10, monotonic=clock.monotonic)
    assert bar.tty

    bar.update("submitted")
    clock.sleep(1)
    bar.update("submitted", 0.4)
    bar.tick()
    bar.update("downloading")  # no progress figure: the phase decides
    bar.note("warning: something")
    clock.sleep(64)
    bar.update("stored", 1.0)
    bar.finish()

    text = stream.getvalue()
    frames = [f for f in text.split("\r") if f.strip()]
    assert "| [..........]   5% generating (submitted)  0:00" in frames[0]
    assert "[####......]  40% generating (submitted)  0:01" in text
    assert "[#########.]  90% storing images (downloading)" in text
    assert "warning: something\n" in text
    assert frames[-1].rstrip("\n").rstrip() == "  [##########] 100% done (stored)  1:05"
    assert text.endswith("\n")


def test_not_a_tty_prints_one_line_per_status_change():
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
    bar.update("stored", 1.0)
    bar.finish()

    assert stream.getvalue().splitlines() == [
        "[0:02] status: submitted",
        "[0:08] status: downloading (100%)",
        "[0:08] status: stored (100%)",
    ]
    assert "\r" not in stream.getvalue()
