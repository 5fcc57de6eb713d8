import os
import sys

from fastapi import FastAPI

from services.payments.app import create_app
from services.server import serve


def _make_app(db_path: str) -> FastAPI:
    # How many 503s the flaky test card gets per charge before it succeeds.
    return create_app(db_path, flaky_failures=int(os.environ.get("PAYMENTS_FLAKY_FAILURES", "2")))


if __name__ == "__main__":
    serve(_make_app, sys.argv[1:])
