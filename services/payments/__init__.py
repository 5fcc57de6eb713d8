"""Payments service: `python -m services.payments --port P --db FILE`."""
