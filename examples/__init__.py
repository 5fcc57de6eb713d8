"""Sagas built on the engine beside the checkout, to show what a team writes for its own."""
