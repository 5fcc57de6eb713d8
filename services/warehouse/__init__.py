"""Warehouse service: `python -m services.warehouse --port P --db FILE`."""
