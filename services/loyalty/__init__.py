"""Loyalty service: `python -m services.loyalty --port P --db FILE`."""
