#!/usr/bin/env python3
"""moto server (AWS emulator) that runs its requests one at a time.

moto's own `moto_server` handles requests on parallel threads without locking its backends,
so two concurrent DynamoDB conditional writes to one item can both pass their condition: real
DynamoDB serializes them. Tests of optimistic concurrency (concurrent PATCHes, 50 concurrent
deliveries of one S3 event) need the real semantics, so this wrapper accepts connections on
threads but passes one request at a time to moto.

Usage: moto_server.py [-H HOST] [-p PORT]
"""
import argparse
import os
import signal
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def one_at_a_time(environ, start_response):
        with lock:
            return list(app(environ, start_response))

    run_simple(args.host, args.port, one_at_a_time, threaded=True,
               request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
