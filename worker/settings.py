"""Settings of the checkout's own parts, from the environment (prefix CHECKOUT_).

The Temporal connection is not here: it comes from temporalio.envconfig (TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE).
"""

from pydantic import AnyHttpUrl, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHECKOUT_", frozen=True)

    task_queue: str = Field(default="checkout", min_length=1)
    orders_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8001")
    inventory_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8002")
    payments_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8003")
    # The consumers of the checkout's events (fan-out), and the dead letters they give up on.
    email_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8004")
    warehouse_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8005")
    analytics_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8006")
    loyalty_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8007")
    deadletters_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8008")
    # Per request to a service; keep it below the activities' 10 s start-to-close timeout.
    http_timeout_seconds: float = Field(default=5.0, gt=0, le=9)
    http_max_connections: int = Field(default=50, ge=1)
    # Sent as `Authorization: Bearer ...` on every call to a service (services.auth); the
    # worker refuses to start without it.
    service_token: SecretStr | None = None
    # What the CLI tokenizes cards with, as a shop's front end does (POST /payment-methods of
    # the payments service, which reads the same variable); the worker never needs it.
    payments_publishable_key: SecretStr | None = None
    # Worker tuning (worker/tuning.py); None keeps the SDK's default, but for the workflow task
    # polls, which the server then scales. See docs/performance.md.
    worker_max_concurrent_activities: int | None = Field(default=None, ge=1)
    worker_max_concurrent_workflow_tasks: int | None = Field(default=None, ge=2)
    worker_workflow_task_pollers: int | None = Field(default=None, ge=2)
    worker_activity_task_pollers: int | None = Field(default=None, ge=1)
    # The worker of the work after an answer (worker/after_answer.py) holds its slots while
    # customers wait and a reading of its container's CPU in the last second reached this
    # share; whatever the load, it takes a task once the oldest waiting one has waited
    # max_wait. 1 (the default): never holds. Under a steady rate holding made the work after
    # the answers lag and the answers' p99 worse; it helps only a shop whose load comes in
    # bursts (docs/performance.md, "The after-answer gate").
    after_answer_target_cpu: float = Field(default=1.0, gt=0, le=1)
    after_answer_max_wait_seconds: float = Field(default=30.0, gt=0, le=3600)
    # The reconciler's sweep (temporal_saga.reconcile): every this many seconds (a Temporal
    # Schedule this worker creates, or updates, at start; 0: this worker leaves it as it is),
    # for records opened longer ago than the other setting (more than any checkout deadline).
    reconcile_every_seconds: int = Field(default=300, ge=0, le=86_400)
    reconcile_older_than_seconds: int = Field(default=600, ge=0, le=30 * 86_400)
    # Our workflow libraries are always passed through the sandbox (worker/tuning.py). True
    # passes the modules that define workflows too: not re-imported for each workflow run
    # (cheaper workflow tasks), but no longer checked by it for non-deterministic calls, and
    # their module state kept from one run to the next. Temporal advises passing through only
    # models, activities and other deterministic modules (docs/performance.md, the sandbox).
    worker_sandbox_passthrough: bool = False
