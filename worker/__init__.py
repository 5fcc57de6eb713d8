"""The worker process: the only place that reads settings and builds clients."""
