"""The checkout's sweep: the engine's reconciler with the checkout's own finder of open records
(activities/reconcile.py) and its repair (workflows/checkout_repair.py), every other saga type
by a reset of its ended runs. Every worker ensures its Temporal Schedule at start;
`checkout-saga reconcile` runs one sweep now."""

import logging
from datetime import timedelta
from typing import Protocol

from temporalio.client import Client

from activities.reconcile import FIND_OPEN_CHECKOUTS
from temporal_saga import ensure_sweep_schedule
from temporal_saga.models import OwnRepair, SweepRequest
from workflows.checkout import CHECKOUT
from workflows.checkout_repair import CHECKOUT_REPAIR

CHECKOUT_SWEEP_SCHEDULE = "saga-sweep-checkout"


class SweepSettings(Protocol):
    """What the sweep reads of the worker's settings (worker.settings.Settings)."""

    @property
    def task_queue(self) -> str: ...
    @property
    def reconcile_older_than_seconds(self) -> int: ...
    @property
    def reconcile_every_seconds(self) -> int: ...


def checkout_own_repair(task_queue: str) -> OwnRepair:
    """The checkout's finder and repair, run by the checkout's workers on `task_queue`
    (whichever worker runs the sweep)."""
    return OwnRepair(
        saga_type=CHECKOUT,
        finder=FIND_OPEN_CHECKOUTS,
        repair=CHECKOUT_REPAIR,
        task_queue=task_queue,
    )


def checkout_sweep(
    settings: SweepSettings,
    dry_run: bool = False,
    older_than_seconds: int | None = None,
    wait_seconds: int | None = None,
    saga_type: str | None = None,
) -> SweepRequest:
    """One sweep of every saga type on the engine (or of `saga_type`): the checkout with its
    finder and its repair (its local-first steps may leave effects no event records), every
    other type by a reset of its ended runs; records older than the setting (or
    `older_than_seconds`), waiting `wait_seconds` for its repairs and resets (else the
    default)."""
    return SweepRequest(
        saga_type=saga_type,
        own_repairs=[checkout_own_repair(settings.task_queue)],
        older_than_seconds=(
            settings.reconcile_older_than_seconds
            if older_than_seconds is None
            else older_than_seconds
        ),
        dry_run=dry_run,
        **({} if wait_seconds is None else {"wait_seconds": wait_seconds}),
    )


async def schedule_checkout_sweep(client: Client, settings: SweepSettings) -> None:
    """The sweep on the checkout's Schedule: every saga type, the checkout with its own finder
    and repair (any number of workers may do this at start)."""
    outcome = await ensure_sweep_schedule(
        client,
        schedule_id=CHECKOUT_SWEEP_SCHEDULE,
        request=checkout_sweep(settings),
        every=timedelta(seconds=settings.reconcile_every_seconds),
        task_queue=settings.task_queue,
    )
    logging.getLogger(__name__).info(
        "schedule %s (every %d s): %s",
        CHECKOUT_SWEEP_SCHEDULE,
        settings.reconcile_every_seconds,
        outcome,
    )
