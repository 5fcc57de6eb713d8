"""Analytics service: `python -m services.analytics --port P --db FILE`."""
