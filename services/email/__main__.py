import sys

from services.common import serve
from services.email.app import create_app

if __name__ == "__main__":
    serve(create_app, sys.argv[1:])
