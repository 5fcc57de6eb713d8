"""The checkout's business counters, on the worker's metrics endpoint beside the SDK's own.

Recorded through `workflow.metric_meter()`: replay-safe (nothing is recorded while a
workflow replays its history, so a worker restart counts nothing twice) and tagged by the SDK
with the namespace, task queue and workflow type. Recording a metric issues no command, so
adding one never breaks the replay of a running checkout.
"""

from temporalio import workflow

CONFIRMED = "checkout_confirmed"
REJECTED = "checkout_rejected"
COMPENSATIONS_RUN = "checkout_compensations_run"
COMPENSATIONS_STUCK = "checkout_compensations_stuck"
DEAD_LETTERS = "checkout_dead_letters"


def _count(name: str, description: str, **attributes: str) -> None:
    counter = workflow.metric_meter().create_counter(name, description)
    counter.add(1, attributes or None)


def count_confirmed() -> None:
    _count(CONFIRMED, "checkouts decided CONFIRMED")


def count_rejected(reason: str) -> None:
    _count(REJECTED, "checkouts decided REJECTED, by reason code", reason=reason)


def count_compensation_run(compensation: str) -> None:
    _count(COMPENSATIONS_RUN, "compensations that completed", compensation=compensation)


def count_compensation_stuck(compensation: str) -> None:
    _count(
        COMPENSATIONS_STUCK,
        "times a checkout went to NEEDS_ATTENTION, by stuck compensation",
        compensation=compensation,
    )


def count_dead_letter(consumer: str) -> None:
    _count(DEAD_LETTERS, "dead letters written, by consumer", consumer=consumer)
