"""`sam local invoke` and `sam local start-api` against the offline stand-in images.

Runs .ci/sam-local/smoke.sh, which builds a throwaway SAM project (python3.13, a local layer, a function
that reaches a moto container over a user-defined Docker network) and checks every round trip. Needs the
stand-in images (skips without them, fails without them under SAM_LOCAL_REQUIRED=1):

    sudo bash .ci/sam-local/engine.sh start && bash .ci/sam-local/build-images.sh
"""

import subprocess

import pytest

from tests.conftest import ROOT
from tests.samlocal.conftest import LAMBDA_IMAGE, engine_or_skip

pytestmark = pytest.mark.samlocal

SMOKE = ROOT / ".ci" / "sam-local" / "smoke.sh"


def test_sam_local_invoke_and_start_api() -> None:
    engine_or_skip(LAMBDA_IMAGE, "imagegen-sam-local/moto:latest")
    run = subprocess.run(["bash", str(SMOKE)], capture_output=True, text=True, timeout=280, cwd=ROOT)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr[-6000:]}"
    assert "smoke: all checks passed" in run.stderr
