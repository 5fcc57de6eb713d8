"""What each process exports, from the environment (prefix CHECKOUT_).

Read by the worker, the services and the CLI alike (each its own process); the OTLP endpoint
and headers come from the standard OTEL_EXPORTER_OTLP_* variables.
"""

from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

TracingMode = Literal["off", "console", "otlp"]
LogFormat = Literal["json", "text"]


class TelemetrySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHECKOUT_", frozen=True, extra="ignore")

    # Spans: none, printed to stdout (the process log), or sent over OTLP/HTTP.
    tracing: TracingMode = "off"
    # host:port of the worker's Prometheus endpoint (SDK metrics and the checkout's counters).
    metrics_address: str | None = None
    log_format: LogFormat = "json"
    log_level: str = "INFO"
