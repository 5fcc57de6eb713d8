"""Bare Temporal: the checkout's shape with no-op activities, no services, no fan-out.

Four no-op activities before the answer (create order, reserve, charge, confirm), answered
through a `decision` update started with the workflow (update-with-start, as the checkout),
then one more after it (commit stock), as the checkout does it: an activity, at the lower
priority for what follows an answer (AFTER_ANSWER). What is left is the engine's own cost on
this machine.
"""

from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from models.events import AFTER_ANSWER

BARE_TASK_QUEUE = "bench-bare"
STEPS_BEFORE_ANSWER = ("create_order", "reserve_stock", "charge_payment", "confirm_order")
STEPS_AFTER_ANSWER = ("commit_stock",)
STEP_TIMEOUT = timedelta(seconds=10)


@activity.defn(name="bench_noop")
async def noop(step: str) -> str:
    return step


@workflow.defn(name="BenchBare")
class BareWorkflow:
    """`local`: run the steps as local activities (the knob the bench measures)."""

    def __init__(self) -> None:
        self._answer: str | None = None

    @workflow.run
    async def run(self, local: bool) -> str:
        for step in STEPS_BEFORE_ANSWER:
            await self._step(step, local)
        self._answer = "CONFIRMED"
        for step in STEPS_AFTER_ANSWER:
            await workflow.execute_activity(
                noop,
                step,
                start_to_close_timeout=STEP_TIMEOUT,
                priority=AFTER_ANSWER,
            )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._answer

    async def _step(self, step: str, local: bool) -> None:
        if local:
            await workflow.execute_local_activity(noop, step, start_to_close_timeout=STEP_TIMEOUT)
        else:
            await workflow.execute_activity(noop, step, start_to_close_timeout=STEP_TIMEOUT)

    @workflow.update
    async def decision(self) -> str:
        await workflow.wait_condition(lambda: self._answer is not None)
        assert self._answer is not None
        return self._answer
