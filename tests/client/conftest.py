"""Fixtures of the imagegen client tests (the fakes live in imagegen_fakes.py)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from imagegen.cli import main
from imagegen_fakes import API_KEY, API_URL, FakeApi, FakeClock, Result


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGEGEN_API_URL", raising=False)
    monkeypatch.delenv("IMAGEGEN_API_KEY", raising=False)


@pytest.fixture
def run(api: FakeApi, clock: FakeClock, capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """``run("generate", "a fox", ...)``: main() against the fake API, with the API URL and key."""

    def _run(*argv: str, auth: bool = True) -> Result:
        prefix = ["--api-url", API_URL + "/", "--api-key", API_KEY] if auth else []
        code = main(
            [*prefix, *argv],
            transport=httpx.MockTransport(api.handler),
            sleep=clock.sleep,
            monotonic=clock.monotonic,
        )
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return _run
