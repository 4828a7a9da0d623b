"""The `sam build` output as Lambda runs it, for tests/sam and the cold-start bench.

- add_bytecode: what `make build` adds after `sam build` (scripts/compile_bytecode.py);
- date_like_a_sam_zip: `sam package` writes zip entries without a date, so Lambda sees every file dated
  1980-01-01 (only hash-checked bytecode is valid there);
- link_runtime: a folder with only what the Lambda Python runtime ships besides the standard library,
  linked from this venv, compiled as the runtime's packages are.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sysconfig
from pathlib import Path

from devstack.sam_local.defaults import lambda_arch
from devstack.sam_local.local_template import compile_bytecode_command

HOST_ARCH = lambda_arch()  # the build's Architecture, so that its native wheels load here
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six.py")
SAM_ZIP_EPOCH = 315532800  # 1980-01-01T00:00:00Z


def add_bytecode(build: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        compile_bytecode_command(build), capture_output=True, text=True, timeout=600, check=False
    )


def date_like_a_sam_zip(tree: Path) -> None:
    for path in [tree, *tree.rglob("*")]:
        if not path.is_symlink():
            os.utime(path, (SAM_ZIP_EPOCH, SAM_ZIP_EPOCH))


def link_runtime(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    site = Path(sysconfig.get_paths()["purelib"])
    for name in RUNTIME_PACKAGES:
        (folder / name).symlink_to(site / name)
    # A package brings its __pycache__ along; a lone module (six.py) needs its own beside it, or every
    # import of it would compile it (the runtime's packages come compiled).
    (folder / "__pycache__").mkdir()
    for name in RUNTIME_PACKAGES:
        if name.endswith(".py"):
            cached = Path(importlib.util.cache_from_source(str(site / name)))
            if cached.exists():
                (folder / "__pycache__" / cached.name).symlink_to(cached)
    return folder
