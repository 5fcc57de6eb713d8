"""The parts both benches start: the headless dev server, every service, the checkout
worker(s) (with the bench's variants registered) and the bench worker (bare, the twin)."""

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from stack.launcher import Stack, running_stack, start_worker

# Their processes are named after them: `{module}-{index}`.
CHECKOUT_WORKER_MODULE = "harness.bench.checkout_worker"
BENCH_WORKER_MODULE = "harness.bench.worker"


@contextlib.contextmanager
def bench_stack(
    data_dir: Path,
    workers: int,
    sqlite_pragmas: Sequence[str],
    worker_env: Mapping[str, str],
    temporal_args: Sequence[str] = (),
) -> Iterator[Stack]:
    """Started, and stopped on leaving; `worker_env` on top of the stack's environment."""
    with running_stack(
        data_dir,
        ui=False,
        workers=0,
        sqlite_pragmas=sqlite_pragmas,
        temporal_args=temporal_args,
        trip_worker=False,  # the benches measure the checkout's parts alone
    ) as stack:
        env = {**stack.env, **worker_env}
        for index in range(workers):
            stack.processes.append(
                start_worker(data_dir, env, index, module=CHECKOUT_WORKER_MODULE)
            )
        stack.processes.append(start_worker(data_dir, env, 0, module=BENCH_WORKER_MODULE))
        yield stack
