"""The tracer provider of a process: one checkout is one trace across every process.

The worker's Temporal client carries `TracingInterceptor` (starter -> workflow -> activities),
the worker's httpx clients inject W3C `traceparent`, and each service's FastAPI app continues
the trace. Each process names itself with `service.name`.
"""

import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from telemetry.settings import TelemetrySettings, TracingMode


def span_exporter(mode: TracingMode) -> SpanExporter | None:
    if mode == "console":
        # stderr: the CLI's stdout may be JSON (`--json`); a part's log file gets both.
        return ConsoleSpanExporter(out=sys.stderr)
    if mode == "otlp":
        # Endpoint, headers, timeout: OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT and friends.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    return None


def configure_tracing(
    service_name: str, settings: TelemetrySettings | None = None
) -> TracerProvider | None:
    """Install this process's global tracer provider; None when tracing is off.

    Call `shutdown()` on the result before the process exits, so the last spans are sent.
    """
    exporter = span_exporter((settings or TelemetrySettings()).tracing)
    if exporter is None:
        return None
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def configured_tracer_provider() -> TracerProvider | None:
    """The provider `configure_tracing` installed in this process, if it did."""
    provider = trace.get_tracer_provider()
    return provider if isinstance(provider, TracerProvider) else None
