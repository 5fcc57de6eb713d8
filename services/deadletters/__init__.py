"""Dead-letters service: `python -m services.deadletters --port P --db FILE`."""
