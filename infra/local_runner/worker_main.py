"""A warm function container: runs inside the function's own runtime (Python 3.12 or 3.7).

Started by the local runner as `<runtime python> worker_main.py <code_dir> <handler>`, with the
function's environment. It imports the handler once (the cold start), then serves invocations
over stdin/stdout: each message is a 4-byte big-endian length and a JSON document. Anything the
function prints or logs goes to stderr, which the runner shows prefixed with the function name.

Kept compatible with Python 3.7: it runs in the model runtime too.
"""
import importlib
import json
import os
import struct
import sys
import time
import traceback
import uuid


def _read_message(stream):
    header = stream.read(4)
    if len(header) < 4:
        return None
    (length,) = struct.unpack(">I", header)
    return json.loads(stream.read(length).decode("utf-8"))


def _write_message(stream, message):
    data = json.dumps(message, default=str).encode("utf-8")
    stream.write(struct.pack(">I", len(data)) + data)
    stream.flush()


class LambdaContext(object):
    """The attributes of AWS Lambda's context object that handlers and Powertools read."""

    def __init__(self, function_name, memory_mb, timeout_s, request_id):
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = "arn:aws:lambda:{}:123456789012:function:{}".format(
            os.environ.get("AWS_REGION", "us-east-1"), function_name)
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = request_id
        self.log_group_name = "/aws/lambda/" + function_name
        self.log_stream_name = "local"
        self._deadline = time.time() + timeout_s

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.time()) * 1000))


def _load_handler(handler):
    module_name, _, attr = handler.rpartition(".")
    module = importlib.import_module(module_name.replace("/", "."))
    return getattr(module, attr)


def main():
    code_dir, handler_name = sys.argv[1], sys.argv[2]
    # The protocol owns the real stdout; everything else printed goes to stderr.
    protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    protocol_in = sys.stdin.buffer

    sys.path.insert(0, code_dir)
    os.chdir(code_dir)
    started = time.time()
    try:
        handler = _load_handler(handler_name)
    except Exception as exc:  # the runner reports the failed cold start
        traceback.print_exc()
        _write_message(protocol_out, {"ready": False, "error": "{}: {}".format(type(exc).__name__, exc)})
        return 1
    _write_message(protocol_out, {"ready": True, "init_s": round(time.time() - started, 3), "pid": os.getpid()})

    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "function")
    memory_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
    timeout_s = int(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT", "3"))
    while True:
        message = _read_message(protocol_in)
        if message is None:
            return 0
        request_id = message.get("request_id") or str(uuid.uuid4())
        context = LambdaContext(function_name, memory_mb, timeout_s, request_id)
        try:
            result = handler(message["event"], context)
            reply = {"ok": True, "result": result}
        except Exception as exc:
            traceback.print_exc()
            reply = {"ok": False, "error": {"errorType": type(exc).__name__, "errorMessage": str(exc)}}
        _write_message(protocol_out, reply)


if __name__ == "__main__":
    sys.exit(main())
