"""The local cloud: moto server on 127.0.0.1, made durable.

moto keeps everything in memory. To make stored actions, queued actions, the registry and models
survive a restart (or a crash) of the local runner, every successful mutating request is followed,
before its response is returned, by a write of the affected state to a local folder:

  <state>/s3/<bucket>/<quoted key>      object bytes (the latest version)
  <state>/sqs/<queue name>/<id>.json    each message still in the queue (visible or in flight)
  <state>/dynamodb/<table>/<key hash>.json  each item (only those a request wrote are rewritten; not
                                        fsynced: they survive the runner, not a power loss)

`restore` loads that folder back after the resources are created. A request that was acknowledged
is therefore on disk; one that was not is retried by its client. SQS messages come back visible
and with new message ids after a restart (at-least-once, as on AWS after a visibility timeout).
"""
from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import threading
import urllib.parse
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import boto3
from botocore.config import Config
from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from . import moto_atomic, moto_query

log = logging.getLogger("local-cloud")

REGION = "us-east-1"
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")
_READ_ONLY_TARGETS = re.compile(r"\.(Get|List|Describe|Query|Scan|BatchGet|TransactGet)")


def _atomic_write(path: str, data: bytes, sync: bool = True) -> None:
    """Write a file whole or not at all (a rename); `sync`: also to the disk before returning."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = "{}.tmp-{}".format(path, threading.get_ident())
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if sync:
            os.fsync(f.fileno())
    os.replace(tmp, path)


def _quote_key(key: str) -> str:
    return urllib.parse.quote(key, safe="")


class StateMirror:
    """Writes moto's state of one service to the state folder, reading moto's in-process backends."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self._sqs_on_disk: Dict[str, set] = {}
        self._journal_bytes: Dict[str, int] = {}

    # --- S3 ---
    def _s3_backend(self) -> Any:
        from moto.s3.models import s3_backends

        return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]

    def s3_object(self, bucket: str, key: str) -> None:
        path = os.path.join(self.state_dir, "s3", bucket, _quote_key(key))
        try:
            obj = self._s3_backend().get_object(bucket, key)
        except Exception:  # noqa: BLE001 - missing bucket/key: the object is gone
            obj = None
        if obj is None or getattr(obj, "is_delete_marker", False):
            if os.path.exists(path):
                os.remove(path)
        else:
            _atomic_write(path, obj.value)

    def s3_bucket(self, bucket: str) -> None:
        backend = self._s3_backend()
        try:
            keys = list(backend.get_bucket(bucket).keys.keys())
        except Exception:  # noqa: BLE001
            return
        folder = os.path.join(self.state_dir, "s3", bucket)
        on_disk = set(os.listdir(folder)) if os.path.isdir(folder) else set()
        for key in keys:
            self.s3_object(bucket, key)
            on_disk.discard(_quote_key(key))
        for stale in on_disk:
            if ".tmp-" not in stale:
                os.remove(os.path.join(folder, stale))

    # --- SQS ---
    def sqs_queues(self) -> None:
        """One file per message still in a queue: a send adds files, a delete removes them.

        Cost per request is a set difference plus the files that changed, not the queue's size.
        """
        from moto.sqs.models import sqs_backends

        for name, queue in sqs_backends[DEFAULT_ACCOUNT_ID][REGION].queues.items():
            folder = os.path.join(self.state_dir, "sqs", name)
            known = self._sqs_on_disk.get(name)
            if known is None:
                known = {f[: -len(".json")] for f in os.listdir(folder)} if os.path.isdir(folder) else set()
            current = {m.id: m for m in list(queue._messages)}
            for message_id in current.keys() - known:  # new files first: a crash duplicates, never loses
                m = current[message_id]
                _atomic_write(os.path.join(folder, message_id + ".json"), json.dumps({
                    "body": m.body, "message_attributes": m.message_attributes, "group_id": m.group_id,
                    "deduplication_id": m.deduplication_id, "sent_timestamp": m.sent_timestamp,
                }).encode())
            for message_id in known - current.keys():
                try:
                    os.remove(os.path.join(folder, message_id + ".json"))
                except FileNotFoundError:
                    pass
            self._sqs_on_disk[name] = set(current)

    # --- DynamoDB ---
    def _table(self, name: str) -> Any:
        from moto.dynamodb.models import dynamodb_backends

        return dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION].tables.get(name)

    # A table is mirrored as a snapshot (<table>.items: one item per line) and a journal
    # (<table>.journal) that every write appends to: one line per item a request wrote, its new
    # state or null, in one append a request. Replayed over the snapshot in order, the journal gives
    # the table as the last acknowledged write left it. Writing a file per item instead cost about
    # 0.5 ms an item, and every accepted action writes two (the ledger, the live activity): that was
    # most of the local API's and consumer's time. Without fsync: a write survives the runner's death
    # (the page cache) but not the machine's; what must survive a power loss is the actions
    # themselves (S3 objects and queued messages, fsynced).
    JOURNAL_COMPACT_BYTES = 32 * 1024 * 1024

    def _ddb_path(self, name: str, suffix: str) -> str:
        return os.path.join(self.state_dir, "dynamodb", name + suffix)

    def dynamodb_items(self, keys: Iterable[Tuple[str, Dict[str, Any]]]) -> None:
        """Mirror the items a request wrote: (table, key in DynamoDB JSON) each. Cost per request: the
        items it touched, not the table's size (the event ledger holds an item per action)."""
        from moto.dynamodb.models.dynamo_type import DynamoType

        lines: Dict[str, List[str]] = {}
        for name, key in keys:
            table = self._table(name)
            if table is None:
                continue
            range_key = key.get(table.range_key_attr) if table.range_key_attr else None
            item = table.get_item(DynamoType(key[table.hash_key_attr]), DynamoType(range_key) if range_key else None)
            lines.setdefault(name, []).append(json.dumps(
                {"key": key, "item": item.to_json()["Attributes"] if item is not None else None}, sort_keys=True))
        for name, entries in lines.items():
            data = ("\n".join(entries) + "\n").encode()
            path = self._ddb_path(name, ".journal")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "ab") as f:
                f.write(data)
            self._journal_bytes[name] = self._journal_bytes.get(name, 0) + len(data)
            if self._journal_bytes[name] > self.JOURNAL_COMPACT_BYTES:
                self.dynamodb_table(name)

    def dynamodb_table(self, name: str) -> None:
        """Snapshot one table whole, then empty its journal (a crash in between replays a journal the
        snapshot already holds: the same end state)."""
        table = self._table(name)
        if table is None:
            return
        data = "".join(json.dumps(item.to_json()["Attributes"], sort_keys=True) + "\n" for item in table.all_items())
        _atomic_write(self._ddb_path(name, ".items"), data.encode(), sync=False)
        with open(self._ddb_path(name, ".journal"), "wb"):
            pass
        self._journal_bytes[name] = 0
        legacy = os.path.join(self.state_dir, "dynamodb", name)  # one file per item, earlier releases
        if os.path.isdir(legacy):
            shutil.rmtree(legacy)

    def dynamodb_tables(self) -> None:
        """Every table (after a restore, or a request the middleware cannot attribute)."""
        from moto.dynamodb.models import dynamodb_backends

        for name in list(dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION].tables):
            self.dynamodb_table(name)

    def dynamodb_saved_items(self, name: str) -> List[Dict[str, Any]]:
        """The items of table `name` in the state folder: its snapshot (or the per-item files of
        earlier releases) with its journal replayed. A torn last journal line (the runner died while
        appending) belongs to a write that was never acknowledged: skipped."""
        root = os.path.join(self.state_dir, "dynamodb")
        items: Dict[str, Dict[str, Any]] = {}
        table = self._table(name)

        def key_of(item: Dict[str, Any]) -> str:
            return json.dumps(self._key_of(table, item) if table is not None else item, sort_keys=True)

        found: List[Dict[str, Any]] = []
        if os.path.exists(os.path.join(root, name + ".json")):  # one file per table, earlier releases
            with open(os.path.join(root, name + ".json")) as f:
                found += json.load(f)
        if os.path.isdir(os.path.join(root, name)):
            for entry in os.listdir(os.path.join(root, name)):
                if entry.endswith(".json") and ".tmp-" not in entry:
                    with open(os.path.join(root, name, entry)) as f:
                        found.append(json.load(f))
        if os.path.exists(self._ddb_path(name, ".items")):
            with open(self._ddb_path(name, ".items")) as f:
                found += [json.loads(line) for line in f if line.strip()]
        for item in found:
            items[key_of(item)] = item
        if os.path.exists(self._ddb_path(name, ".journal")):
            with open(self._ddb_path(name, ".journal")) as f:
                for line in f:
                    try:
                        change = json.loads(line)
                    except ValueError:
                        log.warning("table %s: skipped a torn journal line", name)
                        continue
                    k = json.dumps(change["key"], sort_keys=True)
                    if change["item"] is None:
                        items.pop(k, None)
                    else:
                        items[k] = change["item"]
        return list(items.values())

    def dynamodb_saved_tables(self) -> List[str]:
        root = os.path.join(self.state_dir, "dynamodb")
        names = set()
        for entry in os.listdir(root) if os.path.isdir(root) else []:
            if ".tmp-" in entry:
                continue
            for suffix in (".items", ".journal", ".json"):
                if entry.endswith(suffix):
                    entry = entry[: -len(suffix)]
                    break
            names.add(entry)
        return sorted(names)

    @staticmethod
    def _key_of(table: Any, item: Dict[str, Any]) -> Dict[str, Any]:
        key = {table.hash_key_attr: item[table.hash_key_attr]}
        if table.range_key_attr and table.range_key_attr in item:
            key[table.range_key_attr] = item[table.range_key_attr]
        return key

    def keys_written(self, target: str, body: bytes) -> Optional[List[Tuple[str, Dict[str, Any]]]]:
        """(table, key) of each item a DynamoDB request writes; None: not known (mirror every table)."""
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return None
        operation = target.rsplit(".", 1)[-1]
        found: List[Tuple[str, Dict[str, Any]]] = []

        def add(name: str, op: Dict[str, Any]) -> None:
            table = self._table(name)
            if table is not None:
                found.append((name, op["Key"] if "Key" in op else self._key_of(table, op["Item"])))

        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            add(request["TableName"], request)
        elif operation == "BatchWriteItem":
            for name, requests in request.get("RequestItems", {}).items():
                for entry in requests:
                    add(name, entry.get("PutRequest") or entry.get("DeleteRequest"))
        elif operation == "TransactWriteItems":
            for entry in request.get("TransactItems", []):
                (_, op), = entry.items()
                if "TableName" in op and ("Key" in op or "Item" in op):
                    add(op["TableName"], op)
        else:
            return None  # CreateTable, DeleteTable, UpdateTimeToLive, ...
        return found


class PersistingMiddleware:
    """WSGI middleware: after a successful mutating request, mirror the state it changed."""

    def __init__(self, app: Callable, mirror: StateMirror) -> None:
        self.app = app
        self.mirror = mirror
        self.lock = threading.RLock()
        # Paused until restore() has loaded the folder: creating the (empty) resources first
        # must not overwrite the state they are about to be filled with.
        self.paused = True

    def __call__(self, environ: Dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        scope = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        service = scope.group(2) if scope else ""
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        method = environ.get("REQUEST_METHOD", "GET")
        mutating = (
            (service == "s3" and method in ("PUT", "POST", "DELETE"))
            # ReceiveMessage moves messages to the dead-letter queue past maxReceiveCount: mirror it too.
            or (service == "sqs" and (not target or target.endswith(".ReceiveMessage")
                                      or not _READ_ONLY_TARGETS.search(target)))
            or (service == "dynamodb" and target and not _READ_ONLY_TARGETS.search(target))
        )
        if not mutating:
            return self.app(environ, start_response)

        body_in = b""
        if service == "dynamodb":
            # The request names the items it writes: read it here, hand moto the same bytes.
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body_in = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body_in)
        captured: Dict[str, Any] = {}

        def capture(status: str, headers: List, exc_info: Any = None) -> Callable:
            captured["status"] = status
            captured["headers"] = headers
            captured["exc_info"] = exc_info
            return lambda _data: None

        body = b"".join(self.app(environ, capture))
        if captured.get("status", "500").startswith("2") and not self.paused:
            # The mirror reads the state as it is now (this request's change included) and writes
            # it under the lock, so the last mirror always follows the last change. The request
            # itself runs outside the lock: an SQS long poll must not hold up everything else.
            with self.lock:
                self._mirror(service, method, environ, target, body_in)
        start_response(captured["status"], captured["headers"], captured.get("exc_info"))
        return [body]

    def _mirror(self, service: str, method: str, environ: Dict[str, Any], target: str = "", body: bytes = b"") -> None:
        try:
            if service == "s3":
                path = urllib.parse.unquote(environ.get("PATH_INFO", "")).lstrip("/")
                bucket, _, key = path.partition("/")
                query = environ.get("QUERY_STRING", "")
                if key and "partNumber=" not in query and "uploads" not in query.split("&"):
                    self.mirror.s3_object(bucket, key)
                elif bucket and method == "POST":
                    self.mirror.s3_bucket(bucket)  # e.g. DeleteObjects
            elif service == "sqs":
                self.mirror.sqs_queues()
            elif service == "dynamodb":
                keys = self.mirror.keys_written(target, body)
                if keys is None:
                    self.mirror.dynamodb_tables()
                else:
                    self.mirror.dynamodb_items(keys)
        except Exception:  # noqa: BLE001 - never turn a served request into an error; log loudly
            log.exception("could not persist local cloud state after a %s request", service)


class _CachingDispatcher(DomainDispatcherApplication):
    """moto's dispatcher, remembering which app serves a signed request of the services we call.

    moto finds the backend for every request by walking its service modules (~1 ms, under a
    process-wide lock); for these services the signing scope alone decides it.
    """

    CACHED_SERVICES = frozenset({"sqs", "kinesis", "logs", "ecs", "events", "iam", "sts", "scheduler"})

    def __init__(self, create_app: Callable) -> None:
        super().__init__(create_app)
        self._by_scope: Dict[Tuple[str, str, str], Any] = {}

    def get_application(self, environ: Dict[str, Any]) -> Any:
        scope = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        path = environ.get("PATH_INFO", "")
        if scope is None or path.startswith(("/moto-api", "/latest/")):
            return super().get_application(environ)
        region, service = scope.group(1), scope.group(2)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if service == "dynamodb" and target.startswith("DynamoDB_20120810."):
            variant = "dynamodb"
        elif service == "s3" and not path.startswith("/v20180820/") and "s3-control" not in environ.get("HTTP_HOST", ""):
            variant = "s3"
        elif service in self.CACHED_SERVICES:
            variant = service
        else:
            return super().get_application(environ)
        key = (region, service, variant)
        app = self._by_scope.get(key)
        if app is None:
            app = self._by_scope[key] = super().get_application(environ)
        return app


class _FastMotoHandler(MotoRequestHandler):
    # werkzeug writes headers and body separately; without TCP_NODELAY every keep-alive request
    # from botocore waits out a delayed ACK (~40 ms).
    disable_nagle_algorithm = True


class LocalCloud:
    """moto server on 127.0.0.1:<port> with durable state in <state_dir>."""

    def __init__(self, state_dir: str, host: str = "127.0.0.1", port: int = 4567) -> None:
        self.state_dir = state_dir
        self.host = host
        self.port = port
        self.mirror = StateMirror(state_dir)
        self._server: Optional[BaseWSGIServer] = None
        self._app: Optional[PersistingMiddleware] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def endpoint_url(self) -> str:
        return "http://{}:{}".format(self.host, self.port)

    def start(self) -> None:
        # moto's backends are process-wide: start from empty, so what exists is what restore() loads.
        from moto.moto_api._internal.models import moto_api_backend

        moto_api_backend.reset()
        # moto walks an ECS task through RUNNING -> ... -> STOPPED a step per DescribeTasks call;
        # here a task runs until the process playing it exits (the ECS agent then stops it).
        from moto.moto_api import state_manager

        state_manager.set_transition("ecs::task", {"progression": "time", "seconds": 10 ** 9})
        moto_atomic.install()
        moto_query.install()  # a Query reads one partition and answers as JSON
        self._app = PersistingMiddleware(_CachingDispatcher(create_backend_app), self.mirror)
        self._server = make_server(self.host, self.port, self._app, threaded=True, request_handler=_FastMotoHandler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto", daemon=True)
        self._thread.start()
        log.info("moto server on %s (state in %s)", self.endpoint_url, self.state_dir)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def client(self, service: str) -> Any:
        return boto3.session.Session().client(
            service, region_name=REGION, endpoint_url=self.endpoint_url,
            aws_access_key_id="local", aws_secret_access_key="local",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
        )

    def restore(self) -> Dict[str, int]:
        """Load the state folder into the (freshly provisioned) resources. Returns counts.

        Mirroring stays paused until this has finished, so a crash half-way leaves the folder whole.
        """
        assert self._app is not None, "start() first"
        counts = self._load_state()
        self._app.paused = False
        self.mirror.sqs_queues()
        self.mirror.dynamodb_tables()
        return counts

    def _load_state(self) -> Dict[str, int]:
        counts = {"s3_objects": 0, "sqs_messages": 0, "dynamodb_items": 0}
        s3_root = os.path.join(self.state_dir, "s3")
        if os.path.isdir(s3_root):
            s3 = self.client("s3")
            existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
            for bucket in sorted(os.listdir(s3_root)):
                if bucket not in existing:
                    s3.create_bucket(Bucket=bucket)
                folder = os.path.join(s3_root, bucket)
                for name in sorted(os.listdir(folder)):
                    if ".tmp-" in name:
                        continue
                    with open(os.path.join(folder, name), "rb") as f:
                        s3.put_object(Bucket=bucket, Key=urllib.parse.unquote(name), Body=f.read())
                    counts["s3_objects"] += 1
        sqs_root = os.path.join(self.state_dir, "sqs")
        if os.path.isdir(sqs_root):
            sqs = self.client("sqs")
            for name in sorted(os.listdir(sqs_root)):
                folder = os.path.join(sqs_root, name)
                messages = []
                for entry in os.listdir(folder):
                    if entry.endswith(".json"):
                        with open(os.path.join(folder, entry)) as f:
                            messages.append(json.load(f))
                if not messages:
                    continue
                try:
                    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
                except sqs.exceptions.QueueDoesNotExist:
                    log.warning("state has %d messages for queue %s, which the template no longer declares",
                                len(messages), name)
                    continue
                messages.sort(key=lambda m: m.get("sent_timestamp") or 0)
                for m in messages:
                    kwargs: Dict[str, Any] = {"QueueUrl": url, "MessageBody": m["body"]}
                    if m.get("message_attributes"):
                        kwargs["MessageAttributes"] = m["message_attributes"]
                    if m.get("group_id"):
                        kwargs["MessageGroupId"] = m["group_id"]
                        kwargs["MessageDeduplicationId"] = m.get("deduplication_id") or m["body"][:128]
                    sqs.send_message(**kwargs)
                    counts["sqs_messages"] += 1
        from moto.dynamodb.models import dynamodb_backends

        backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION]
        for table_name in self.mirror.dynamodb_saved_tables():
            items = self.mirror.dynamodb_saved_items(table_name)
            if table_name not in backend.tables:
                if items:
                    log.warning("state has %d items for table %s, which the template no longer declares",
                                len(items), table_name)
                continue
            for item in items:
                backend.put_item(table_name, item)  # in-process: no request per item
                counts["dynamodb_items"] += 1
            legacy = os.path.join(self.state_dir, "dynamodb", table_name + ".json")
            if os.path.exists(legacy):
                os.remove(legacy)  # rewritten as a snapshot by restore()
        return counts
