"""What a saga shows on its page in Temporal's Web UI: its current details, a few lines of
markdown (`workflow.set_current_details`) kept current as the saga moves.

Its status and the steps running, the compensations with their states, and, when one is
stuck, its last error and the command that retries or skips it. Only names the saga declared
and the errors its activities raised go here: never an argument, so no card number or email.
"""

import shlex
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from temporal_saga.models import CompensationState, SagaProgress

# A last error longer than this is cut (the status query has it whole).
ERROR_CHARS = 300


def saga_page(
    info: workflow.Info, progress: SagaProgress[Any], attention_command: str | None
) -> str:
    lines = [f"**{info.workflow_type}**: {progress.status.value}"]
    if progress.running:
        lines.append(f"Running: {', '.join(progress.running)}")
    elif progress.current_step and not progress.compensations:
        lines.append(f"Step: {progress.current_step}")
    if progress.steps_done:
        lines.append(f"Done: {', '.join(progress.steps_done)}")
    for child in progress.children:
        state = child.status.value if child.status else "starting"
        stuck = f", {', '.join(child.stuck)} stuck" if child.stuck else ""
        lines.append(f"Nested saga `{child.workflow_id}`: {state}{stuck}")
    if progress.compensations:
        lines += ["", "Compensations, in the order they run:", ""]
        for report in progress.compensations:
            waits = f", waits for {report.waiting_for}" if report.waiting_for else ""
            lines.append(
                f"- {report.name}: {report.state.value}, {_attempts(report.attempts)}{waits}"
            )
    for report in progress.compensations:
        if report.state is not CompensationState.STUCK:
            continue
        error = (report.last_error or "no error recorded")[:ERROR_CHARS]
        lines += [
            "",
            f"**Needs attention**: compensation `{report.name}` is stuck after "
            f"{_attempts(report.attempts)}. Last error: {error}",
            "Once its cause is fixed, retry it:",
            f"`{_command(attention_command, info, 'retry', report.name)}`",
            "or, if it was undone by hand or cannot be, skip it with the reason:",
            f"`{_command(attention_command, info, 'skip', report.name)}`",
        ]
    return "\n".join(lines)


def _attempts(count: int) -> str:
    return f"{count} attempt" if count == 1 else f"{count} attempts"


def _command(attention_command: str | None, info: workflow.Info, verb: str, name: str) -> str:
    """The exact command an operator runs to retry or skip the compensation `name`."""
    workflow_id = shlex.quote(info.workflow_id)
    if attention_command is not None:
        reason = " --reason '<why>'" if verb == "skip" else ""
        return (
            f"{attention_command} {verb} --workflow-id {workflow_id} "
            f"--compensation {shlex.quote(name)}{reason}"
        )
    namespace = "" if info.namespace == "default" else f" --namespace {info.namespace}"
    if verb == "retry":
        update, arg = "retry_compensation", f'"{name}"'
    else:
        update, arg = "skip_compensation", f'{{"name": "{name}", "reason": "<why>"}}'
    return (
        f"temporal workflow update execute{namespace} --workflow-id {workflow_id} "
        f"--name {update} --input {shlex.quote(arg)}"
    )
