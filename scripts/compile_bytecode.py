"""Compile `sam build` output to bytecode that Lambda can use: a hash-checked .pyc beside every .py.

Lambda's function code and layers are read-only, so a module without a usable .pyc is compiled again on
every cold start, and the result is thrown away (tests/bench measures what that costs each function).
`sam build` ships no .pyc, and `sam package` zips every file dated 1980-01-01, so a .pyc checked by
timestamp would never validate there. One checked by its source's hash (PEP 552) does; a source that no
longer matches is compiled afresh, never run stale. `make build` and `make deploy` run this after
`sam build`, as do the benchmarks, tests/sam and the sam local stack.

    python3.13 scripts/compile_bytecode.py .aws-sam/build

A .pyc serves only the Python version that wrote it: run this with the template's runtime (python3.13).
"""

from __future__ import annotations

import compileall
import py_compile
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def template_runtime(template: Path = ROOT / "template.yaml") -> tuple[int, int]:
    """The Python version of the functions' runtime (Globals: Runtime: pythonX.Y)."""
    found = re.search(r"^\s*Runtime:\s*python(\d+)\.(\d+)\s*$", template.read_text(), re.MULTILINE)
    if found is None:
        raise ValueError(f"{template} names no python runtime")
    return int(found[1]), int(found[2])


def compile_build(build_dir: Path) -> bool:
    """Write a hash-checked .pyc for every .py under `build_dir`; False if any file did not compile."""
    return bool(
        compileall.compile_dir(
            build_dir,
            quiet=1,  # errors only
            force=True,  # replace any timestamp-checked .pyc
            workers=0,  # one per core
            invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
        )
    )


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    build_dir = Path(argv[0])
    wanted = template_runtime()
    if sys.version_info[:2] != wanted:
        print(
            f"compile_bytecode: this is Python {sys.version_info[0]}.{sys.version_info[1]}, the runtime is "
            f"python{wanted[0]}.{wanted[1]}: its .pyc would never be used. Run it with python{wanted[0]}."
            f"{wanted[1]}.",
            file=sys.stderr,
        )
        return 2
    if not build_dir.is_dir():
        print(f"compile_bytecode: {build_dir} is not a directory (run sam build first)", file=sys.stderr)
        return 2
    if not compile_build(build_dir):
        print(f"compile_bytecode: some files under {build_dir} did not compile (above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
