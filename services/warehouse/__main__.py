import sys

from services.server import serve
from services.warehouse.app import create_app

if __name__ == "__main__":
    serve(create_app, sys.argv[1:])
