"""wiring.reset() forgets every adapter it built: tests switch moto accounts between cases, and the
least-privilege recorder (tests/iam) sees only clients built after it starts. A cached factory that
reset() missed kept an earlier test's S3 client, and the IAM test then found a used grant unused."""

from __future__ import annotations

import inspect

import pytest
from image_pipeline import wiring


def test_reset_clears_every_cached_factory_in_the_wiring_module(monkeypatch: pytest.MonkeyPatch) -> None:
    factories = {
        name: value
        for name, value in vars(wiring).items()
        if hasattr(value, "cache_clear") and inspect.getmodule(value) is wiring
    }
    assert {"input_store", "tasks_table", "image_store"} <= set(factories)  # the scan sees them
    cleared: list[str] = []
    for name, factory in factories.items():
        monkeypatch.setattr(factory, "cache_clear", lambda name=name: cleared.append(name))
    wiring.reset()
    assert sorted(factories) == sorted(cleared), "wiring.reset() leaves these cached: " + ", ".join(
        sorted(set(factories) - set(cleared))
    )
