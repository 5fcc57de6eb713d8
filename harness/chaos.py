"""`python -m harness.chaos`: many checkouts under faults, then the promises checked.

It starts its own Temporal dev server (SQLite file), services and workers, places a seeded
mix of checkouts (good carts, declined and flaky cards, sold-out and scarce SKUs) while it

- injects faults in every service (a share of 503s, hangs past the worker's HTTP timeout,
  delays) and takes the email service down for a while;
- SIGKILLs a worker several times (a new one is started at once, as a supervisor would);
- SIGKILLs the Temporal dev server once and starts it again on the same SQLite file and port;
- SIGKILLs services and starts them again on the same port and SQLite file;
- as an operator would, terminates checkouts at random points (before, during and after
  their steps: whatever they were doing) and resets a few finished ones to their start (a
  reset run does everything again, with the same ids).

A customer whose call fails (the server is away) calls again with the same order, as the
starter allows. Once every checkout has its answer the faults stop; it waits for every
checkout and every receipt/shipment job to close (a checkout in NEEDS_ATTENTION gets an
operator's retry), runs one reconciler sweep (the engine's, as its Schedule would) that
settles what the terminated checkouts left open, redrives the dead letters, and checks the
invariants (harness/invariants.py) by reading each service's SQLite file.
"""

import asyncio
import contextlib
import functools
import json
import math
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.table import Table
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError

from harness.cli import run
from harness.invariants import VIOLATIONS, InvariantReport, check_invariants, read_stock
from models.checkout import CartItem, CheckoutRequest, CheckoutResult, checkout_workflow_id
from models.deadletters import ConsumerKind, DeadLetterStatus
from models.events import ORDER_CONFIRMED, event_id
from models.fanout import RECEIPT_CONSUMER, SHIPPING_CONSUMER
from models.faults import FaultCounts, Faults
from models.inventory import SetStock
from stack.launcher import (
    SERVICES,
    ManagedProcess,
    Stack,
    relaunch,
    running_stack,
    start_worker,
)
from starter.checkouts import decide_checkout
from starter.dlq import list_letters, redrive_letter
from starter.payment_methods import CardTokens, tokenize_test_cards
from temporal_saga import SAGA_STATUS, SagaEnded
from temporal_saga.client import sweep_now
from temporal_saga.models import Outcome, RepairResult
from temporal_saga.reconcile import repair_workflow_id
from worker.clients import connect_temporal
from worker.settings import Settings
from workflows.checkout import CHECKOUT, CheckoutWorkflow
from workflows.checkout_sweep import checkout_sweep
from workflows.fanout import job_id

# Plenty of the everyday SKUs, a scarce one (contention) and a sold-out one; the orders
# service prices them all (services.orders.pricing).
PLENTIFUL = ("MUG-BLUE", "TEE-M", "POSTER-A2")
SCARCE = ("LIMITED-PRINT", 3)
SOLD_OUT = "VINYL-SOLDOUT"
# Services restarted in turn (the first is the one where a double charge would hurt most).
RESTART_ORDER = ("payments", "inventory", "orders", "warehouse", "email")
SERVICE_DOWN_SECONDS = 3.0
SERVER_DOWN_SECONDS = 2.0
# A customer calls again for this long when the call itself fails (server away).
ANSWER_PATIENCE_SECONDS = 300.0
CLOSE_PATIENCE_SECONDS = 300.0


@dataclass(frozen=True)
class ChaosPlan:
    checkouts: int = 300
    worker_kills: int = 3
    server_restarts: int = 1
    service_restarts: int = 2
    concurrency: int = 20
    workers: int = 2
    seed: int = 7
    terminations: int = 12
    resets: int = 3


@dataclass
class ChaosReport:
    checkouts: int
    outcomes: Counter[str] = field(default_factory=Counter)
    faults: FaultCounts = field(default_factory=FaultCounts)
    worker_kills: int = 0
    server_restarts: int = 0
    service_restarts: int = 0
    answer_retries: int = 0
    attention_retries: int = 0
    terminated: int = 0
    resets: int = 0
    repaired: int = 0
    dead_letters: int = 0
    redriven: int = 0
    seconds: float = 0.0
    invariants: InvariantReport = field(default_factory=InvariantReport)
    errors: list[str] = field(default_factory=list)

    @property
    def violations(self) -> int:
        return self.invariants.total

    def figures(self) -> dict[str, object]:
        return {
            "checkouts": self.checkouts,
            "confirmed": self.outcomes["CONFIRMED"],
            "rejected": sum(n for k, n in self.outcomes.items() if k.startswith("REJECTED")),
            "outcomes": dict(sorted(self.outcomes.items())),
            "faults_injected": self.faults.injected,
            "faults": self.faults.model_dump(),
            "worker_kills": self.worker_kills,
            "server_restarts": self.server_restarts,
            "service_restarts": self.service_restarts,
            "answer_retries": self.answer_retries,
            "attention_retries": self.attention_retries,
            "terminated": self.terminated,
            "resets": self.resets,
            "repaired": self.repaired,
            "dead_letters": self.dead_letters,
            "redriven": self.redriven,
            "seconds": round(self.seconds, 1),
            "violations": dict(self.invariants.violations),
            "violations_total": self.violations,
        }


def chaos_mix(
    rng: random.Random, batch: str, count: int, cards: CardTokens
) -> list[CheckoutRequest]:
    """Seeded carts: mostly good, some declined or flaky cards, some sold-out or scarce SKUs.
    `cards`: the test cards' tokens."""
    requests = []
    for i in range(count):
        token = rng.choices([cards.ok, cards.flaky, cards.declined], weights=[75, 10, 15])[0]
        picks = rng.sample(PLENTIFUL, k=rng.choice([1, 1, 2]))
        items = [CartItem(sku=sku, quantity=rng.randint(1, 3)) for sku in picks]
        if rng.random() < 0.08:
            items.append(CartItem(sku=SOLD_OUT, quantity=1))
        if rng.random() < 0.1:
            items.append(CartItem(sku=SCARCE[0], quantity=1))
        customer = rng.randrange(25)
        requests.append(
            CheckoutRequest(
                order_id=f"chaos-{batch}-{i}",
                customer_id=f"customer-{customer}",
                email=f"customer{customer}@example.com",
                payment_token=token,
                items=items,
            )
        )
    return requests


def fault_plan(hang_seconds: float) -> dict[str, Faults]:
    """What each service suffers while the checkouts run (seeded: the same draws each run)."""
    return {
        "orders": Faults(error_rate=0.05, hang_seconds=hang_seconds, hang_rate=0.02, seed=1),
        "inventory": Faults(error_rate=0.1, delay_seconds=0.05, seed=2),
        "payments": Faults(error_rate=0.1, hang_seconds=hang_seconds, hang_rate=0.03, seed=3),
        "email": Faults(error_rate=0.2, seed=4),
        "warehouse": Faults(error_rate=0.2, delay_seconds=0.1, seed=5),
        "analytics": Faults(error_rate=0.1, seed=6),
        "loyalty": Faults(error_rate=0.1, seed=7),
    }


class Disruptor:
    """Faults, kills and restarts on a running stack; counts what it did."""

    def __init__(self, stack: Stack, http: httpx.AsyncClient, log: Callable[[str], None]):
        self.stack = stack
        self.http = http
        self.log = log
        self.faults: dict[str, Faults] = {}
        self.counts_of_dead = FaultCounts()  # counted by processes since killed
        self.worker_kills = 0
        self.server_restarts = 0
        self.service_restarts = 0
        # Checkouts placed (terminations pick among those still running), and those an
        # operator terminated.
        self.in_flight: set[str] = set()
        self.terminated: set[str] = set()
        self._next_worker = sum(p.name.startswith("worker-") for p in stack.processes)

    def _proc(self, name: str) -> ManagedProcess:
        return next(p for p in self.stack.processes if p.name == name)

    def _replace(self, old: ManagedProcess, new: ManagedProcess) -> None:
        self.stack.processes[self.stack.processes.index(old)] = new

    async def put_fault(self, service: str, faults: Faults) -> None:
        url = f"{self.stack.service_urls[service]}/admin/fault"
        (await self.http.put(url, json=faults.model_dump(mode="json"))).raise_for_status()

    async def faults_on(self, plan: Mapping[str, Faults]) -> None:
        self.faults = dict(plan)
        await asyncio.gather(*(self.put_fault(s, f) for s, f in plan.items()))
        self.log(f"faults on: {', '.join(plan)}")

    async def faults_off(self) -> None:
        names = list(self.faults)
        self.faults = {}
        await asyncio.gather(*(self.put_fault(s, Faults()) for s in names))
        self.log("faults off")

    async def service_down(self, service: str, down: bool) -> None:
        """Every call to it answers 503 (down) or back to its planned faults."""
        planned = self.faults.get(service, Faults()).model_copy(update={"fail": down})
        self.faults[service] = planned  # a restart meanwhile keeps it down
        await self.put_fault(service, planned)
        self.log(f"{service} {'down (503)' if down else 'up again'}")

    async def counts(self, service: str) -> FaultCounts:
        response = await self.http.get(f"{self.stack.service_urls[service]}/admin/fault/counts")
        response.raise_for_status()
        return FaultCounts.model_validate_json(response.content)

    async def total_counts(self) -> FaultCounts:
        total = self.counts_of_dead
        for counted in await asyncio.gather(*(self.counts(s) for s in SERVICES)):
            total = total + counted
        return total

    async def kill_worker(self) -> None:
        victim = next(p for p in self.stack.processes if p.name.startswith("worker-"))
        await asyncio.to_thread(victim.kill)
        self.worker_kills += 1
        self.log(f"SIGKILL {victim.name}")
        index, self._next_worker = self._next_worker, self._next_worker + 1
        new = await asyncio.to_thread(start_worker, self.stack.data_dir, self.stack.env, index)
        self.stack.processes.remove(victim)
        self.stack.processes.append(new)
        self.log(f"started {new.name}")

    async def terminate_some(self, client: Client, count: int, rng: random.Random) -> None:
        """As an operator would: terminate `count` checkouts that are running now, wherever
        they are (a step in flight, its retries, the work after the answer)."""
        # One visibility query for what runs now, not a describe per checkout placed so far.
        query = f"WorkflowType = '{CHECKOUT}' AND ExecutionStatus = 'Running'"
        running_ids: set[str] = set()
        with contextlib.suppress(RPCError):  # the server restarting: none this round
            running_ids = {run.id async for run in client.list_workflows(query)}
        candidates = sorted(
            order_id
            for order_id in self.in_flight - self.terminated
            if checkout_workflow_id(order_id) in running_ids
        )
        for order_id in rng.sample(candidates, k=min(count, len(candidates))):
            handle = client.get_workflow_handle(checkout_workflow_id(order_id))
            with contextlib.suppress(RPCError):  # it may have ended meanwhile
                await handle.terminate(reason="chaos: an operator")
                self.terminated.add(order_id)
                self.log(f"terminated {handle.id}")

    async def reset_some(
        self, client: Client, order_ids: list[str], count: int, rng: random.Random
    ) -> list[str]:
        """Reset `count` finished checkouts to their first workflow task: the new run does
        everything again, with the same workflow id, idempotency keys and event ids."""
        reset = []
        for order_id in rng.sample(order_ids, k=min(count, len(order_ids))):
            handle = client.get_workflow_handle(checkout_workflow_id(order_id))
            described = await handle.describe()
            history = await handle.fetch_history()
            first_task = next(
                event.event_id
                for event in history.events
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
            )
            await client.workflow_service.reset_workflow_execution(
                ResetWorkflowExecutionRequest(
                    namespace=client.namespace,
                    workflow_execution=WorkflowExecution(
                        workflow_id=handle.id, run_id=described.run_id or ""
                    ),
                    reason="chaos: an operator resets a finished checkout",
                    workflow_task_finish_event_id=first_task,
                    request_id=str(uuid.uuid4()),
                )
            )
            reset.append(order_id)
            self.log(f"reset {handle.id} to its first workflow task")
        return reset

    async def restart_server(self) -> None:
        temporal = self._proc("temporal")
        await asyncio.to_thread(temporal.kill)
        self.log("SIGKILL the Temporal dev server")
        await asyncio.sleep(SERVER_DOWN_SECONDS)
        new = await asyncio.to_thread(relaunch, temporal, self.stack.data_dir)
        self._replace(temporal, new)
        self.server_restarts += 1
        self.log("Temporal dev server started again on the same SQLite file and port")

    async def restart_service(self, service: str) -> None:
        proc = self._proc(service)
        with contextlib.suppress(httpx.HTTPError):
            self.counts_of_dead = self.counts_of_dead + await self.counts(service)
        await asyncio.to_thread(proc.kill)
        self.log(f"SIGKILL {service}")
        await asyncio.sleep(SERVICE_DOWN_SECONDS)
        env = {**self.stack.service_env}
        new = await asyncio.to_thread(relaunch, proc, self.stack.data_dir, env)
        self._replace(proc, new)
        self.service_restarts += 1
        if service in self.faults:  # the faults lived in the killed process
            await self.put_fault(service, self.faults[service])
        self.log(f"{service} started again on the same port and SQLite file")


def _schedule(
    plan: ChaosPlan,
    disruptor: Disruptor,
    faults: Mapping[str, Faults],
    terminate: Callable[[int], Awaitable[None]],
) -> list[tuple[float, Callable[[], Awaitable[None]]]]:
    """(share of checkouts answered, action), in order."""
    events: list[tuple[float, Callable[[], Awaitable[None]]]] = [
        (0.0, lambda: disruptor.faults_on(faults)),
        (0.25, lambda: disruptor.service_down("email", True)),
        (0.45, lambda: disruptor.service_down("email", False)),
    ]
    for k in range(plan.worker_kills):
        events.append((0.8 * (k + 1) / (plan.worker_kills + 1), disruptor.kill_worker))
    for k in range(plan.service_restarts):
        victim = RESTART_ORDER[k % len(RESTART_ORDER)]
        restart = functools.partial(disruptor.restart_service, victim)
        events.append((0.3 + 0.5 * k / plan.service_restarts, restart))
    for k in range(plan.server_restarts):
        events.append((0.5 + 0.3 * k / plan.server_restarts, disruptor.restart_server))
    # Terminations spread over the run, a few at a time.
    rounds = min(plan.terminations, 4)
    for k in range(rounds):
        count = plan.terminations // rounds + (1 if k < plan.terminations % rounds else 0)
        events.append((0.1 + 0.8 * k / max(rounds, 1), functools.partial(terminate, count)))
    return sorted(events, key=lambda event: event[0])


def _reached(answers: Mapping[str, object], needed: int) -> bool:
    return len(answers) >= needed


async def _answer(
    client: Client,
    request: CheckoutRequest,
    task_queue: str,
    report: ChaosReport,
    terminated: set[str] | None = None,
) -> Outcome | None:
    """The customer's answer; a failed call is made again (same order) for a while. None
    when there is none (an operator terminated the checkout before it answered: not an
    error of the checkout's)."""
    deadline = time.monotonic() + ANSWER_PATIENCE_SECONDS
    while True:
        try:
            decision, _ = await decide_checkout(client, request, task_queue)
        except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as err:
            if time.monotonic() > deadline:
                report.errors.append(f"{request.order_id}: no answer: {err}")
                return None
            report.answer_retries += 1
            await asyncio.sleep(1.0)
            continue
        except (WorkflowFailureError, WorkflowUpdateFailedError) as err:
            if request.order_id not in (terminated or set()):
                report.errors.append(f"{request.order_id}: {err}: {err.cause}")
            return None
        except SagaEnded as err:
            if request.order_id not in (terminated or set()):
                report.errors.append(f"{request.order_id}: {err}")
            return None
        label = "CONFIRMED"
        if decision.status is not Outcome.CONFIRMED:
            label = f"REJECTED:{decision.reason_code}"
        report.outcomes[label] += 1
        return decision.status


async def _wait_closed(
    client: Client,
    order_ids: list[str],
    report: ChaosReport,
    log: Callable[[str], None],
    terminated: set[str] | None = None,
) -> tuple[set[str], dict[str, Outcome]]:
    """Wait until every checkout is closed; retry a compensation that asks for attention.
    A terminated one is closed with no result (the reconciler settles it)."""
    pending = set(order_ids)
    failed: set[str] = set()
    final: dict[str, Outcome] = {}
    gate = asyncio.Semaphore(20)
    deadline = time.monotonic() + CLOSE_PATIENCE_SECONDS

    async def look(order_id: str) -> None:
        handle: WorkflowHandle[CheckoutWorkflow, CheckoutResult] = client.get_workflow_handle_for(
            CheckoutWorkflow.run, checkout_workflow_id(order_id)
        )
        async with gate:
            try:
                described = await handle.describe()
                if described.status is WorkflowExecutionStatus.RUNNING:
                    status = described.typed_search_attributes.get(SAGA_STATUS)
                    if status == "NEEDS_ATTENTION":
                        await handle.execute_update(CheckoutWorkflow.retry_compensation, None)
                        report.attention_retries += 1
                        log(f"{order_id}: needs attention, operator retry")
                    return
                pending.discard(order_id)
                final[order_id] = (await handle.result()).status
            except (RPCError, WorkflowUpdateFailedError) as err:
                log(f"{order_id}: {err}")
            except WorkflowFailureError as err:  # failed, terminated: never closed properly
                pending.discard(order_id)
                if order_id not in (terminated or set()):
                    failed.add(order_id)
                    report.errors.append(f"{order_id}: checkout failed: {err.cause}")

    while pending and time.monotonic() < deadline:
        await asyncio.gather(*(look(order_id) for order_id in list(pending)))
        if pending:
            await asyncio.sleep(2.0)
    return pending | failed, final


def receipt_and_shipment_jobs(order_id: str) -> list[str]:
    """The workflow ids of a confirmed order's jobs (workflows.fanout.job_id)."""
    event = event_id(checkout_workflow_id(order_id), ORDER_CONFIRMED)
    return [job_id(event, RECEIPT_CONSUMER), job_id(event, SHIPPING_CONSUMER)]


async def _wait_workflows(client: Client, workflow_ids: list[str]) -> list[str]:
    """Wait until each of these workflows has finished (any outcome: a job that gave up left
    a dead letter); returns those still running or not found at the deadline."""
    deadline = time.monotonic() + CLOSE_PATIENCE_SECONDS
    gate = asyncio.Semaphore(20)

    async def finished(workflow_id: str) -> bool:
        async with gate:
            handle = client.get_workflow_handle(workflow_id)
            while time.monotonic() < deadline:
                try:
                    await asyncio.wait_for(handle.result(), deadline - time.monotonic())
                    return True
                except WorkflowFailureError:
                    return True
                except TimeoutError:
                    return False
                except RPCError:  # not visible yet, or the server is busy: look again
                    await asyncio.sleep(1.0)
            return False

    done = await asyncio.gather(*(finished(w) for w in workflow_ids))
    return [w for w, ok in zip(workflow_ids, done, strict=True) if not ok]


async def run_chaos(
    plan: ChaosPlan,
    data_dir: Path,
    log: Callable[[str], None] = lambda _: None,
    runtime: Runtime | None = None,
) -> ChaosReport:
    """Everything in the module doc; the stack is stopped before it returns."""
    report = ChaosReport(checkouts=plan.checkouts)
    batch = uuid.uuid4().hex[:8]
    settings = Settings()
    faults = fault_plan(hang_seconds=settings.http_timeout_seconds + 1.5)
    started = time.monotonic()
    with running_stack(
        data_dir, ui=False, workers=plan.workers, service_env={"PAYMENTS_FLAKY_FAILURES": "2"}
    ) as stack:
        env = {**os.environ, **stack.env}
        client = await connect_temporal(env, runtime=runtime)
        async with httpx.AsyncClient(headers=stack.service_headers, timeout=10) as http:
            await _stock_up(http, stack.service_urls["inventory"], plan)
            stock_before = read_stock(data_dir)
            # Before the faults: the test cards tokenized once, as a shop's front end would.
            payments = stack.service_urls["payments"]
            cards = await tokenize_test_cards(payments, stack.publishable_key)
            requests = chaos_mix(random.Random(plan.seed), batch, plan.checkouts, cards)

            disruptor = Disruptor(stack, http, log)
            answers: dict[str, Outcome | None] = {}
            gate = asyncio.Semaphore(plan.concurrency)
            progress = asyncio.Condition()

            async def place(request: CheckoutRequest) -> None:
                answer = None
                try:
                    async with gate:
                        disruptor.in_flight.add(request.order_id)
                        answer = await _answer(
                            client, request, settings.task_queue, report, disruptor.terminated
                        )
                finally:
                    async with progress:
                        answers[request.order_id] = answer
                        progress.notify_all()

            placing = asyncio.gather(*(place(r) for r in requests))
            rng = random.Random(plan.seed + 1)

            async def terminate(count: int) -> None:
                await disruptor.terminate_some(client, count, rng)

            for share, action in _schedule(plan, disruptor, faults, terminate):
                needed = math.ceil(share * plan.checkouts)
                async with progress:
                    await progress.wait_for(functools.partial(_reached, answers, needed))
                await action()
            await placing
            log(f"every checkout answered ({time.monotonic() - started:.0f} s)")
            await disruptor.faults_off()
            report.faults = await disruptor.total_counts()
            report.worker_kills = disruptor.worker_kills
            report.server_restarts = disruptor.server_restarts
            report.service_restarts = disruptor.service_restarts

            order_ids = [r.order_id for r in requests]
            terminated = disruptor.terminated
            not_closed, final = await _wait_closed(client, order_ids, report, log, terminated)
            log(f"checkouts closed: {len(order_ids) - len(not_closed)}/{len(order_ids)}")
            # Resets of finished checkouts: each new run does it all again, same ids.
            finished = sorted(set(final) - terminated)
            reset = await disruptor.reset_some(client, finished, plan.resets, rng)
            report.resets = len(reset)
            again, final_again = await _wait_closed(client, reset, report, log, terminated)
            not_closed |= again
            final.update(final_again)
            report.terminated = len(terminated)
            # What the terminated checkouts left open: one sweep, as the Schedule runs it.
            sweep = checkout_sweep(
                settings, older_than_seconds=0, wait_seconds=int(CLOSE_PATIENCE_SECONDS)
            )
            swept = await sweep_now(client, sweep, settings.task_queue)
            # Each terminated checkout's repair, whichever sweep started it (the worker's
            # Schedule may have run one meanwhile): its outcome is the checkout's end.
            for order_id in sorted(terminated):
                repair = client.get_workflow_handle(
                    repair_workflow_id(checkout_workflow_id(order_id)), result_type=RepairResult
                )
                try:
                    repaired = await asyncio.wait_for(repair.result(), CLOSE_PATIENCE_SECONDS)
                except (RPCError, TimeoutError, WorkflowFailureError) as err:
                    report.errors.append(f"{order_id}: not repaired: {err}")
                    not_closed.add(order_id)
                    continue
                report.repaired += 1
                confirmed = repaired.outcome == "confirmed"
                final[order_id] = Outcome.CONFIRMED if confirmed else Outcome.REJECTED
            log(f"sweep: {len(swept.entries)} with open records, {report.repaired} repaired")
            jobs = [
                job
                for order_id, status in final.items()
                if status is Outcome.CONFIRMED
                for job in receipt_and_shipment_jobs(order_id)
            ]
            unfinished = await _wait_workflows(client, jobs)
            log(f"receipt and shipment jobs finished: {len(jobs) - len(unfinished)}/{len(jobs)}")
            deadletters = stack.service_urls["deadletters"]
            async with httpx.AsyncClient(
                base_url=deadletters, headers=http.headers, timeout=10
            ) as dl:
                report.dead_letters = len(await list_letters(dl))
                await _redrive_all(client, dl, report)
            log(f"dead letters: {report.dead_letters}, redriven: {report.redriven}")
            report.invariants = check_invariants(
                data_dir, stock_before, answers, not_closed, final, terminated
            )
    report.seconds = time.monotonic() - started
    return report


async def _stock_up(http: httpx.AsyncClient, inventory: str, plan: ChaosPlan) -> None:
    """Enough of the everyday SKUs for the run; the scarce one down to its few units."""
    levels = [(sku, plan.checkouts * 2) for sku in PLENTIFUL]
    levels.append(SCARCE)
    for sku, available in levels:
        body = SetStock(name=sku, available=available).model_dump()
        (await http.put(f"{inventory}/stock/{sku}", json=body)).raise_for_status()


async def _redrive_all(client: Client, dl: httpx.AsyncClient, report: ChaosReport) -> None:
    """Redrive every OPEN dead letter, then wait for the jobs it started (bounded rounds)."""
    for _ in range(5):
        letters = await list_letters(dl, DeadLetterStatus.OPEN)
        if not letters:
            return
        started = []
        for letter in letters:
            outcome = await redrive_letter(client, dl, letter)
            report.redriven += outcome.outcome == "redriven"
            if outcome.outcome == "redriven" and letter.target.kind is ConsumerKind.JOB:
                started.append(outcome.workflow_id)
        await _wait_workflows(client, started)  # a job that fails again reopens its letter


def quiet_runtime() -> Runtime:
    """An SDK runtime that logs only errors: the client's retries while the server is away
    are expected here, one warning each would bury the run's own log."""
    quiet = TelemetryFilter(core_level="ERROR", other_level="ERROR")
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=quiet)))


def report_table(report: ChaosReport) -> Table:
    figures = report.figures()
    table = Table(title=f"Chaos: {report.checkouts} checkouts in {report.seconds:.0f} s")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name in (
        "checkouts",
        "confirmed",
        "rejected",
        "faults_injected",
        "worker_kills",
        "server_restarts",
        "service_restarts",
        "answer_retries",
        "attention_retries",
        "terminated",
        "resets",
        "repaired",
        "dead_letters",
        "redriven",
        "seconds",
    ):
        table.add_row(name.replace("_", " "), str(figures[name]))
    for outcome, n in sorted(report.outcomes.items()):
        table.add_row(f"  {outcome}", str(n))
    faults = report.faults
    table.add_row(
        "  faults (503 / hangs / delays)", f"{faults.errors} / {faults.hangs} / {faults.delays}"
    )
    for name in VIOLATIONS:
        n = report.invariants.violations[name]
        style = "green" if n == 0 else "red"
        table.add_row(f"violations: {name.replace('_', ' ')}", f"[{style}]{n}[/{style}]")
    return table


def chaos(
    checkouts: Annotated[int, typer.Option(min=1, max=10_000, help="How many.")] = 300,
    worker_kills: Annotated[int, typer.Option(min=0, max=20, help="Worker SIGKILLs.")] = 3,
    server_restarts: Annotated[
        int, typer.Option(min=0, max=5, help="Temporal dev server SIGKILL + restarts.")
    ] = 1,
    service_restarts: Annotated[
        int, typer.Option(min=0, max=10, help="Service SIGKILL + restarts.")
    ] = 2,
    concurrency: Annotated[int, typer.Option(min=1, max=500, help="Checkouts at once.")] = 20,
    terminations: Annotated[
        int, typer.Option(min=0, max=1000, help="Checkouts an operator terminates.")
    ] = 12,
    resets: Annotated[
        int, typer.Option(min=0, max=100, help="Finished checkouts reset to their start.")
    ] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the mix of carts and cards.")] = 7,
    data_dir: Annotated[
        Path | None, typer.Option(help="SQLite files and logs (default: a new temp dir).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line of figures.")] = False,
) -> None:
    """Run CHECKOUTS checkouts under faults, kills and restarts; check nothing was lost.

    Exit 0 when every invariant holds, 1 when one is violated."""
    err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
    out = Console(width=None if sys.stdout.isatty() else 160)
    directory = data_dir or Path(tempfile.mkdtemp(prefix="checkout-saga-chaos-"))
    err.print(f"Data and logs: {directory}")
    started = time.monotonic()

    def log(message: str) -> None:
        err.print(f"[dim]{time.monotonic() - started:6.1f} s[/dim] {message}")

    plan = ChaosPlan(
        checkouts=checkouts,
        worker_kills=worker_kills,
        server_restarts=server_restarts,
        service_restarts=service_restarts,
        concurrency=concurrency,
        seed=seed,
        terminations=terminations,
        resets=resets,
    )
    report = asyncio.run(run_chaos(plan, directory, log, quiet_runtime()))
    if as_json:
        print(json.dumps(report.figures()))
    else:
        out.print(report_table(report))
    for name, examples in report.invariants.examples.items():
        for example in examples:
            err.print(f"[red]{name}: {example}[/red]")
    for error in report.errors[:10]:
        err.print(f"[red]{error}[/red]")
    if report.violations:
        raise typer.Exit(1)


if __name__ == "__main__":
    run(chaos)
