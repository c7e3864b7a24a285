#!/usr/bin/env python3
"""moto server (AWS emulator) that runs its requests one at a time.

moto's own `moto_server` handles requests on parallel threads without locking its backends,
so two concurrent DynamoDB conditional writes to one item can both pass their condition: real
DynamoDB serializes them. Tests of optimistic concurrency (concurrent PATCHes, 50 concurrent
deliveries of one S3 event) need the real semantics, so this wrapper accepts connections on
threads but passes one request at a time to moto.

moto's TransactWriteItems deep-copies the whole table (items and stream records) once per
item of the transaction, for its rollback: a 100-item transaction on a table of a few
thousand items takes seconds, past the SDK timeouts of the stores. `copy_tables_once` makes
it copy each table once per transaction (same rollback, same answers).

moto's EC2 CreateImage refuses tags for the image's snapshots (NotImplementedError);
`tag_image_snapshots` puts them on the snapshot, as EC2 does.

Usage: moto_server.py [-H HOST] [-p PORT]
"""
import argparse
import copy
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


def copy_tables_once():
    """Patches moto's DynamoDB TransactWriteItems to deep-copy a table once per call."""
    import moto.dynamodb.models as models
    from moto.dynamodb.models.table import Table

    class OncePerCall:
        """`copy` as moto's DynamoDB models see it: tables copied once while `memo` is set."""

        memo = None

        def deepcopy(self, obj, *args, **kwargs):
            if self.memo is not None and isinstance(obj, Table):
                if id(obj) not in self.memo:
                    self.memo[id(obj)] = copy.deepcopy(obj)
                return self.memo[id(obj)]
            return copy.deepcopy(obj, *args, **kwargs)

    shim = OncePerCall()
    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self, transact_items):
        shim.memo = {}
        try:
            return original(self, transact_items)
        finally:
            shim.memo = None

    models.copy = shim
    models.DynamoDBBackend.transact_write_items = transact_write_items


def tag_image_snapshots():
    """Patches moto's EC2 CreateImage to accept `TagSpecifications` for `snapshot` (it raises
    NotImplementedError, a 500): the tags go on the image's snapshot, as EC2 does."""
    from moto.ec2.models.amis import AmiBackend

    original = AmiBackend.create_image

    def create_image(self, instance_id, name, description, tag_specifications):
        snapshot_tags = {}
        image_specs = []
        for spec in tag_specifications:
            if spec.get("ResourceType") == "snapshot":
                snapshot_tags.update({t["Key"]: t["Value"] for t in spec.get("Tags", [])})
            else:
                image_specs.append(spec)
        ami = original(self, instance_id, name, description, image_specs)
        if snapshot_tags:
            self.create_tags([ami.ebs_snapshot.id], snapshot_tags)
        return ami

    AmiBackend.create_image = create_image


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    copy_tables_once()
    tag_image_snapshots()
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
