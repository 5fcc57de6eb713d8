"""Development tools, not installed with the product: the benches (`python -m harness.bench`),
the chaos run and its invariants (`python -m harness.chaos`), and the capture and replay of
recorded histories (`python -m harness.histories`). Run them from the repository's root."""
