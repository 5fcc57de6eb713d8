"""The benches and their parts: the bare-Temporal workflow, the checkout's no-op twin, the
direct-call chain and the DBOS peer."""
