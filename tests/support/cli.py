"""Run the real `checkout-saga` console script against a test's Temporal and worker."""

import os
import subprocess
import sys

from temporalio.testing import WorkflowEnvironment

from worker.settings import Settings


def run_cli(
    env: WorkflowEnvironment, settings: Settings, *args: str
) -> subprocess.CompletedProcess[str]:
    """The real `checkout-saga` console script, pointed at the test's Temporal and worker,
    and at its payments service (where `checkout` and `run` tokenize cards)."""
    target = env.client.service_client.config.target_host
    cli_env = {
        **os.environ,
        "TEMPORAL_ADDRESS": target,
        "TEMPORAL_NAMESPACE": "default",
        "CHECKOUT_TASK_QUEUE": settings.task_queue,
        "CHECKOUT_PAYMENTS_URL": str(settings.payments_url),
    }
    script = os.path.join(os.path.dirname(sys.executable), "checkout-saga")
    return subprocess.run(
        [script, *args], env=cli_env, capture_output=True, text=True, timeout=120, check=False
    )
