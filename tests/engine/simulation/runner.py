"""Run schedules on a Temporal server and check the rules: the driver starts each plan's
saga, acts on its events as the activities report their calls (a cancel as a step starts),
plays the operator when a compensation is stuck, then gathers what the rules read."""

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from stack.launcher import venv_binary
from temporal_saga import SAGA_STATUS
from temporal_saga.client import NoSweepWorker, sweep_now
from temporal_saga.codec import data_converter
from temporal_saga.models import (
    CancelSaga,
    SagaProgress,
    SagaResult,
    SagaStatus,
    SkipCompensation,
    SweepRequest,
)
from temporal_saga.search import SEARCH_ATTRIBUTES
from temporal_saga.worker import saga_worker, sandbox_runner
from tests.engine.simulation.plans import Event, OperatorAction, Plan
from tests.engine.simulation.rules import Finished, judge, left_undone
from tests.engine.simulation.sagas import ACTIVITIES, HEALED, HOOKS, LEDGER, SAGAS, SimSaga
from tests.support.time_skipping import time_skipping_server

TASK_QUEUE = "simulation"
# A worker that keeps no workflow in cache: each task replays the history so far.
REPLAYING_QUEUE = "simulation-replaying"
# A saga (with its nested saga) whose history stays the same this long has stopped short of
# its end (every_saga_ends). Progress, not a clock: on a loaded machine a saga on the worker
# with no cache replays its whole history on every task and may take minutes to end.
RESULT_SECONDS = 120.0
# The most the driver gives one schedule, waits for its results and judging included: a
# schedule past it is stopped and reported by its seed (every_saga_ends), never waited on.
SCHEDULE_SECONDS = 900.0
# A query unanswered this long is asked again (the operator) or fails the judging: a query
# to a saga on the worker with no cache replays its whole history first.
QUERY_TIMEOUT = timedelta(seconds=30)
QUERY_TRIES = 5
# How long the driver waits for its cancelled tasks of a schedule to end.
ENDING_SECONDS = 10.0
# A worker busy with many schedules takes a while to run a sweep's first task.
SWEEP_START_TIMEOUT = timedelta(seconds=60)
SWEEP_TRIES = 3
# Terminated schedules settled by one sweep (far below the sweep's limit of 500 runs).
SWEEP_BATCH = 50
# Once an undo's call failed, how often the operator looks for a stuck saga.
OPERATOR_POLL_SECONDS = 0.25
Handle = WorkflowHandle[Any, Any]
# Not a rule of the engine's: the driver could not finish a schedule (reported, and the run
# goes on).
DRIVER_FAILED = "the_driver_finished_the_schedule"
# The driver's tasks (events, the operator) of each schedule running, by plan id.
DRIVING: dict[str, list[asyncio.Task[None]]] = {}
# What the driver of each schedule is waiting for, by plan id (a stopped one says it).
WAITING: dict[str, str] = {}


@dataclass
class Outcome:
    plan: Plan
    violations: list[tuple[str, str]]
    decision: str
    # What the schedule exercised: rules checked, events fired, outcomes met, operator acts.
    exercised: Counter[str] = field(default_factory=Counter)
    # Terminated by its schedule: settled by the sweep, then judged.
    terminated: bool = False


@contextlib.asynccontextmanager
async def simulation_server() -> AsyncIterator[Client]:
    """A dev server of the simulation's own (SQLite in memory, the engine's search
    attributes) and its workers polling it: whatever a schedule leaves running ends with it,
    and nothing else on the server competes with the schedules."""
    async with (
        await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(venv_binary("temporal")),
            data_converter=data_converter(),
            ui=False,
            dev_server_log_level="error",
            search_attributes=list(SEARCH_ATTRIBUTES),
        ) as env,
        simulation_workers(env.client),
    ):
        yield env.client


@contextlib.asynccontextmanager
async def time_skipping_simulation_server() -> AsyncIterator[Client]:
    """The time-skipping test server and the simulation's workers: for the schedules it runs
    as a real server does (plans.runs_on_time_skipping), without a dev server."""
    async with (
        time_skipping_server(data_converter(), SEARCH_ATTRIBUTES) as env,
        simulation_workers(env.client),
    ):
        yield env.client


@contextlib.asynccontextmanager
async def simulation_workers(client: Client) -> AsyncIterator[None]:
    async with (
        saga_worker(client, task_queue=TASK_QUEUE, sagas=SAGAS, activities=ACTIVITIES),
        saga_worker(
            client,
            task_queue=REPLAYING_QUEUE,
            sagas=SAGAS,
            activities=ACTIVITIES,
            max_cached_workflows=0,
        ),
    ):
        yield


async def run_plans(
    client: Client,
    plans: Sequence[Plan],
    *,
    concurrency: int = 16,
    on_done: Callable[[Outcome], None] = lambda outcome: None,
) -> list[Outcome]:
    """Run every plan (at most `concurrency` at once) on workers already polling. Terminated
    schedules are settled by a sweep for every SWEEP_BATCH of them, and one for the rest
    at the end: a long run stays within what one sweep looks at."""
    gate = asyncio.Semaphore(concurrency)
    one_sweep_at_a_time = asyncio.Lock()
    unswept: list[Outcome] = []
    settling: list[asyncio.Task[list[Outcome]]] = []

    async def settle(terminated: list[Outcome]) -> list[Outcome]:
        try:
            async with one_sweep_at_a_time:
                await _swept(client)
        except Exception as err:  # reported as these schedules', never the run's end
            await stop_plans(client, [o.plan for o in terminated])
            words = f"the sweep failed: {type(err).__name__}: {err}"
            settled = [Outcome(o.plan, [(DRIVER_FAILED, words)], "none") for o in terminated]
        else:
            settled = await asyncio.gather(*(_settled_in_time(client, o) for o in terminated))
        for outcome in settled:
            on_done(outcome)
        return settled

    def sweep(terminated: list[Outcome]) -> None:
        settling.append(asyncio.create_task(settle(terminated)))

    async def one(plan: Plan) -> Outcome:
        async with gate:
            try:
                outcome = await asyncio.wait_for(run_plan(client, plan), SCHEDULE_SECONDS)
            except TimeoutError:
                await stop_plans(client, [plan])
                waiting = WAITING.get(plan.plan_id, "starting")
                words = f"no outcome in {SCHEDULE_SECONDS:.0f} s: stopped while {waiting}"
                outcome = Outcome(plan, [("every_saga_ends", words)], "none")
            except Exception as err:  # reported as the schedule's, never the run's end
                await stop_plans(client, [plan])
                waiting = WAITING.get(plan.plan_id, "starting")
                words = f"the driver failed while {waiting}: {type(err).__name__}: {err}"
                outcome = Outcome(plan, [(DRIVER_FAILED, words)], "none")
            finally:
                WAITING.pop(plan.plan_id, None)
        if outcome.terminated:
            unswept.append(outcome)
            if len(unswept) >= SWEEP_BATCH:
                sweep(unswept[:])
                unswept.clear()
        else:
            DRIVING.pop(plan.plan_id, None)
            on_done(outcome)
        return outcome

    try:
        outcomes = list(await asyncio.gather(*(one(plan) for plan in plans)))
        if unswept:
            sweep(unswept[:])
        settled = [o for batch in await asyncio.gather(*settling) for o in batch]
    finally:
        for task in settling:
            task.cancel()
    by_id = {outcome.plan.plan_id: outcome for outcome in settled}
    return [by_id.get(outcome.plan.plan_id, outcome) for outcome in outcomes]


async def _swept(client: Client) -> None:
    """A sweep of the terminated SimSagas; started again if a worker busy with many
    schedules did not take its first task in time."""
    for tries_left in reversed(range(SWEEP_TRIES)):
        try:
            await sweep_now(
                client,
                SweepRequest(saga_type="SimSaga"),
                TASK_QUEUE,
                start_timeout=SWEEP_START_TIMEOUT,
            )
            return
        except NoSweepWorker:
            if not tries_left:
                raise


async def first_breaking(client: Client, plans: Sequence[Plan], rule: str) -> Outcome | None:
    """The first schedule (by when it ended) that breaks `rule`, the others stopped there;
    None when none does. All at once: a schedule the bug keeps from ending must not hold
    back the one that shows it."""
    found: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

    def on_done(outcome: Outcome) -> None:
        if not found.done() and any(name == rule for name, _ in outcome.violations):
            found.set_result(outcome)

    running = asyncio.ensure_future(
        run_plans(client, plans, concurrency=len(plans), on_done=on_done)
    )
    either: list[asyncio.Future[Any]] = [running, found]
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    if not found.done():
        running.result()  # its error, if it failed
        return None
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    await stop_plans(client, plans)
    return found.result()


async def stop_plans(client: Client, plans: Sequence[Plan]) -> None:
    """Terminate whatever of these schedules still runs (their sagas and nested sagas), and
    drop their driver's work: a test that is done with them leaves nothing behind."""
    for plan in plans:
        await _ended(DRIVING.pop(plan.plan_id, []))
        HOOKS.pop(plan.plan_id, None)

    async def stop(workflow_id: str) -> None:
        with contextlib.suppress(Exception):  # never started, or already closed
            await client.get_workflow_handle(workflow_id).terminate("the test is done with it")

    await asyncio.gather(
        *(stop(wid) for plan in plans for wid in (plan.plan_id, f"{plan.plan_id}/child"))
    )


async def run_plan(client: Client, plan: Plan) -> Outcome:
    LEDGER.pop(plan.plan_id, None)
    HEALED.discard(plan.plan_id)
    exercised: Counter[str] = Counter()
    handle: Handle = client.get_workflow_handle(plan.plan_id)
    child: Handle = client.get_workflow_handle(f"{plan.plan_id}/child")
    tasks: list[asyncio.Task[None]] = []
    DRIVING[plan.plan_id] = tasks
    HOOKS[plan.plan_id] = _hook(plan, handle, child, tasks, exercised)
    keep_driving = False
    try:
        WAITING[plan.plan_id] = "starting the saga"
        await client.start_workflow(
            SimSaga.run,
            plan,
            id=plan.plan_id,
            task_queue=REPLAYING_QUEUE if plan.replay_every_task else TASK_QUEUE,
        )
        try:
            WAITING[plan.plan_id] = "waiting for the saga's result"
            result = SagaResult.model_validate(await _result(handle, child))
        except WorkflowFailureError as err:
            terminates = any(event.kind == "terminate" for event in plan.events)
            status = (await handle.describe()).status
            if terminates and status is WorkflowExecutionStatus.TERMINATED:
                exercised["event terminate, then the sweep"] += 1
                # The driver stays on: the sweep's new run compensates (or goes on) at once.
                keep_driving = True
                return Outcome(plan, [], "terminated", exercised, terminated=True)
            violations = [("every_saga_ends", f"ended without a decision: {err.cause}")]
            lost = left_undone(plan, LEDGER.get(plan.plan_id, []))
            if lost:
                words = f"{', '.join(lost)} started and never undone (the saga ended: {err.cause})"
                violations.append(("rejected_undoes_every_started_step", words))
            return Outcome(plan, violations, "none", exercised)
        except TimeoutError as err:
            return Outcome(plan, [("every_saga_ends", str(err))], "none", exercised)
        finally:
            if not keep_driving:
                WAITING[plan.plan_id] = "ending the driver's tasks"
                await _ended(tasks)
        return await _judged(client, plan, handle, child, result, exercised)
    finally:
        if not keep_driving:
            HOOKS.pop(plan.plan_id, None)


async def _result(handle: Handle, child: Handle | None = None) -> Any:
    """The saga's result, waited for while its history or its nested saga's grows; TimeoutError
    once neither grew for RESULT_SECONDS."""
    loop = asyncio.get_running_loop()
    seen, grew_at = -1, loop.time()
    while True:
        try:
            return await asyncio.wait_for(handle.result(), timeout=RESULT_SECONDS)
        except TimeoutError:
            pass
        except RuntimeError as err:
            # The time-skipping server ends a long poll for the close event with no page
            # token once its (skipped) minute is up; the SDK takes that as no close event.
            if "No completion event found" not in str(err):
                raise
            await asyncio.sleep(1)
        length = await _history_length(handle)
        length += await _history_length(child) if child is not None else 0
        if length != seen:
            seen, grew_at = length, loop.time()
        elif loop.time() - grew_at >= RESULT_SECONDS:
            raise TimeoutError(
                f"no result, and no new event for {RESULT_SECONDS:.0f} s ({length} events)"
            )


async def _history_length(handle: Handle) -> int:
    try:
        return (await handle.describe()).history_length
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:  # a nested saga not started
            return 0
        raise


async def _ended(tasks: list[asyncio.Task[None]]) -> None:
    """The driver's work for a schedule that ended: nothing left to act on."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=ENDING_SECONDS)


async def _settled_in_time(client: Client, terminated: Outcome) -> Outcome:
    try:
        return await asyncio.wait_for(_settled(client, terminated), SCHEDULE_SECONDS)
    except TimeoutError:
        plan = terminated.plan
        await stop_plans(client, [plan])
        waiting = WAITING.pop(plan.plan_id, "settling")
        words = f"after the sweep, no outcome in {SCHEDULE_SECONDS:.0f} s: stopped while {waiting}"
        return Outcome(plan, [("every_saga_ends", words)], "none", terminated.exercised)


async def _settled(client: Client, terminated: Outcome) -> Outcome:
    """A terminated saga once the sweep reset it: its new run's result, judged."""
    plan = terminated.plan
    handle: Handle = client.get_workflow_handle(plan.plan_id)
    child: Handle = client.get_workflow_handle(f"{plan.plan_id}/child")
    tasks = DRIVING.pop(plan.plan_id, [])
    try:
        if await _ended_in_its_first_task(handle):
            # The sweep's documented limit (docs/saga.md, "The limit"): no completed task to
            # reset to, though a local-first step may have acted; a finder's to settle.
            terminated.exercised["sweep limit: terminated in its first workflow task"] += 1
            return Outcome(plan, [], "unsettled (the limit)", terminated.exercised)
        WAITING[plan.plan_id] = "waiting for the swept saga's result"
        result = SagaResult.model_validate(await _result(handle, child))
    except (TimeoutError, WorkflowFailureError) as err:
        words = f"after the sweep: {type(err).__name__}: {err}"
        return Outcome(plan, [("every_saga_ends", words)], "none", terminated.exercised)
    finally:
        await _ended(tasks)
        HOOKS.pop(plan.plan_id, None)
    return await _judged(client, plan, handle, child, result, terminated.exercised, swept=True)


async def _ended_in_its_first_task(handle: Handle) -> bool:
    """Whether the saga's latest run is the terminated one and no workflow task of it
    completed (a local-first first step was running when it ended)."""
    if (await handle.describe()).status is not WorkflowExecutionStatus.TERMINATED:
        return False
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            return False
    return True


async def _judged(
    client: Client,
    plan: Plan,
    handle: Handle,
    child: Handle,
    result: SagaResult,
    exercised: Counter[str],
    *,
    swept: bool = False,
) -> Outcome:
    finished = await _finished(client, plan, handle, child, result)
    finished.swept = swept
    checked, broken = judge(finished)
    exercised.update(f"rule {name}" for name in checked)
    _count(plan, finished, exercised)
    return Outcome(plan, broken, result.status.value, exercised)


def _hook(
    plan: Plan,
    handle: Handle,
    child: Handle,
    tasks: list[asyncio.Task[None]],
    exercised: Counter[str],
) -> Callable[[str, str, int], None]:
    """What the driver does as an activity reports a call: the plan's events, and the
    operator after an undo failed."""
    actions = list(plan.operator)
    operating: dict[str, asyncio.Task[None]] = {}

    def hook(trigger: str, slot: str, nth: int) -> None:
        loop = asyncio.get_running_loop()
        for event in plan.events:
            if (event.trigger, event.slot, event.nth) == (trigger, slot, nth):
                exercised[f"event {event.kind} at {trigger}"] += 1
                tasks.append(loop.create_task(_apply(event, handle)))
        if trigger == "undo_fail" and not plan.continue_with_error:
            owner = child if slot[0] == "c" else handle
            if owner.id not in operating:
                operating[owner.id] = loop.create_task(_operate(plan, owner, actions, exercised))
                tasks.append(operating[owner.id])

    return hook


async def _apply(event: Event, handle: Handle) -> None:
    with contextlib.suppress(Exception):  # refused (too late), or the saga has ended
        if event.kind == "cancel_update":
            await handle.execute_update("cancel", CancelSaga(reason="simulated cancel"))
        elif event.kind == "temporal_cancel":
            await handle.cancel()
        elif event.kind == "terminate":
            await handle.terminate("simulated terminate")


async def _operate(
    plan: Plan, handle: Handle, actions: list[OperatorAction], exercised: Counter[str]
) -> None:
    """The operator, from the first failed undo until the schedule ends: whenever the saga
    (or its nested saga) is stuck, the plan's next action on each stuck compensation."""
    while True:  # bounded: the driver cancels it when the schedule ends
        if _cancelling():  # taken by a client call below as an error of its own
            raise asyncio.CancelledError
        await asyncio.sleep(OPERATOR_POLL_SECONDS)
        try:
            progress = await handle.query(
                "status", result_type=SagaProgress[SagaResult], rpc_timeout=QUERY_TIMEOUT
            )
        except Exception:  # slow to answer (a worker replaying it), or ended: look again
            if _cancelling():
                raise asyncio.CancelledError from None
            continue
        if progress.status is not SagaStatus.NEEDS_ATTENTION:
            continue
        action = actions.pop(0) if actions else "heal_and_retry"
        exercised[f"operator {action}"] += 1
        if action == "heal_and_retry":
            HEALED.add(plan.plan_id)
        for name in progress.stuck:
            with contextlib.suppress(Exception):  # already acted on
                if action == "skip":
                    await handle.execute_update(
                        "skip_compensation",
                        SkipCompensation(reason="simulated operator", name=name),
                    )
                else:
                    await handle.execute_update("retry_compensation", name)


def _cancelling() -> bool:
    """Whether this task is being cancelled (the client can raise its own error for it)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _finished(
    client: Client, plan: Plan, handle: Handle, child: Handle, result: SagaResult
) -> Finished:
    child_result: SagaResult | None = None
    child_events = []
    WAITING[plan.plan_id] = "waiting for the nested saga's result"
    if plan.child_stage is not None and "child" in _registered(result):
        with contextlib.suppress(Exception):  # never started (stopped before it)
            child_result = SagaResult.model_validate(await _result(child))
            child_events = list((await child.fetch_history()).events)
    WAITING[plan.plan_id] = "replaying the histories"
    history = await handle.fetch_history()
    replay_error = await _replay(
        client, [history, *([await child.fetch_history()] if child_events else [])]
    )
    WAITING[plan.plan_id] = "querying the status"
    progress = await _status(handle)
    WAITING[plan.plan_id] = "describing the saga"
    described = await handle.describe()
    attribute = described.typed_search_attributes.get(SAGA_STATUS)
    return Finished(
        plan=plan,
        ledger=list(LEDGER.get(plan.plan_id, [])),
        result=result,
        child_result=child_result,
        events=list(history.events),
        child_events=child_events,
        status_query=progress.status.value,
        status_attribute=attribute,
        replay_error=replay_error,
    )


def _registered(result: SagaResult) -> set[str]:
    return {report.name for report in result.compensations} | set(result.steps_done)


async def _status(handle: Handle) -> SagaProgress[SagaResult]:
    """The ended saga's status query, asked again while it goes unanswered: a query to an
    ended run replays its whole history first, which a busy worker takes a while to do."""
    for tries_left in reversed(range(QUERY_TRIES)):
        try:
            progress: SagaProgress[SagaResult] = await handle.query(
                "status", result_type=SagaProgress[SagaResult], rpc_timeout=QUERY_TIMEOUT
            )
            return progress
        except RPCError as err:
            unanswered = err.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED)
            if not unanswered or not tries_left:
                raise
    raise AssertionError("unreachable: the last try returns or raises")


async def _replay(client: Client, histories: list[Any]) -> str | None:
    replayer = Replayer(
        workflows=SAGAS,
        data_converter=client.data_converter,
        workflow_runner=sandbox_runner(),
    )
    for history in histories:
        try:
            await replayer.replay_workflow(history)
        except Exception as err:
            return f"{history.workflow_id}: {type(err).__name__}: {err}"
    return None


def _count(plan: Plan, f: Finished, exercised: Counter[str]) -> None:
    exercised[f"decision {f.result.status.value}"] += 1
    for stage in plan.stages:
        exercised[f"stage {stage.kind}"] += 1
    for call in plan.calls():
        exercised[f"step {call.outcome}"] += 1
        if call.slot[0] in "ulgc":
            exercised[f"undo {call.undo}"] += 1
        if call.slot[0] == "l":
            exercised["step local first"] += 1
    for name in ("parallel", "continue_with_error", "replay_every_task"):
        if getattr(plan, name):
            exercised[f"option {name}"] += 1
    if plan.deadline_seconds is not None:
        exercised["option deadline"] += 1
    if f.result.reason_code:
        exercised[f"reason {f.result.reason_code}"] += 1
