"""The benchmark's own parts: the bare-Temporal workflow and the direct-call chain."""
