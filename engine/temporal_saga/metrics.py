"""The saga's counters, on the worker's metrics endpoint beside the SDK's own.

Recorded through `workflow.metric_meter()`: replay-safe (nothing is recorded while a workflow
replays its history, so a worker restart counts nothing twice) and tagged by the SDK with the
namespace, task queue and workflow type, so one name serves every saga. Recording a metric
issues no command, so adding one never breaks the replay of a running saga.
"""

from temporalio import workflow

CONFIRMED = "saga_confirmed"
REJECTED = "saga_rejected"
COMPENSATIONS_RUN = "saga_compensations_run"
COMPENSATIONS_STUCK = "saga_compensations_stuck"
STEPS_DONE = "saga_steps_done"


def count(name: str, description: str, **attributes: str) -> None:
    counter = workflow.metric_meter().create_counter(name, description)
    counter.add(1, attributes or None)


def count_confirmed() -> None:
    count(CONFIRMED, "sagas decided CONFIRMED")


def count_rejected(reason: str) -> None:
    count(REJECTED, "sagas decided REJECTED, by reason code", reason=reason)


def count_step_done(step: str) -> None:
    count(STEPS_DONE, "steps that succeeded, by step (each member of a group too)", step=step)


def count_compensation_run(compensation: str) -> None:
    count(COMPENSATIONS_RUN, "compensations that completed", compensation=compensation)


def count_compensation_stuck(compensation: str) -> None:
    count(
        COMPENSATIONS_STUCK,
        "times a saga went to NEEDS_ATTENTION, by stuck compensation",
        compensation=compensation,
    )
