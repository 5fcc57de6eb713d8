"""Replay: recorded histories still replay against today's code, and the net catches changes.

tests/histories/*.json are recorded by `checkout-saga histories capture` (one per path of
the checkout). A change to the workflow code that those histories no longer replay against
would break the checkouts running at deploy time; guard it with `workflow.patched`.
"""

import asyncio
import uuid
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.workflow import NondeterminismError

from models.checkout import CartItem, CheckoutRequest, CheckoutStatus
from models.payments import CARD_DECLINED, CARD_OK
from starter.checkouts import place_checkout
from starter.histories import PATHS
from starter.replay import (
    history_files,
    load_history,
    patch_ids,
    replay_files,
    replayer,
    workflow_type,
)
from tests.cards import card_token
from tests.changed_checkout import PatchedFraudCheck, UnguardedFraudCheck
from tests.cli import run_cli
from tests.stock import new_stocked_sku
from worker.runner import WORKFLOWS
from worker.settings import Settings
from workflows.analytics import ANALYTICS
from workflows.checkout import (
    ANNOUNCE_OUTCOME_PATCH,
    COMMIT_AS_ACTIVITY_PATCH,
    LOCAL_STEPS_PATCH,
    checkout_workflow_id,
)
from workflows.consumers import LOCAL_CONSUMERS_PATCH
from workflows.local import FALLBACK_PATCH
from workflows.loyalty import CUSTOMER_LOYALTY
from workflows.receipt import SEND_RECEIPT
from workflows.shipping import SHIP_ORDER

HISTORIES = Path(__file__).parent / "histories"
RECORDED = history_files(HISTORIES)
# Every recorded checkout, of today's code and of code before a patch (sub-directories).
CHECKOUTS = [p for p in RECORDED if workflow_type(load_history(p)) == "Checkout"]
CONFIRMED = HISTORIES / "confirmed.json"
# Recorded before the checkout announced its outcome (workflow.patched("announce-outcome")).
BEFORE_FANOUT = HISTORIES / "before-fanout"
# Consumers recorded while they called their service with an activity (LOCAL_CONSUMERS_PATCH).
BEFORE_LOCAL_CONSUMERS = HISTORIES / "before-local-consumers"
# Checkouts recorded while their steps were activities unless a request asked for local steps
# (local-steps.json), and a failing local step retried in the worker to the end of its budget.
BEFORE_LOCAL_STEPS_DEFAULT = HISTORIES / "before-local-steps-default"
# The paths whose charge fails its two local tries (payments 503s) and goes on as an activity.
FELL_BACK = {"transient-retries", "cancelled", "deadline"}


def test_every_path_has_a_recorded_history() -> None:
    assert RECORDED, f"no histories in {HISTORIES}: run `checkout-saga histories capture`"
    missing = {p.name for p in PATHS} - {f.stem for f in RECORDED if f.parent == HISTORIES}
    assert not missing, f"not recorded: {sorted(missing)}; run `checkout-saga histories capture`"


@pytest.mark.parametrize("path", RECORDED, ids=[str(p.relative_to(HISTORIES)) for p in RECORDED])
async def test_recorded_history_replays_against_current_workflows(path: Path) -> None:
    history = load_history(path)

    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)

    assert result.replay_failure is None, f"{path.name}: {result.replay_failure!r}"


async def test_unguarded_change_fails_replay_with_nondeterminism_error() -> None:
    history = load_history(CONFIRMED)

    result = await replayer([UnguardedFraudCheck]).replay_workflow(
        history, raise_on_replay_failure=False
    )

    assert isinstance(result.replay_failure, NondeterminismError), repr(result.replay_failure)
    # Core's code for a command that does not match the recorded history.
    assert "[TMPRL1100] Nondeterminism error" in str(result.replay_failure)
    with pytest.raises(NondeterminismError):
        await replayer([UnguardedFraudCheck]).replay_workflow(history)


def test_every_kind_of_workflow_is_recorded() -> None:
    recorded = {workflow_type(load_history(p)) for p in RECORDED}
    assert recorded == {"Checkout", SEND_RECEIPT, SHIP_ORDER, CUSTOMER_LOYALTY, ANALYTICS}
    assert len(WORKFLOWS) == len(recorded)  # a new workflow type needs its history too
    assert history_files(BEFORE_FANOUT), "the histories from before the fan-out are kept"
    assert history_files(BEFORE_LOCAL_CONSUMERS), "and those from before local consumer calls"
    assert history_files(BEFORE_LOCAL_STEPS_DEFAULT), "and those from before local steps"


def patches(path: Path) -> set[str]:
    """The ids of the patch markers (`workflow.patched`) in a recorded history."""
    return patch_ids(load_history(path))


def test_patch_marker_only_in_histories_recorded_after_it() -> None:
    """Today's checkouts announce their outcome behind the patch; older ones replay without."""
    old = [p for p in CHECKOUTS if p.parent == BEFORE_FANOUT]
    new = [p for p in CHECKOUTS if p.parent == HISTORIES]
    assert old and new
    assert all(ANNOUNCE_OUTCOME_PATCH not in patches(p) for p in old)
    assert all(ANNOUNCE_OUTCOME_PATCH in patches(p) for p in new)


def test_consumers_recorded_before_local_calls_replay_beside_todays() -> None:
    """Consumers call their service through a local activity behind a patch; the histories
    of the four consumers from before it (activities) are kept and replay too."""
    consumers = [p for p in RECORDED if p not in CHECKOUTS]
    old = [p for p in consumers if p.parent == BEFORE_LOCAL_CONSUMERS]
    new = [p for p in consumers if p.parent == HISTORIES]
    assert len(old) == len(new) == 4
    assert all(LOCAL_CONSUMERS_PATCH not in patches(p) for p in old)
    assert all(LOCAL_CONSUMERS_PATCH in patches(p) for p in new)


def test_local_steps_history_commits_the_stock_with_an_activity() -> None:
    assert {LOCAL_STEPS_PATCH, COMMIT_AS_ACTIVITY_PATCH} <= patches(CONFIRMED)
    # Read only with local steps: not in a checkout whose steps are activities.
    assert not {LOCAL_STEPS_PATCH, COMMIT_AS_ACTIVITY_PATCH} & patches(
        HISTORIES / "activity-steps.json"
    )
    before = BEFORE_LOCAL_STEPS_DEFAULT / "local-steps.json"
    assert {LOCAL_STEPS_PATCH, COMMIT_AS_ACTIVITY_PATCH} <= patches(before)


def test_fallback_patch_only_where_a_local_step_failed_twice() -> None:
    """The fallback's patch is read only once a local step has failed its local tries, so
    the histories from before it (whose failing local steps retried in the worker) replay,
    and a checkout whose steps succeed carries no marker for it."""
    new = {p.stem: patches(p) for p in CHECKOUTS if p.parent == HISTORIES}
    assert new.keys() >= FELL_BACK
    assert {name for name, found in new.items() if FALLBACK_PATCH in found} == FELL_BACK
    old = [p for p in CHECKOUTS if p.parent == BEFORE_LOCAL_STEPS_DEFAULT]
    assert len(old) == 9
    assert all(FALLBACK_PATCH not in patches(p) for p in old)


async def test_unguarded_change_fails_every_recorded_history() -> None:
    outcomes = await replay_files(CHECKOUTS, workflows=[UnguardedFraudCheck])

    assert len(outcomes) == len(CHECKOUTS) > 0
    errors = {o.source: o.error for o in outcomes}
    assert all(isinstance(e, NondeterminismError) for e in errors.values()), errors


async def test_change_guarded_by_patched_replays_recorded_histories() -> None:
    outcomes = await replay_files(CHECKOUTS, workflows=[PatchedFraudCheck])

    assert len(outcomes) == len(CHECKOUTS) > 0
    assert {o.source: o.error for o in outcomes if not o.ok} == {}


async def test_replay_files_reports_each_recorded_history() -> None:
    outcomes = await replay_files(RECORDED)

    assert [o.source for o in outcomes] == [str(p) for p in RECORDED]
    assert all(o.ok for o in outcomes), [(o.source, o.error) for o in outcomes]
    assert {o.workflow_type for o in outcomes} >= {"Checkout", "SendReceipt", "CustomerLoyalty"}
    assert len({o.run_id for o in outcomes}) == len(outcomes)


def _seed_stock(services: dict[str, str], available: int) -> str:
    return new_stocked_sku(services, "RPL", available, unit_price_cents=500)


async def _wait_visible(env: WorkflowEnvironment, query: str, count: int) -> None:
    for _ in range(100):  # 10 s at most
        if (await env.client.count_workflows(query)).count >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{query} never listed {count} workflows")


@pytest.mark.usefixtures("checkout_worker")
async def test_replay_query_command_against_live_server(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, services: dict[str, str]
) -> None:
    sku = _seed_stock(services, 10)
    batch = uuid.uuid4().hex[:8]
    requests = [
        CheckoutRequest(
            order_id=f"replay-{batch}-{n}",
            customer_id="customer-replay",
            email="replay@example.com",
            payment_token=card_token(services["payments"], card),
            items=[CartItem(sku=sku, quantity=1)],
        )
        for n, card in enumerate([CARD_OK, CARD_DECLINED])
    ]
    results = [
        await place_checkout(dev_env.client, r, checkout_settings.task_queue) for r in requests
    ]
    assert [r.status for r in results] == [CheckoutStatus.CONFIRMED, CheckoutStatus.REJECTED]
    ids = [checkout_workflow_id(r.order_id) for r in requests]
    query = "WorkflowType = 'Checkout' AND WorkflowId IN ({})".format(
        ", ".join(f"'{i}'" for i in ids)
    )
    await _wait_visible(dev_env, query, len(ids))

    done = await asyncio.to_thread(run_cli, dev_env, checkout_settings, "replay", "--query", query)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "replayed 2 workflow(s): 2 ok, 0 failed" in done.stdout
    assert all(i in done.stdout for i in ids), done.stdout

    one = await asyncio.to_thread(
        run_cli, dev_env, checkout_settings, "replay", "--query", query, "--limit", "1"
    )
    assert one.returncode == 0, one.stdout + one.stderr
    assert "replayed 1 workflow(s): 1 ok, 0 failed" in one.stdout


async def test_replay_query_command_fails_when_nothing_matches(
    dev_env: WorkflowEnvironment, checkout_settings: Settings
) -> None:
    query = f"WorkflowId = 'checkout-no-such-order-{uuid.uuid4().hex[:8]}'"

    done = await asyncio.to_thread(run_cli, dev_env, checkout_settings, "replay", "--query", query)

    assert done.returncode == 2, done.stdout + done.stderr
    assert "No workflow matches" in done.stdout


async def test_histories_replay_command_replays_recorded_files(
    dev_env: WorkflowEnvironment, checkout_settings: Settings, tmp_path: Path
) -> None:
    done = await asyncio.to_thread(
        run_cli, dev_env, checkout_settings, "histories", "replay", str(HISTORIES)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    n = len(RECORDED)
    assert f"replayed {n} workflow(s): {n} ok, 0 failed" in done.stdout

    empty = await asyncio.to_thread(
        run_cli, dev_env, checkout_settings, "histories", "replay", str(tmp_path)
    )
    assert empty.returncode == 2, empty.stdout + empty.stderr
    assert "No history files" in empty.stdout
