"""The layer ships exactly what the tests ran with: layers/shared/requirements.txt is requirements-dev.lock's
pins and hashes for the layer's requirements and everything they require (scripts/layer_requirements.py)."""

from __future__ import annotations

import re

from scripts.layer_requirements import LOCK, TARGET, TOP_LEVEL, layer_requirements, lock_entries


def test_the_layer_requirements_are_generated_from_the_lock() -> None:
    # Given the lock and the layer's top-level requirements; When the layer's file is generated again;
    # Then it is the committed one (make lock rewrites both).
    assert TARGET.read_text() == layer_requirements(LOCK.read_text(), TOP_LEVEL.read_text()), (
        "layers/shared/requirements.txt is stale: run make lock"
    )


def test_every_layer_package_is_pinned_with_the_locks_hashes() -> None:
    locked = lock_entries(LOCK.read_text())
    blocks = [block for block in re.split(r"\n(?=[A-Za-z0-9])", TARGET.read_text()) if "==" in block]
    names = {re.sub(r"[-_.]+", "-", block.split("==")[0].split("\n")[-1]).lower() for block in blocks}
    assert {"aws-lambda-powertools", "httpx", "pydantic", "pillow", "pydantic-core", "httpcore"} <= names
    assert not names & {"boto3", "botocore", "s3transfer"}  # the Lambda runtime provides them
    for block in blocks:
        assert "--hash=sha256:" in block, block.split("\n")[0]
        name = re.sub(r"[-_.]+", "-", block.split("==")[0].split("\n")[-1]).lower()
        assert block.strip() == locked[name][0].strip()
