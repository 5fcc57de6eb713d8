"""The worker's check that its workflow code has bytecode caches (worker/bytecode.py)."""

import importlib
import importlib.util
import os
import py_compile
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.bytecode import missing_bytecode, workflow_sources


@pytest.fixture
def package(tmp_path: Path) -> Iterator[Path]:
    """A package `shopflows` with a workflow-like class in `shopflows.orders`, imported
    without writing bytecode."""
    root = tmp_path / "shopflows"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "orders.py").write_text("class OrderFlow:\n    pass\n")
    (root / "unused.py").write_text("")  # never imported: not the sandbox's concern
    sys.path.insert(0, str(tmp_path))
    writes, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        importlib.import_module("shopflows.orders")
        yield root
    finally:
        sys.dont_write_bytecode = writes
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n.partition(".")[0] == "shopflows"]:
            del sys.modules[name]


def test_the_loaded_sources_of_the_workflows_packages_are_checked(package: Path) -> None:
    flow = sys.modules["shopflows.orders"].OrderFlow
    sources = workflow_sources([flow])
    assert sources == [package / "__init__.py", package / "orders.py"]
    assert missing_bytecode(sources) == sources


def test_a_current_cache_is_not_missing_and_a_stale_one_is(package: Path) -> None:
    sources = [package / "__init__.py", package / "orders.py"]
    for source in sources:
        py_compile.compile(str(source))
    assert missing_bytecode(sources) == []

    orders = package / "orders.py"
    cache = Path(importlib.util.cache_from_source(str(orders)))
    stat = cache.stat()

    os.utime(orders, (stat.st_atime, stat.st_mtime + 10))  # edited after it was compiled
    assert missing_bytecode(sources) == [orders]
