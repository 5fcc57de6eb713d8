"""The eight downstream HTTP services the checkout calls, each a FastAPI app on its own SQLite
file: orders, inventory, payments (the saga's steps), email, warehouse, analytics, loyalty (the
consumers of order events) and deadletters (the events a consumer gave up on)."""
