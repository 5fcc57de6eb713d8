"""Workflow code and the reusable saga helper."""
