"""The checkout on DBOS (durable workflows in Postgres): the peer a user would pick instead.

    async with running_dbos(system_database_url, service_urls, headers):
        outcome = await dbos_decide(request)   # the answer, as soon as it is known
        await wait_all_done()                  # and the work that follows it, done

The same business as workflows/checkout.py and workflows/fanout.py, against the same
services (harness/bench/service_calls.py), with the same idempotency keys:

- create the order, reserve stock, charge the card (each a DBOS step, retried with backoff on
  transient faults, a few attempts), then confirm (the pivot: retried until done). A business
  refusal, or a step out of attempts, compensates newest first: refund, release, cancel. As
  in the saga, a step's undo is registered before the step runs: a call that timed out may
  still have taken effect.
- The answer goes out with `DBOS.set_event` as soon as the decision is known (CONFIRMED
  after the pivot, REJECTED before compensating); the caller waits with `DBOS.get_event`.
- Then the workflow commits the stock and announces the event: one workflow per consumer
  (receipt, shipping, loyalty, analytics; analytics alone for a rejection) enqueued on the
  fan-out queue, fire and forget. Their ids are `{event_id}:{consumer}`, as the saga's jobs,
  so announcing again starts nothing twice; the services dedupe on the event id too.

DBOS runs as a library in the caller's process: launched from the caller's event loop, it
runs the checkouts as tasks of that loop, and the fan-out's queued workflows there too.
"""

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from enum import StrEnum
from typing import ParamSpec, TypeVar

from dbos import DBOS, DBOSConfig, SetWorkflowID, WorkflowHandleAsync
from dbos import error as dbos_error

from activities.http import SERVICE_UNAVAILABLE
from harness.bench.service_calls import ServiceRefused, ShopCalls, shop_calls
from models.checkout import CheckoutRequest, CheckoutResult, CheckoutStep
from models.events import ORDER_CONFIRMED, OrderConfirmed, OrderEvent, OrderRejected
from models.orders import Order
from temporal_saga.models import Outcome

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

APP_NAME = "checkout-dbos"
CHECKOUT_WORKFLOW = "DbosCheckout"
CONSUMER_WORKFLOW = "DbosConsumer"
FANOUT_QUEUE = "checkout-fanout"
DECISION_EVENT = "decision"
# As the checkout's default decision deadline (models.checkout.CheckoutOptions).
DECISION_TIMEOUT_SECONDS = 120.0
# DBOS polls a queue for work (no notification): what the fan-out may wait to start.
FANOUT_POLLING_SECONDS = 0.1
# Steps before the pivot give up after ~15 s of transient faults (the saga's STEP_RETRY: ~20 s;
# DBOS's backoff has no cap below an hour, so fewer attempts instead of a cap).
STEP_ATTEMPTS = 6
STEP_FIRST_BACKOFF_SECONDS = 0.5
# The fan-out's consumers, as the saga's CONSUMER_RETRY: 5 attempts, 0.25 s doubling.
CONSUMER_ATTEMPTS = 5
CONSUMER_FIRST_BACKOFF_SECONDS = 0.25
# Forward-only calls (the pivot, the commit, the compensations) retry until done, the backoff
# capped as the saga's FOREVER_RETRY and CompensationPolicy.
FOREVER_FIRST_BACKOFF_SECONDS = 0.5
FOREVER_MAX_BACKOFF_SECONDS = 30.0
IN_FLIGHT = ["PENDING", "ENQUEUED", "DELAYED"]


class Consumer(StrEnum):
    """The fan-out's consumers, named as the saga's (workflows/fanout.py)."""

    RECEIPT = "receipt"
    SHIPPING = "shipping"
    LOYALTY = "loyalty"
    ANALYTICS = "analytics"


CONFIRMED_CONSUMERS = (Consumer.RECEIPT, Consumer.SHIPPING, Consumer.LOYALTY, Consumer.ANALYTICS)
REJECTED_CONSUMERS = (Consumer.ANALYTICS,)


class DecisionTimeout(TimeoutError):
    pass


def checkout_workflow_id(order_id: str) -> str:
    """The Temporal checkout's workflow id (workflows/checkout.py), so the same keys follow."""
    return f"checkout-{order_id}"


def idempotency_key(workflow_id: str, step: CheckoutStep) -> str:
    """`checkout-o1:reserve_stock`: as the Temporal checkout's (workflows/checkout.py)."""
    return f"{workflow_id}:{step.value}"


def job_id(event: OrderEvent, consumer: Consumer) -> str:
    """`checkout-o1:OrderConfirmed:receipt`: as the saga's jobs (workflows/fanout.py)."""
    return f"{event.event_id}:{consumer.value}"


# -- the services, for the steps ------------------------------------------------------------

_shop: ShopCalls | None = None


def _calls() -> ShopCalls:
    if _shop is None:
        raise RuntimeError("the DBOS checkout is not running (use running_dbos)")
    return _shop


def _transient(err: BaseException) -> bool:
    return not isinstance(err, ServiceRefused)


def _step(
    name: str, attempts: int = 1, first_backoff: float = 0.0
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A DBOS step that retries transient faults (`attempts` in all, the backoff doubling
    from `first_backoff`) and never a refusal."""
    if attempts == 1:
        return DBOS.step(name=name)
    return DBOS.step(
        name=name,
        retries_allowed=True,
        max_attempts=attempts,
        interval_seconds=first_backoff,
        backoff_rate=2.0,
        should_retry=_transient,
    )


def _saga_step(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    return _step(name, STEP_ATTEMPTS, STEP_FIRST_BACKOFF_SECONDS)


def _consumer_step(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    return _step(name, CONSUMER_ATTEMPTS, CONSUMER_FIRST_BACKOFF_SECONDS)


@_saga_step("create_order")
async def create_order(request: CheckoutRequest) -> Order:
    return await _calls().create_order(request)


@_saga_step("reserve_stock")
async def reserve_stock(request: CheckoutRequest, reservation_id: str) -> None:
    await _calls().reserve_stock(request, reservation_id)


@_saga_step("charge_payment")
async def charge_payment(request: CheckoutRequest, order: Order, charge_id: str) -> None:
    await _calls().charge_payment(request, order, charge_id)


# One attempt per step call: until_done retries them, durably.
@_step("confirm_order")
async def confirm_order(order_id: str) -> None:
    await _calls().confirm_order(order_id)


@_step("commit_stock")
async def commit_stock(reservation_id: str) -> None:
    await _calls().commit_stock(reservation_id)


@_step("cancel_order")
async def cancel_order(order_id: str, reason: str) -> None:
    await _calls().cancel_order(order_id, reason)


@_step("release_stock")
async def release_stock(reservation_id: str) -> None:
    await _calls().release_stock(reservation_id)


@_step("refund_payment")
async def refund_payment(charge_id: str, reason: str) -> None:
    await _calls().refund_payment(charge_id, reason)


@_consumer_step("send_receipt")
async def send_receipt(event: OrderConfirmed) -> None:
    await _calls().send_receipt(event)


@_consumer_step("create_shipment")
async def create_shipment(event: OrderConfirmed) -> None:
    await _calls().create_shipment(event)


@_consumer_step("add_loyalty_points")
async def add_loyalty_points(event: OrderConfirmed) -> None:
    await _calls().add_loyalty_points(event)


@_consumer_step("record_order_event")
async def record_order_event(event: OrderEvent) -> None:
    await _calls().record_order_event(event)


async def until_done(call: Callable[[], Awaitable[T]]) -> T:
    """Call a one-attempt step until it succeeds, sleeping durably (DBOS.sleep_async) between
    attempts; a refusal is raised at once. The forward-only calls' retry: DBOS step retries
    have no backoff cap below an hour."""
    backoff = FOREVER_FIRST_BACKOFF_SECONDS
    while True:
        try:
            return await call()
        except ServiceRefused:
            raise
        except dbos_error.DBOSException:
            raise  # DBOS's own (a cancelled workflow, ...): not a fault of the call
        except Exception as err:
            DBOS.logger.warning("retrying in %.1f s: %s", backoff, err)
        await DBOS.sleep_async(backoff)
        backoff = min(FOREVER_MAX_BACKOFF_SECONDS, backoff * 2)


# -- the checkout -------------------------------------------------------------------------------


@DBOS.workflow(name=CHECKOUT_WORKFLOW)
async def checkout_workflow(request: CheckoutRequest) -> CheckoutResult:
    workflow_id = checkout_workflow_id(request.order_id)
    reservation_id = idempotency_key(workflow_id, CheckoutStep.RESERVE_STOCK)
    charge_id = idempotency_key(workflow_id, CheckoutStep.CHARGE_PAYMENT)
    # Each undo gets the failure's summary (the records' reason); newest last.
    undo: list[tuple[str, Callable[[str], Awaitable[None]]]] = []
    done: list[str] = []
    step = CheckoutStep.CREATE_ORDER
    order: Order | None = None  # as the orders service priced it
    try:
        undo.append(("cancel_order", functools.partial(cancel_order, request.order_id)))
        order = await create_order(request)
        done.append(step.value)
        step = CheckoutStep.RESERVE_STOCK
        undo.append(("release_stock", lambda _reason: release_stock(reservation_id)))
        await reserve_stock(request, reservation_id)
        done.append(step.value)
        step = CheckoutStep.CHARGE_PAYMENT
        undo.append(("refund_payment", functools.partial(refund_payment, charge_id)))
        await charge_payment(request, order, charge_id)
        done.append(step.value)
        # The pivot, retried until done: once it succeeded nothing is undone (a refusal of it
        # still compensates, as in the saga).
        step = CheckoutStep.CONFIRM_ORDER
        await until_done(lambda: confirm_order(request.order_id))
        done.append(step.value)
    except ServiceRefused as err:
        code, detail = err.code, err.message
    except dbos_error.DBOSMaxStepRetriesExceeded as err:
        code, detail = SERVICE_UNAVAILABLE, str(err.errors[-1] if err.errors else err)
    else:
        result = _result(request, order, Outcome.CONFIRMED, done)
        await DBOS.set_event_async(DECISION_EVENT, result)  # the customer's answer
        await until_done(lambda: commit_stock(reservation_id))
        await announce(
            OrderConfirmed.from_checkout(
                request, order, workflow_id=workflow_id, occurred_at=_now()
            ),
            CONFIRMED_CONSUMERS,
        )
        return result
    rejected = _result(request, order, Outcome.REJECTED, done, step, code, detail)
    await DBOS.set_event_async(DECISION_EVENT, rejected)
    summary = f"{step.value} failed: {code}"
    for name, compensate in reversed(undo):
        await until_done(functools.partial(compensate, summary))
        rejected.compensations_done.append(name)
    # After the undo, so consumers hear of the rejection only once it is true.
    await announce(
        OrderRejected.from_checkout(
            request,
            order,
            workflow_id=workflow_id,
            occurred_at=_now(),
            reason=detail,
            reason_code=code,
            failed_step=step.value,
        ),
        REJECTED_CONSUMERS,
    )
    return rejected


def _result(
    request: CheckoutRequest,
    order: Order | None,
    status: Outcome,
    done: list[str],
    failed_step: CheckoutStep | None = None,
    code: str | None = None,
    detail: str | None = None,
) -> CheckoutResult:
    return CheckoutResult(
        status=status,
        failed_step=failed_step,
        reason_code=code,
        reason=None if failed_step is None else f"{failed_step.value}: {detail}",
        steps_done=list(done),
        order_id=request.order_id,
        total_cents=order.total_cents if order is not None else 0,
        currency=request.currency,
    )


def _now() -> datetime:
    # Informational only (consumers key on the event id). A recovery that runs this again
    # enqueues nothing new (the consumers' workflows exist), so a second reading goes nowhere.
    return datetime.now(UTC)


# -- the fan-out ------------------------------------------------------------------------------


async def announce(event: OrderEvent, consumers: Sequence[Consumer]) -> None:
    """Enqueue one workflow per consumer and return: fire and forget. An id already taken
    (announced before) returns the existing workflow instead of starting another."""
    for consumer in consumers:
        with SetWorkflowID(job_id(event, consumer)):
            await DBOS.enqueue_workflow_async(FANOUT_QUEUE, consumer_workflow, consumer, event)


@DBOS.workflow(name=CONSUMER_WORKFLOW)
async def consumer_workflow(consumer: Consumer, event: OrderEvent) -> None:
    """One consumer's call for one event; out of attempts, the workflow ends in ERROR (where
    the saga's consumers leave a dead letter)."""
    if consumer is Consumer.ANALYTICS:
        await record_order_event(event)
        return
    if not isinstance(event, OrderConfirmed):
        raise ValueError(f"{consumer.value} consumes {ORDER_CONFIRMED} only")
    consume = {
        Consumer.RECEIPT: send_receipt,
        Consumer.SHIPPING: create_shipment,
        Consumer.LOYALTY: add_loyalty_points,
    }[consumer]
    await consume(event)


# -- what the bench calls ------------------------------------------------------------------------


async def dbos_decision(
    request: CheckoutRequest, wait_seconds: float = DECISION_TIMEOUT_SECONDS
) -> CheckoutResult:
    """Start the checkout for this order (or find the one started before: the workflow id is
    the order's) and return its answer as soon as it is decided."""
    workflow_id = checkout_workflow_id(request.order_id)
    with SetWorkflowID(workflow_id):
        await DBOS.start_workflow_async(checkout_workflow, request)
    answer = await DBOS.get_event_async(workflow_id, DECISION_EVENT, timeout_seconds=wait_seconds)
    if not isinstance(answer, CheckoutResult):  # None: no decision in time
        raise DecisionTimeout(f"{workflow_id}: no decision within {wait_seconds:g} s")
    return answer


async def dbos_decide(request: CheckoutRequest) -> Outcome:
    """The decision alone: CONFIRMED or REJECTED."""
    return (await dbos_decision(request)).status


async def dbos_result(order_id: str) -> CheckoutResult:
    """The checkout's final result (after its compensations, if any)."""
    handle: WorkflowHandleAsync[object] = await DBOS.retrieve_workflow_async(
        checkout_workflow_id(order_id)
    )
    result = await handle.get_result()
    if not isinstance(result, CheckoutResult):
        raise TypeError(f"checkout {order_id}: unexpected result {result!r}")
    return result


async def in_flight() -> bool:
    """Whether any workflow is not finished: a checkout or consumer running, waiting or
    enqueued (one row read, not all)."""
    pending = await DBOS.list_workflows_async(
        status=IN_FLIGHT, limit=1, load_input=False, load_output=False
    )
    return bool(pending)


async def failed_workflows() -> list[str]:
    """Ids of the workflows that ended in ERROR (a consumer out of attempts, ...)."""
    failed = await DBOS.list_workflows_async(status="ERROR", load_input=False, load_output=False)
    return [status.workflow_id for status in failed]


async def wait_all_done(limit_seconds: float = 60.0, poll_seconds: float = 0.02) -> float:
    """Wait until no workflow is in flight (so every commit and consumer is done); the
    seconds it took. TimeoutError after `limit_seconds`."""
    started = time.monotonic()
    while await in_flight():
        if time.monotonic() - started > limit_seconds:
            raise TimeoutError(f"DBOS workflows still in flight after {limit_seconds:g} s")
        await asyncio.sleep(poll_seconds)
    return time.monotonic() - started


@asynccontextmanager
async def running_dbos(
    system_database_url: str,
    service_urls: Mapping[str, str],
    headers: Mapping[str, str],
    *,
    fanout_polling_seconds: float = FANOUT_POLLING_SECONDS,
) -> AsyncIterator[None]:
    """DBOS launched in this process, its system database at `system_database_url` (created
    if missing), configured here and nowhere else (no dbos-config.yaml); destroyed after."""
    global _shop
    config: DBOSConfig = {
        "name": APP_NAME,
        "system_database_url": system_database_url,
        "log_level": "WARNING",
    }
    loop = asyncio.get_running_loop()
    async with shop_calls(service_urls, headers) as calls:
        _shop = calls
        DBOS(config=config)
        try:
            # From within the loop: DBOS adopts it, and runs the queued workflows on it too.
            DBOS.launch()
            await DBOS.register_queue_async(
                FANOUT_QUEUE, polling_interval_sec=fanout_polling_seconds
            )
            yield
        finally:
            # DBOS made its executor this loop's default one, and shuts it down: give the loop
            # a new one, and destroy in a thread (DBOS's threads may wait on this loop).
            loop.set_default_executor(ThreadPoolExecutor())
            await asyncio.to_thread(DBOS.destroy)
            _shop = None
