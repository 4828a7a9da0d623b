"""A handler the e2e tests invoke in the local stack's worker processes, as a function is invoked there
(its spec's environment applied first): it answers with what that function's instance would see."""

from __future__ import annotations

import os
from typing import Any


def environment(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    """The values of the variables named in event["names"] in this worker, as the function would read
    them (None for one that is not set)."""
    return {name: os.environ.get(name) for name in event["names"]}
