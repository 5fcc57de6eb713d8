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
    # The reconciler's sweep (temporal_saga.reconcile): every this many seconds (a Temporal
    # Schedule this worker creates, or updates, at start; 0: this worker leaves it as it is),
    # for records opened longer ago than the other setting (more than any checkout deadline).
    reconcile_every_seconds: int = Field(default=300, ge=0, le=86_400)
    reconcile_older_than_seconds: int = Field(default=600, ge=0, le=30 * 86_400)
