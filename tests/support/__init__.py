"""Test helpers: scripted activities, the CLI runner, stock, probes, changed checkouts."""
