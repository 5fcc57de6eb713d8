"""Verification tools beside the bench: the chaos run and its invariants, and the capture of
recorded histories for the replay tests."""
