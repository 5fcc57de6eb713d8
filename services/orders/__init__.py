"""Orders service: `python -m services.orders --port P --db FILE`."""
