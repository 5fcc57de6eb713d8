"""The worker's telemetry: the SDK runtime with a Prometheus endpoint, and the tracing
interceptor of its Temporal client (applied to the workers built from that client too)."""

from opentelemetry.trace import TracerProvider
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig


def metrics_runtime(bind_address: str) -> Runtime:
    """A runtime serving `http://{bind_address}/metrics`: the SDK's metrics (workflow and
    activity counts and latencies, polls, slots) and the checkout's own counters, recorded
    through `workflow.metric_meter()` (workflows/metrics.py)."""
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind_address)))


def tracing_interceptor(tracer_provider: TracerProvider) -> TracingInterceptor:
    """Spans for starting and running workflows and activities, linked through Temporal
    headers. Workflow spans are created only outside replay, so a replay adds none.

    A checkout is one trace when the client that starts it is traced (the context travels in
    the workflow's start header, so in its history, and survives replays). One started by an
    untraced client (the Web UI, another service) gets no workflow spans; each of its
    activities is then a trace of its own, with its service calls under it.
    """
    return TracingInterceptor(tracer_provider.get_tracer("checkout-saga"))
