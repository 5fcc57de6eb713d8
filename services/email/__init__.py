"""Email service: `python -m services.email --port P --db FILE`."""
