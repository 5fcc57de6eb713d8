"""Inventory service: `python -m services.inventory --port P --db FILE`."""
