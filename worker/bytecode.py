"""Bytecode for the workflow code, which the workflow sandbox imports anew for every run.

The sandbox runs each workflow run in fresh copies of the modules its workflow class comes
from (all but those passed through): it imports them again, from their bytecode caches. Where
there are none (`PYTHONDONTWRITEBYTECODE=1`, common in container images, with the sources
not byte-compiled at install; or sources on a read-only filesystem) every one of those
imports compiles the source again, a cost the worker would pay at every run. `pip install`
byte-compiles a package; a worker run from a source tree writes the caches as it first
imports its modules, unless told not to.

The worker warns at start when its workflow code has no current bytecode; the local stack
(stack/launcher.py) lets its workers write it.
"""

import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path


def workflow_sources(workflows: Iterable[type]) -> list[Path]:
    """The loaded source files of the top-level packages the workflow classes come from:
    what the sandbox imports again for each run (passed-through modules aside)."""
    packages = {workflow.__module__.partition(".")[0] for workflow in workflows}
    sources = set()
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None)
        if name.partition(".")[0] in packages and origin and origin.endswith(".py"):
            sources.add(Path(origin))
    return sorted(sources)


def missing_bytecode(sources: Iterable[Path]) -> list[Path]:
    """The sources whose bytecode cache (where this interpreter looks for it) is missing or
    older than the source."""
    missing = []
    for source in sources:
        cache = Path(importlib.util.cache_from_source(str(source)))
        if not cache.exists() or cache.stat().st_mtime < source.stat().st_mtime:
            missing.append(source)
    return missing
