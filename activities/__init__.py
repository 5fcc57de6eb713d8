"""Activities: one module per downstream service, each a thin typed client of it."""
