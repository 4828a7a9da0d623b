"""`pip install ./client` on its own: the imagegen package, built from a copy of client/ and nothing else,
installs into a fresh virtual environment with httpx and rich only (none of the bundle's boto3,
Powertools, Pillow or pydantic), and `imagegen` runs there."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from imagegen import __version__
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.loopback_server import Exchange, LoopbackServer

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "client"
# Import names of what the bundle needs and a client does not.
NOT_FOR_A_CLIENT = ("boto3", "botocore", "aws_lambda_powertools", "PIL", "pydantic")


def _environment() -> dict[str, str]:
    """This shell's environment without anything that would lend the fresh venv the repo's packages."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "UV_PYTHON")
    }
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _run(argv: list[str], *, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv, capture_output=True, text=True, env=_environment(), cwd=cwd, timeout=300, check=False
    )
    if check:
        assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr}"
    return done


def _uv() -> str | None:
    """The uv `make install` used: the venv's own (installed when none is on PATH), else PATH's."""
    beside = Path(sys.executable).with_name("uv")
    return str(beside) if beside.exists() else shutil.which("uv")


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("imagegen-package")
    # A copy: the build writes build/ and *.egg-info beside its sources, and client/ must suffice alone.
    source = work / "client"
    shutil.copytree(
        CLIENT, source, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__")
    )
    venv = work / "venv"
    python = venv / "bin" / "python"
    uv = _uv()
    if uv is not None:
        _run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)])
        install = [uv, "pip", "install", "--quiet", "--native-tls", "--python", str(python), str(source)]
        # From uv's cache when `make install` has filled it (no network), else from the index.
        if _run([*install, "--offline"], check=False).returncode != 0:
            _run(install)
    else:
        _run([sys.executable, "-m", "venv", str(venv)])
        _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source)])
    return venv


def test_imagegen_version(venv: Path) -> None:
    done = _run([str(venv / "bin" / "imagegen"), "--version"])
    assert done.stdout == f"imagegen {__version__}\n"


INSPECT = """
import importlib, importlib.metadata, importlib.util, json, os, pkgutil, sys
import imagegen
modules = sorted(m.name for m in pkgutil.walk_packages(imagegen.__path__, "imagegen."))
for name in modules:
    if name != "imagegen.__main__":  # runs the CLI
        importlib.import_module(name)
print(json.dumps({
    "file": imagegen.__file__,
    "typed": os.path.exists(os.path.join(os.path.dirname(imagegen.__file__), "py.typed")),
    "modules": modules,
    "found": [name for name in sys.argv[1:] if importlib.util.find_spec(name) is not None],
    "version": importlib.metadata.version("imagegen"),
    "requires": importlib.metadata.requires("imagegen"),
}))
"""


def test_every_module_imports_without_the_bundles_dependencies(venv: Path, tmp_path: Path) -> None:
    done = _run([str(venv / "bin" / "python"), "-c", INSPECT, *NOT_FOR_A_CLIENT], cwd=tmp_path)
    seen = json.loads(done.stdout)
    assert Path(seen["file"]).is_relative_to(venv), seen["file"]  # the installed copy, not client/
    assert seen["found"] == []
    assert seen["typed"], "py.typed is installed: type checkers read imagegen.api's annotations"
    in_source = sorted(
        ".".join(path.relative_to(CLIENT).with_suffix("").parts).removesuffix(".__init__")
        for path in (CLIENT / "imagegen").rglob("*.py")
    )
    assert seen["modules"] == [name for name in in_source if name != "imagegen"]  # every module shipped
    assert seen["version"] == __version__
    assert sorted(canonicalize_name(Requirement(r).name) for r in seen["requires"]) == ["httpx", "rich"]


@pytest.fixture
def api_url() -> Iterator[str]:
    """An API that knows no task."""

    def handle(exchange: Exchange) -> None:
        body = json.dumps({"message": f"task {exchange.path.rsplit('/', 1)[-1]} not found"}).encode()
        exchange.respond(404, body, {"Content-Type": "application/json"})

    with LoopbackServer(handle) as server:
        yield server.origin


def test_a_command_talks_to_the_api(venv: Path, api_url: str) -> None:
    done = _run([str(venv / "bin" / "imagegen"), "--api-url", api_url, "status", "t0"], check=False)
    assert done.returncode == 3, done.stderr  # ExitCode.API
    assert "task t0 not found" in done.stderr


def test_the_dev_lock_pins_what_the_client_needs() -> None:
    """`make install` installs the client without its dependencies (--no-deps): the lock must have them."""
    pinned = dict(
        (canonicalize_name(name), version)
        for name, version in re.findall(
            r"^([A-Za-z0-9._-]+)==(\S+)", (ROOT / "requirements-dev.lock").read_text(), re.M
        )
    )
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    for requirement in map(Requirement, project["dependencies"]):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{name} is not in requirements-dev.lock"
        assert requirement.specifier.contains(pinned[name]), f"{name}=={pinned[name]} vs {requirement}"
