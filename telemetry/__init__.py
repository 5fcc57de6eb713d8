"""Operating the parts: tracing, metrics and logs, set up the same way in every process."""
