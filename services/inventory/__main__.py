import sys

from services.inventory.app import create_app
from services.server import serve

if __name__ == "__main__":
    serve(create_app, sys.argv[1:])
