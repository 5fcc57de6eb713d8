"""Pydantic models shared by every boundary: one module per business thing."""
