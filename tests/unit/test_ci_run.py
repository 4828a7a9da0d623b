"""`.ci/run` around sam local: required unless SAM_LOCAL_OPTIONAL=1 says otherwise.

The script runs in a copy of its folder layout where the engine, the image build, `docker` and `make`
are stand-ins that record how they were called (nothing is installed, started or tested for real).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

ENGINE = """#!/usr/bin/env bash
echo "engine.sh $*" >>"$CALLS"
if [ "$1" = start ]; then echo "stand-in engine: start exits $STUB_ENGINE_RC"; exit "$STUB_ENGINE_RC"; fi
"""
IMAGES = """#!/usr/bin/env bash
echo "build-images.sh" >>"$CALLS"
"""
MAKE = """#!/usr/bin/env bash
echo "make $* required=${SAM_LOCAL_REQUIRED:-} skip=${SAM_LOCAL_SKIP:+yes}" \\
    "no-pull=${SAM_SKIP_PULL_IMAGE:-}" >>"$CALLS"
"""
DOCKER = """#!/usr/bin/env bash
exit 1
"""


def run_ci(tmp_path: Path, *, engine_starts: bool, optional: str | None) -> tuple[int, str, list[str]]:
    repo, stubs = tmp_path / "repo", tmp_path / "bin"
    (repo / ".ci" / "sam-local").mkdir(parents=True)
    stubs.mkdir()
    shutil.copy(ROOT / ".ci" / "run", repo / ".ci" / "run")
    for path, text in (
        (repo / ".ci" / "sam-local" / "engine.sh", ENGINE),
        (repo / ".ci" / "sam-local" / "build-images.sh", IMAGES),
        (stubs / "make", MAKE),
        (stubs / "docker", DOCKER),
    ):
        path.write_text(text)
        path.chmod(0o755)
    calls = tmp_path / "calls"
    calls.touch()
    env = {
        "PATH": f"{stubs}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        "CALLS": str(calls),
        "STUB_ENGINE_RC": "0" if engine_starts else "1",
        "SAM_LOCAL_LOG": str(tmp_path / "sam-local.log"),
    }
    if optional is not None:
        env["SAM_LOCAL_OPTIONAL"] = optional
    done = subprocess.run(
        ["bash", str(repo / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60
    )
    return done.returncode, done.stderr, calls.read_text().splitlines()


@pytest.mark.parametrize("optional", [None, "0", ""])
def test_a_sam_local_that_cannot_be_set_up_fails_the_run(tmp_path: Path, optional: str | None) -> None:
    code, stderr, calls = run_ci(tmp_path, engine_starts=False, optional=optional)
    assert code == 1
    assert "ERROR: sam local could not be set up" in stderr and "SAM_LOCAL_OPTIONAL=1" in stderr
    assert "stand-in engine: start exits 1" in stderr  # the log's tail is shown
    assert not [call for call in calls if call.startswith("make test")]
    assert calls[-1] == "engine.sh stop"  # the engine this run tried to start is stopped


def test_sam_local_optional_skips_the_sam_local_tests_and_runs_the_rest(tmp_path: Path) -> None:
    code, stderr, calls = run_ci(tmp_path, engine_starts=False, optional="1")
    assert code == 0
    assert "WARNING: sam local is NOT tested in this run" in stderr
    assert "make test required= skip=yes no-pull=" in calls


@pytest.mark.parametrize("optional", [None, "1"])
def test_a_sam_local_that_is_set_up_is_required(tmp_path: Path, optional: str | None) -> None:
    code, _stderr, calls = run_ci(tmp_path, engine_starts=True, optional=optional)
    assert code == 0
    assert calls[:3] == ["engine.sh start", "make install required= skip= no-pull=", "build-images.sh"]
    assert "make test required=1 skip= no-pull=1" in calls
