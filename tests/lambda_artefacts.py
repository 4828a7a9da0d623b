"""The `sam build` output as Lambda runs it, for tests/sam and the cold-start bench.

- add_bytecode: what `make build` adds after `sam build` (scripts/compile_bytecode.py);
- date_like_a_sam_zip: `sam package` writes zip entries without a date, so Lambda sees every file dated
  1980-01-01 (only hash-checked bytecode is valid there);
- link_runtime: a folder with only what the Lambda Python runtime ships besides the standard library,
  linked from this venv, compiled as the runtime's packages are;
- check_bytecode: whether every .py of a tree has the .pyc a read-only Lambda would use.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from devstack.sam_local.defaults import lambda_arch
from devstack.sam_local.local_template import compile_bytecode_command

HOST_ARCH = lambda_arch()  # the build's Architecture, so that its native wheels load here
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six.py")
SAM_ZIP_EPOCH = 315532800  # 1980-01-01T00:00:00Z
_CHECKED_HASH_FLAGS = 0b11  # PEP 552: hash-based, and the source's hash checked at import


def add_bytecode(build: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        compile_bytecode_command(build), capture_output=True, text=True, timeout=600, check=False
    )


def date_like_a_sam_zip(tree: Path) -> None:
    for path in [tree, *tree.rglob("*")]:
        if not path.is_symlink():
            os.utime(path, (SAM_ZIP_EPOCH, SAM_ZIP_EPOCH))


def link_runtime(folder: Path) -> Path:
    """The runtime's packages, file by file linked from this venv into folders of this one's own, with
    hash-checked bytecode beside them, as the Lambda runtime ships its packages compiled.

    The venv's own copies cannot serve: uv writes no .pyc, and what an import there leaves behind depends
    on what ran before (and on -B), so a baseline read from them would move with the install. The venv is
    left as it is: the bytecode is written here, in the folder's own __pycache__ directories."""
    folder.mkdir(parents=True, exist_ok=True)
    site = Path(sysconfig.get_paths()["purelib"])
    for name in RUNTIME_PACKAGES:
        _mirror(site / name, folder / name)
    compiled = add_bytecode(folder)
    if compiled.returncode != 0:
        raise RuntimeError(f"compiling the runtime's packages failed:\n{compiled.stdout}{compiled.stderr}")
    return folder


def _mirror(source: Path, target: Path) -> None:
    """Real folders, each file a link to the venv's (never its __pycache__)."""
    if source.is_file():
        target.symlink_to(source)
        return
    for directory, subdirectories, files in os.walk(source):
        subdirectories[:] = [name for name in subdirectories if name != "__pycache__"]
        here = target / Path(directory).relative_to(source)
        here.mkdir(parents=True, exist_ok=True)
        for name in files:
            (here / name).symlink_to(Path(directory) / name)


@dataclass(frozen=True)
class BytecodeCheck:
    """Every .py of a tree, and those without a .pyc that a read-only import would use."""

    sources: int
    missing: tuple[str, ...]  # no .pyc for this Python beside it
    unusable: tuple[str, ...]  # a .pyc, but of another Python, checked by timestamp, or of another source

    @property
    def usable(self) -> int:
        return self.sources - len(self.missing) - len(self.unusable)

    @property
    def complete(self) -> bool:
        return self.sources > 0 and self.usable == self.sources

    def describe(self) -> str:
        text = f"{self.usable} of {self.sources} .py have a hash-checked .pyc"
        if self.missing:
            text += f"; {len(self.missing)} without (e.g. {self.missing[0]})"
        if self.unusable:
            text += f"; {len(self.unusable)} unusable (e.g. {self.unusable[0]})"
        return text


def check_bytecode(tree: Path) -> BytecodeCheck:
    """Each .py under `tree` against its cached .pyc: this Python's magic number, hash-checked (PEP 552,
    the only kind valid in a zip dated 1980-01-01), and the hash of the source as it is now."""
    missing: list[str] = []
    unusable: list[str] = []
    sources = sorted(tree.rglob("*.py"))
    for source in sources:
        name = str(source.relative_to(tree))
        cached = Path(importlib.util.cache_from_source(str(source)))
        try:
            header = cached.read_bytes()[:16]
        except FileNotFoundError:
            missing.append(name)
            continue
        if (
            header[:4] != importlib.util.MAGIC_NUMBER
            or int.from_bytes(header[4:8], "little") != _CHECKED_HASH_FLAGS
            or header[8:16] != importlib.util.source_hash(source.read_bytes())
        ):
            unusable.append(name)
    return BytecodeCheck(len(sources), tuple(missing), tuple(unusable))
