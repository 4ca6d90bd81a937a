"""Runs moto's server on loopback for the local stack and the tests.

Prints "PORT <n>" once it listens, then serves until its standard input
closes, so the emulator dies with the process that started it (a crashed test
run leaves no orphan server behind).

`emulator.py --forks COMMAND...` (how `make test` runs the tests) warms moto
up once and runs COMMAND, handing each connection to a Unix socket named in
MEDREC_EMULATOR_FORKS a fresh emulator: a fork, which reports its port the
same way and serves until that connection closes.

Corrections make moto's DynamoDB behave like DynamoDB under concurrency
(measured on moto 5.2.5, see docs/decisions/0002-emulator.md):
- Requests are handled one at a time. moto's backends are not thread-safe, and
  a cancelled TransactWriteItems restores a snapshot of the whole table, which
  silently undoes writes that other threads committed meanwhile. DynamoDB
  transactions are serializable; a serialized emulator is too.
- TransactWriteItems checks every condition first and applies the writes only
  if all pass, instead of deep-copying each touched table for rollback (a cost
  that grew with table size: 26 ms to 300 ms per transaction over 20 creates).
- A Query on a table's own key reads its partition, as DynamoDB does, instead
  of listing and sorting every item of the table first (a cost that grew with
  the table: 50 ms per Query after a few hundred patients). A Query on an
  index starts from the items with its hash key, unsorted, instead of every
  item of the table sorted (moto sorts them in the index's order after).
  Same results.

More changes only save time (decision 0012, "Where cold CI time goes"):
item answers are written as JSON directly instead of through moto's shape
walk, moto's list of its own modules is read once instead of per request,
each answer leaves in one socket write, connections are kept open between
requests, and a KMS key's key pair is made when first used. The direct JSON
was compared with the shape walk's, answer by answer, over about 8,000
answers of twelve e2e suites (every operation listed in _PLAIN_OPERATIONS):
all equal.
"""
import base64
import importlib
import io
import json
import logging
import os
import random
import select
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import types
from datetime import datetime

from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto import backends
from moto.core.responses import ActionResult
from moto.moto_api._internal import mock_random
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends
from moto.dynamodb.models.table import Table
import moto.kms.models as kms_models
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
import werkzeug.serving
import werkzeug.test
from werkzeug.serving import make_server


def _key_of(table, item):
    """An item's key attributes, by the moto table's key schema."""
    return {n: item[n] for n in (table.hash_key_attr, table.range_key_attr) if n is not None}


def _item_key(backend, table_name, op_type, op):
    if op_type == "Put":
        return _key_of(backend.get_table(table_name), op["Item"])
    return op["Key"]


def transact_write_items(self, transact_items):
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    seen = set()
    plan, errors = [], []
    for item in transact_items:
        if len(item) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(item.items()))
        if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
            raise ValueError("Unsupported transaction operation")
        table_name = op["TableName"]
        key = _item_key(self, table_name, op_type, op)
        ident = (str(table_name), str(dict(sorted(key.items()))))
        if ident in seen:
            raise MultipleTransactionsException()
        seen.add(ident)
        condition = op.get("ConditionExpression")
        error = (None, None, None)
        if condition is not None:
            current = self.get_item(table_name, key)
            expr = get_filter_expression(
                condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
            )
            if not expr.expr(current):
                old = None
                if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                    old = current.to_json()["Attributes"]
                error = ("ConditionalCheckFailed", ConditionalCheckFailed().message, old)
        errors.append(error)
        plan.append((op_type, op, table_name, key))
    if any(code is not None for code, _, _ in errors):
        raise TransactionCanceledException(errors)
    for op_type, op, table_name, key in plan:
        names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
        if op_type == "Put":
            self.put_item(table_name, op["Item"], expression_attribute_names=names, expression_attribute_values=values)
        elif op_type == "Delete":
            self.delete_item(table_name, key, expression_attribute_names=names, expression_attribute_values=values)
        elif op_type == "Update":
            self.update_item(
                table_name,
                key,
                update_expression=op["UpdateExpression"],
                expression_attribute_names=names,
                expression_attribute_values=values,
            )


DynamoDBBackend.transact_write_items = transact_write_items


class _KeyPairOnFirstUse:
    """Stands for the key pair moto makes for every KMS key, made when first
    used: moto gives even a symmetric key an RSA-2048 pair, which it never
    signs with, at 50-110 ms per key created."""

    def __init__(self, key_spec):
        self._key_spec = key_spec
        self._pair = None

    def __getattr__(self, name):
        if self._pair is None:
            self._pair = _generate_private_key(self._key_spec)
        return getattr(self._pair, name)


_generate_private_key = kms_models.generate_private_key
kms_models.generate_private_key = _KeyPairOnFirstUse

_table_query = Table.query


# A sort-key condition as a test on the key's text, for string keys (DynamoDB
# orders strings by their UTF-8 bytes: Python's code-point order).
_STRING_TESTS = {
    "EQ": lambda k, v: k == v[0],
    "LT": lambda k, v: k < v[0],
    "LE": lambda k, v: k <= v[0],
    "GT": lambda k, v: k > v[0],
    "GE": lambda k, v: k >= v[0],
    "BEGINS_WITH": lambda k, v: k.startswith(v[0]),
    "BETWEEN": lambda k, v: v[0] <= k <= v[1],
}
for _alias, _name in (("=", "EQ"), ("<", "LT"), ("<=", "LE"), (">", "GT"), (">=", "GE")):
    _STRING_TESTS[_alias] = _STRING_TESTS[_name]


def _arg(args, kwargs, name, position, default=None):
    return kwargs.get(name, args[position] if len(args) > position else default)


def query_one_partition(self, hash_key, *args, **kwargs):
    if _arg(args, kwargs, "index_name", 6) is not None:
        return _query_index(self, hash_key, *args, **kwargs)
    if not self.range_key_attr or hash_key is None:
        return _table_query(self, hash_key, *args, **kwargs)
    partition = list(self.items.get(hash_key, {}).values())
    # moto sorts and sizes every item of the partition, and walks the pages
    # before the one asked for, with its own typed comparisons; for a
    # patient's record of thousands of items that made every page of a
    # Query cost the whole partition. On string sort keys the condition, the
    # order, the start of the page and its length are applied here first:
    # the same answer from what the page needs.
    comparison, operands = _arg(args, kwargs, "range_comparison", 0), _arg(args, kwargs, "range_objs", 1)
    test = comparison and _STRING_TESTS.get(comparison.upper())
    strings = all(i.range_key.type == "S" for i in partition) and all(o.type == "S" for o in operands or [])
    if strings:
        if test:
            values = [o.value for o in operands]
            partition = [i for i in partition if test(i.range_key.value, values)]
        elif comparison:
            partition = [i for i in partition if i.range_key.compare(comparison, operands)]
        partition.sort(key=lambda i: i.range_key.value)
        forward = _arg(args, kwargs, "scan_index_forward", 4, True) is not False
        start = (_arg(args, kwargs, "exclusive_start_key", 3) or {}).get(self.range_key_attr, {}).get("S")
        if start is not None:
            partition = [i for i in partition if (i.range_key.value > start) == forward and i.range_key.value != start]
        limit = _arg(args, kwargs, "limit", 2)
        if limit:
            # One more than the page, so moto still sees that a next exists.
            partition = partition[: limit + 1] if forward else partition[-(limit + 1) :]
    elif comparison:
        partition = [i for i in partition if i.range_key.compare(comparison, operands)]
    return _query_over(self, partition, hash_key, *args, **kwargs)


def _query_index(self, hash_key, *args, **kwargs):
    # For an index, moto sorts every item of the table, keeps those with the
    # index's hash key, then sorts those in the index's order (its keys, then
    # the table's: a total order, so the first sort decides nothing). The
    # items reach it unsorted, those with another index hash key left out by
    # the test moto applies next (a key attribute present and equal). A
    # sweep's index Query cost the whole table, sorted, as the table grew.
    conditions = kwargs.get("hash_key_conditions") or []
    items = [i for h in self.items.values() for i in (h.values() if self.range_key_attr else [h])]
    items = [i for i in items if all(i.attrs.get(n) is not None and i.attrs[n] == v for n, v in conditions)]
    return _query_over(self, items, hash_key, *args, **kwargs)


def _query_over(self, items, hash_key, *args, **kwargs):
    """moto's own Query, over `items` instead of every item of the table."""
    self.all_items = lambda: items
    try:
        return _table_query(self, hash_key, *args, **kwargs)
    finally:
        del self.all_items


Table.query = query_one_partition

# Item answers (GetItem, Query, BatchGetItem, a stream's GetRecords...) are
# plain data once moto has made them dicts: written as JSON directly rather
# than walked member by member against the botocore shape model, which took
# a third of the emulator's time per request. As the shape walk does: only
# the output's own members, absent members left out, bytes as base64 and
# instants as epoch seconds.
_PLAIN_OPERATIONS = {
    ("dynamodb", name)
    for name in ("GetItem", "Query", "Scan", "BatchGetItem", "PutItem", "UpdateItem")
} | {("dynamodbstreams", "GetRecords")}


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000) / 1000
    raise TypeError(type(value).__name__)


_shaped_result = ActionResult.execute_result


def plain_result(self, context):
    model = context.operation_model
    if (model.service_model.service_name, model.name) in _PLAIN_OPERATIONS:
        try:
            members = model.output_shape.members
            body = json.dumps({k: _plain(v) for k, v in self.result.items() if k in members and v is not None})
        except TypeError:
            return _shaped_result(self, context)
        return 200, {"Content-Type": "application/x-amz-json-1.0"}, body
    return _shaped_result(self, context)


ActionResult.execute_result = plain_result

# moto lists its own package directory on every request to route it by host
# (a directory listing and 200 stat calls): the list is fixed, so once.
_moto_modules = tuple(backends.list_of_moto_modules())
backends.list_of_moto_modules = lambda: _moto_modules

_lock = threading.Lock()
_app = DomainDispatcherApplication(create_backend_app)
# Calls per JSON-protocol operation (X-Amz-Target) and per S3 object
# operation, for the benchmarks that
# count AWS calls per request: GET /_medrec/calls reads, DELETE resets.
_calls = {}


def s3_operation(environ):
    """S3 speaks REST: name object calls by method (path-style /bucket/key)."""
    parts = environ.get("PATH_INFO", "").strip("/").split("/", 1)
    if len(parts) < 2 or environ.get("QUERY_STRING", "").startswith(("uploads", "list-type")):
        return None
    verb = {"GET": "GetObject", "PUT": "PutObject", "DELETE": "DeleteObject", "HEAD": "HeadObject"}
    op = verb.get(environ["REQUEST_METHOD"])
    return op and f"S3.{op}"


# DynamoDB request units the successful calls consumed, priced as on-demand
# capacity is (the developer guide's "read/write request units"): a write
# costs a unit per KB of the larger of the item before and after, a read a
# unit per 4 KB of the whole item (projections do not reduce it), half for
# an eventually consistent read, a Query or Scan the sum of the items it
# read rounded once, transactions twice. GET /_medrec/units reads, DELETE
# resets. Failed calls (a condition not met) are not counted.
_units = {"read": 0.0, "write": 0.0, "unpriced": 0}
_units_on = False
_WRITES = {"PutItem", "UpdateItem", "DeleteItem"}
_UNIT_OPERATIONS = _WRITES | {"GetItem", "BatchGetItem", "Query", "Scan", "BatchWriteItem", "TransactWriteItems"}


def _value_size(value):
    (kind, v), = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        digits = v.lstrip("-").replace(".", "").strip("0")
        return (len(digits) + 1) // 2 + 1
    if kind == "B":
        # Raw bytes as moto stores them, base64 text as the wire carries them.
        return len(v) if isinstance(v, bytes) else len(v) * 3 // 4 - v.count("=")
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(_value_size({kind[0]: e}) for e in v)
    if kind == "L":
        return 3 + sum(1 + _value_size(e) for e in v)
    return 3 + sum(1 + len(k.encode()) + _value_size(e) for k, e in v.items())


def _item_size(attributes):
    return sum(len(name.encode()) + _value_size(value) for name, value in (attributes or {}).items())


def _backend(table):
    """The moto backend holding this table (the stack's tables have unique names)."""
    for regions in dynamodb_backends.values():
        for backend in regions.values():
            if table in backend.tables:
                return backend
    raise KeyError(table)


def _stored_size(table, key):
    item = _backend(table).get_item(table, key)
    return _item_size(item.to_json()["Attributes"]) if item else 0


def _writes(op, request):
    """(table, key, size of the item written or None) per item a write call touches."""
    if op in _WRITES:
        table, item = request["TableName"], request.get("Item")
        key = _item_key(_backend(table), table, "Put" if item else op, request)
        return [(table, key, _item_size(item) if item else None)]
    if op == "BatchWriteItem":
        out = []
        for table, writes in request["RequestItems"].items():
            for w in writes:
                if "PutRequest" in w:
                    item = w["PutRequest"]["Item"]
                    out.append((table, _item_key(_backend(table), table, "Put", w["PutRequest"]), _item_size(item)))
                else:
                    out.append((table, w["DeleteRequest"]["Key"], None))
        return out
    if op == "TransactWriteItems":
        out = []
        for entry in request["TransactItems"]:
            (kind, body), = entry.items()
            table = body["TableName"]
            key = _item_key(_backend(table), table, kind, body)
            out.append((table, key, _item_size(body["Item"]) if kind == "Put" else None))
        return out
    return []


def _read_units(op, request, answer):
    strong = 1.0 if request.get("ConsistentRead") else 0.5
    if op == "GetItem":
        item = answer.get("Item")
        return strong * -(-_stored_size(request["TableName"], request["Key"]) // 4096) if item else 0.0
    if op == "BatchGetItem":
        # By the keys asked for: a projection may leave the keys out of the
        # answer, and every key asked for is answered (none left unprocessed).
        total = 0.0
        for table, asked in request["RequestItems"].items():
            strong = 1.0 if asked.get("ConsistentRead") else 0.5
            sizes = [_stored_size(table, key) for key in asked["Keys"]]
            total += sum(strong * -(-size // 4096) for size in sizes if size)
        return total
    if op in ("Query", "Scan"):
        table, items = request["TableName"], answer.get("Items", [])
        if request.get("IndexName"):
            # An index holds its own (projected) copies: their size is read.
            size = sum(_item_size(item) for item in items)
        else:
            schema = _backend(table).get_table(table)
            size = sum(_stored_size(table, _key_of(schema, item)) for item in items)
        return strong * max(1, -(-size // 4096))
    return 0.0


def _count_units(op, request, before, answer):
    if op in ("GetItem", "BatchGetItem", "Query", "Scan"):
        _units["read"] += _read_units(op, request, answer)
        return
    factor = 2 if op == "TransactWriteItems" else 1
    for (table, key, written), old in zip(_writes(op, request), before):
        new = written if written is not None else _stored_size(table, key)
        _units["write"] += factor * max(1, -(-max(old, new) // 1024))


def _counted(op, environ, start_response):
    """Serves a DynamoDB call and adds the request units it consumed."""
    # The body as KeepAliveRequestHandler buffered it; moto reads it after.
    body = environ["wsgi.input"].getvalue()
    try:
        request = json.loads(body or b"{}")
        before = [_stored_size(table, key) for table, key, _ in _writes(op, request)]
    except (KeyError, ValueError, TypeError, AttributeError):
        # A call moto will refuse (no such table, a malformed item).
        return list(_app(environ, start_response))
    status = []

    def recording_start_response(code, headers, *rest):
        status.append(code)
        return start_response(code, headers, *rest)

    answer = list(_app(environ, recording_start_response))
    if status[0].startswith("200"):
        try:
            _count_units(op, request, before, json.loads(b"".join(answer) or b"{}"))
        except (KeyError, ValueError, TypeError, AttributeError):
            # Never the answer's problem: the benchmark sees the call unpriced.
            _units["unpriced"] += 1
    return answer


def serialized_app(environ, start_response):
    global _units_on
    with _lock:
        path = environ.get("PATH_INFO")
        if path in ("/_medrec/calls", "/_medrec/units"):
            counts = _calls if path == "/_medrec/calls" else _units
            answer = json.dumps(counts).encode()
            if environ["REQUEST_METHOD"] == "DELETE" and counts is _calls:
                _calls.clear()
            elif environ["REQUEST_METHOD"] == "DELETE":
                _units.update(read=0.0, write=0.0, unpriced=0)
            # Units are counted only once asked for: the work per call (the
            # stored item looked up before and after) is a benchmark's.
            _units_on = _units_on or counts is _units
            start_response("200 OK", [("Content-Type", "application/json")])
            return [answer]
        target = environ.get("HTTP_X_AMZ_TARGET") or s3_operation(environ)
        if target:
            _calls[target] = _calls.get(target, 0) + 1
        op = target.rsplit(".", 1)[-1] if target and target.startswith("DynamoDB_") else None
        if _units_on and op in _UNIT_OPERATIONS:
            return _counted(op, environ, start_response)
        return list(_app(environ, start_response))


class KeepAliveRequestHandler(MotoRequestHandler):
    """Serves every request of a connection, instead of closing it after one.

    Werkzeug's development server closes each connection because
    http.server cannot skip a body the application left unread; this handler
    reads each body whole before the application sees it, so the stream
    always stands at the next request line. A connection per call cost the
    emulator a thread start, an accept and a close per call (a fifth of its
    time), and the clients a connect each.

    It also answers with one socket write: the status line and headers are
    kept until the body is written (werkzeug flushes after each write).
    """

    wbufsize = 1 << 16

    def make_environ(self):
        environ = super().make_environ()
        length = environ.get("CONTENT_LENGTH") or "0"
        if environ.pop("wsgi.input_terminated", False):
            body = environ["wsgi.input"].read()
        elif length.isdigit():
            body = self.rfile.read(int(length))
        else:
            # A length that is not a number: where this body ends is unknown.
            self.close_connection = True
            body = b""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return environ

    def send_header(self, keyword, value):
        # Werkzeug says "Connection: close" on every answer. The connection
        # stays open when the request allows it (HTTP/1.1, no "Connection:
        # close" from the client) and nothing has decided to close it (a
        # body of unknown length): then the header would be untrue.
        if keyword.lower() == "connection" and value.lower() == "close" and not self.close_connection:
            return
        super().send_header(keyword, value)


class _NoDrain:
    """Werkzeug reads a connection for 10 ms after each answer and discards
    what arrives, safe only because it closes every connection: on a kept
    connection that is the client's next request. Bodies are read whole
    before the application runs (KeepAliveRequestHandler), so there is
    nothing to drain."""

    def register(self, *args):
        pass

    def select(self, timeout=None):
        return []

    def close(self):
        pass


werkzeug.serving.selectors = types.SimpleNamespace(DefaultSelector=_NoDrain, EVENT_READ=selectors.EVENT_READ)
logging.getLogger("werkzeug").setLevel(logging.ERROR)


def serve(report, wait_closed):
    """Serves on a free loopback port, told to `report`, until `wait_closed`
    returns."""
    server = make_server("127.0.0.1", 0, serialized_app, threaded=True, request_handler=KeepAliveRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    report(server.server_port)
    wait_closed()
    server.shutdown()


# One read-only call per service the stack provisions: moto builds each
# service's application and backend on its first request (with its imports),
# 0.4 s of every test's provisioning when each test starts its own emulator.
_WARM_UP = [
    ("dynamodb", "DynamoDB_20120810.ListTables", "application/x-amz-json-1.0"),
    ("dynamodb", "DynamoDBStreams_20120810.ListStreams", "application/x-amz-json-1.0"),
    ("kms", "TrentService.ListKeys", "application/x-amz-json-1.1"),
    ("sqs", "AmazonSQS.ListQueues", "application/x-amz-json-1.0"),
    ("events", "AWSEvents.ListEventBuses", "application/x-amz-json-1.1"),
    ("secretsmanager", "secretsmanager.ListSecrets", "application/x-amz-json-1.1"),
    ("s3", None, None),
]


def warm_up():
    client = werkzeug.test.Client(_app)
    for service, target, content_type in _WARM_UP:
        headers = {
            "Authorization": f"AWS4-HMAC-SHA256 Credential=warm/20260101/us-east-1/{service}/aws4_request, "
            "SignedHeaders=host, Signature=0",
        }
        if target:
            headers.update({"X-Amz-Target": target, "Content-Type": content_type})
            answer = client.post("/", headers=headers, data="{}")
        else:
            answer = client.get("/", headers=headers)
        if answer.status_code != 200:
            raise SystemExit(f"warm-up {target or service}: {answer.status_code}")
    # What moto imports on first use: its Lambda code on the first write to a
    # table with a stream (25-130 ms), JSONPath on the first event a rule
    # sends, OpenSSL's bindings on the first key pair.
    for module in ("moto.awslambda.utils", "jsonpath_ng.ext", "cryptography.hazmat.backends.openssl"):
        importlib.import_module(module)


def forking_server(command):
    """Runs `command` while serving, at a Unix socket named to it in
    MEDREC_EMULATOR_FORKS, a fresh emulator per connection: a fork of this
    process, warmed up once, that reports its port and serves until the
    connection closes. A test process starts its emulator in milliseconds
    instead of a second. Exits with the command's status."""
    warm_up()
    directory = tempfile.mkdtemp(prefix="medrec-emulator-")
    path = os.path.join(directory, "forks")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(128)
    runner = subprocess.Popen(command, env={**os.environ, "MEDREC_EMULATOR_FORKS": path})
    try:
        while True:
            if select.select([listener], [], [], 0.5)[0]:
                connection, _ = listener.accept()
                if os.fork() == 0:
                    listener.close()
                    # Each emulator draws its own ids and keys.
                    random.seed()
                    mock_random.seed()
                    serve(lambda p: connection.sendall(f"PORT {p}\n".encode()), lambda: _until_closed(connection))
                    os._exit(0)
                connection.close()
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    pid = 0
                if pid == 0:
                    break
                if pid == runner.pid:
                    return os.waitstatus_to_exitcode(status)
    finally:
        listener.close()
        shutil.rmtree(directory, ignore_errors=True)


def _until_closed(connection):
    while connection.recv(4096):
        pass


if __name__ == "__main__":
    if sys.argv[1:2] == ["--forks"]:
        sys.exit(forking_server(sys.argv[2:]))
    serve(lambda p: print(f"PORT {p}", flush=True), sys.stdin.read)
