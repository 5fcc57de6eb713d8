"""The sweep's models: what a Schedule made before `own_repairs` still holds reads the same,
a bad request is refused naming its field, and the report says what became of each saga."""

import pytest
from pydantic import ValidationError

from activities.reconcile import FIND_OPEN_CHECKOUTS
from starter.reconcile import outcome, report_table
from temporal_saga.models import (
    FindClosedRuns,
    OwnRepair,
    RepairResult,
    ResetOutcome,
    RunStatus,
    SagaReset,
    SweepAction,
    SweepEntry,
    SweepReport,
    SweepRequest,
)
from worker.settings import Settings
from workflows.checkout import CHECKOUT
from workflows.checkout_repair import CHECKOUT_REPAIR
from workflows.checkout_sweep import checkout_own_repair, checkout_sweep

# A checkout sweep's request as a Schedule made before own_repairs stored it.
EARLIER_REQUEST = {
    "saga_type": "Checkout",
    "finder": "find_open_checkouts",
    "repair": "CheckoutRepair",
    "older_than_seconds": 600,
    "closed_within_seconds": 86400,
    "dry_run": False,
    "wait_seconds": 60,
    "limit": 500,
}
EARLIER_REPORT = {
    "finder": "find_open_checkouts",
    "before": "2026-01-01T00:00:00Z",
    "dry_run": False,
    "entries": [
        {
            "workflow_id": "checkout-o1",
            "run_status": "TERMINATED",
            "records": ["order:o1 PENDING"],
            "action": "repaired",
            "repair_workflow_id": "repair-checkout-o1",
            "repair": {"workflow_id": "checkout-o1", "outcome": "cancelled"},
        }
    ],
}


def test_an_earlier_request_is_the_checkout_alone_with_its_own_repair() -> None:
    earlier = SweepRequest.model_validate(EARLIER_REQUEST)

    own = OwnRepair(saga_type=CHECKOUT, finder=FIND_OPEN_CHECKOUTS, repair=CHECKOUT_REPAIR)
    assert earlier.saga_type == CHECKOUT
    assert earlier.own_repairs == [own]  # run on the sweep's own task queue
    assert earlier.swept_own_repairs == [own]
    assert not earlier.resets  # narrowed to a type with its own repair


def test_the_default_sweep_is_every_saga_type_the_checkout_by_its_own_repair() -> None:
    every = checkout_sweep(Settings())

    assert every.saga_type is None and every.resets
    assert every.swept_own_repairs == [checkout_own_repair(Settings().task_queue)]
    assert every.swept_own_repairs[0].task_queue == Settings().task_queue
    narrowed = checkout_sweep(Settings(), saga_type="TripBooking")
    assert narrowed.resets and narrowed.swept_own_repairs == []
    assert SweepRequest.model_validate_json(every.model_dump_json()) == every


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"saga_type": "Checkout", "finder": "f"}, "finder and repair: give both"),
        ({"finder": "f", "repair": "r"}, "with the saga_type they are of"),
        ({"saga_type": "it's"}, "saga_type"),
        ({"saga_type": ""}, "saga_type"),
        ({"wait_seconds": 3601}, "wait_seconds"),
        ({"older_than_seconds": -1}, "older_than_seconds"),
        ({"own_repairs": [{"saga_type": "A", "finder": "f"}]}, r"own_repairs\.0\.repair"),
        (
            {
                "own_repairs": [
                    {"saga_type": "A", "finder": "f", "repair": "RA"},
                    {"saga_type": "A", "finder": "g", "repair": "RB"},
                ]
            },
            "own_repairs: saga type A given more than once",
        ),
        (
            {"saga_type": "RA", "own_repairs": [{"saga_type": "A", "finder": "f", "repair": "RA"}]},
            "saga_type: RA is a repair",
        ),
        ({"sweep_everything": True}, "sweep_everything"),
    ],
)
def test_a_bad_request_is_refused_naming_its_field(fields: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        SweepRequest.model_validate(fields)


def test_closed_runs_are_of_a_type_or_of_every_saga_type() -> None:
    with pytest.raises(ValidationError, match="workflow_type: required unless sagas_only"):
        FindClosedRuns.model_validate({"closed_after": "2026-01-01T00:00:00Z"})
    every = FindClosedRuns.model_validate(
        {"closed_after": "2026-01-01T00:00:00Z", "sagas_only": True, "exclude_types": ["A"]}
    )
    assert every.workflow_type is None
    with pytest.raises(ValidationError, match=r"exclude_types\.0"):
        FindClosedRuns.model_validate(
            {"closed_after": "2026-01-01T00:00:00Z", "sagas_only": True, "exclude_types": ["'"]}
        )


def test_an_earlier_report_reads() -> None:
    report = SweepReport.model_validate(EARLIER_REPORT)

    assert report.finder == "find_open_checkouts" and report.finders == []
    assert report.entries[0].saga_type is None and report.entries[0].reset is None
    assert report.count(SweepAction.REPAIRED) == 1


def _entry(action: SweepAction, **fields: object) -> SweepEntry:
    return SweepEntry.model_validate(
        {
            "workflow_id": "w",
            "saga_type": "T",
            "run_status": RunStatus.TERMINATED,
            "records": ["run closed without finishing"],
            "action": action,
            **fields,
        }
    )


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        (
            _entry(
                SweepAction.REPAIRED,
                repair=RepairResult(
                    workflow_id="w", outcome="cancelled", actions=["cancel_order", "refund"]
                ),
            ),
            "own repair → cancelled: cancel_order → refund",
        ),
        (
            _entry(
                SweepAction.RESET,
                reset=SagaReset(
                    outcome=ResetOutcome.COMPENSATED,
                    run_id="r2",
                    compensations_done=["cancel_car", "cancel_flight"],
                ),
            ),
            "reset+cancelled → compensated: cancel_car → cancel_flight",
        ),
        (
            _entry(SweepAction.RESET, reset=SagaReset(outcome=ResetOutcome.WENT_FORWARD)),
            "reset+cancelled → went forward",
        ),
        (
            _entry(
                SweepAction.RESET,
                reset=SagaReset(outcome=ResetOutcome.STILL_RUNNING, run_id="r2"),
            ),
            "reset+cancelled → still running (run r2)",
        ),
        (
            _entry(
                SweepAction.RESET,
                reset=SagaReset(outcome=ResetOutcome.FAILED_AGAIN, detail="no carrier"),
            ),
            "reset+cancelled → failed again: no carrier",
        ),
        (
            _entry(
                SweepAction.RESET,
                reset=SagaReset(outcome=ResetOutcome.NOT_RESET, detail="its run is RUNNING"),
            ),
            "not reset: its run is RUNNING",
        ),
        (_entry(SweepAction.WOULD_RESET), ""),
    ],
)
def test_the_report_says_what_became_of_each_saga(entry: SweepEntry, words: str) -> None:
    assert outcome(entry) == words
    report = SweepReport(before="2026-01-01T00:00:00Z", dry_run=False, entries=[entry])
    assert report_table(report).row_count == 1


def test_an_own_repair_names_its_saga_finder_and_repair() -> None:
    with pytest.raises(ValidationError, match="finder"):
        OwnRepair.model_validate({"saga_type": "A", "finder": "", "repair": "R"})
