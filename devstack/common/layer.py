"""The shared Lambda layer's package (image_pipeline), importable by the local tools as the functions
import it: `make local` and `python -m devstack.sam_local` run without the test runner's pythonpath."""

from __future__ import annotations

import sys

from devstack.common.template import ROOT

LAYER_DIR = ROOT / "layers" / "shared"


def import_layer() -> None:
    if str(LAYER_DIR) not in sys.path:
        sys.path.insert(0, str(LAYER_DIR))
