"""A service process's telemetry: JSON logs and, when tracing is on, a server span per request
that continues the caller's trace (the W3C traceparent the worker's httpx clients send).

A span records the route, the status and the URL, never a body: the card number sent to the
payments service's POST /payment-methods is in its body only. Headers are recorded only if an
operator asks for them (OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST), and then
the credentials among them are redacted."""

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.util.http import (
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS,
    get_custom_headers,
)

from services.auth import PUBLISHABLE_KEY_HEADER
from telemetry.logs import configure_logging
from telemetry.settings import TelemetrySettings
from telemetry.tracing import configure_tracing

# Redacted from spans whatever else an operator asks to redact: the service token, the key.
CREDENTIAL_HEADERS = ("authorization", PUBLISHABLE_KEY_HEADER.lower())


def service_name(app: FastAPI) -> str:
    """The service's name, from the title services.service_app gives its app ("orders service")."""
    return app.title.removesuffix(" service")


def instrument_service_app(app: FastAPI, tracer_provider: TracerProvider) -> None:
    """A server span per request (not for /health probes), child of the caller's span."""
    sanitized = get_custom_headers(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS)
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=tracer_provider,
        excluded_urls="health",
        exclude_spans=["receive", "send"],  # one span per request, not per ASGI message
        http_capture_headers_sanitize_fields=[*CREDENTIAL_HEADERS, *sanitized],
    )


def observe_service(
    app: FastAPI, settings: TelemetrySettings | None = None
) -> TracerProvider | None:
    """Set up this service's process; returns the tracer provider to shut down at exit, None
    when tracing is off."""
    settings = settings or TelemetrySettings()
    configure_logging(settings)
    provider = configure_tracing(service_name(app), settings)
    if provider is not None:
        instrument_service_app(app, provider)
    return provider
