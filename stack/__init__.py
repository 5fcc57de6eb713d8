"""The local stack: a Temporal dev server, the codec server, the services and workers as
processes on loopback, started and stopped together (demo, chaos, bench, histories capture)."""
