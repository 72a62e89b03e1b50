"""Serverledge Python worker.

Started by the executor (/serverledge/executor) before any function code
arrives, so the interpreter is already warm. It reads one JSON request per
line from fd 3 and writes one JSON reply per line to fd 4; the function's own
stdout/stderr stay untouched (see docs/executor.md).

Requests (each carries an "id" the reply echoes first):
  {"op": "load", "id": 1, "Dir": "/code", "Handler": "module.function", "Concurrency": 1, "Env": {"NAME": "value"}}
  {"op": "invoke", "id": 2, "Params": {...}, "Context": {...}, "ReturnOutput": true}
Replies (same shape for both):
  {"id": 2, "Success": bool, "Result": "<json>", "Output": "...", "Error": "...", "Duration": seconds}

With a Concurrency above 1, invocations run on up to that many threads and
their replies may come back in any order. Output is captured per invocation:
what the handler's own thread writes to sys.stdout and sys.stderr.
"""

import concurrent.futures
import importlib
import io
import json
import os
import sys
import threading
import time
import traceback

MAX_OUTPUT = 1 << 20  # bytes of captured output returned per invocation

_handler = None
_code_dir = None
_pool = None  # thread pool of a concurrent handler, None for one at a time
_reply_lock = threading.Lock()
_local = threading.local()  # .buf: the capture buffer of this thread's invocation


class _Capture(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr: a thread whose invocation asked
    for its output writes into that invocation's buffer, any other thread
    into the real stream."""

    def __init__(self, real):
        self._real = real
        self.dirty = False  # written to the real stream since the last flush

    def write(self, s):
        buf = getattr(_local, "buf", None)
        if buf is None:
            self.dirty = True
            return self._real.write(s)
        return buf.write(s)

    def flush(self):
        if getattr(_local, "buf", None) is None:
            self.dirty = False
            self._real.flush()

    def writable(self):
        return True

    def isatty(self):
        return False

    def fileno(self):
        return self._real.fileno()

    @property
    def encoding(self):
        return self._real.encoding

    @property
    def buffer(self):
        return self._real.buffer


def _raise_oom_score():
    # Make the kernel's OOM killer pick this process, not the executor.
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass


def _describe(exc):
    """Returns "TypeName: message" plus a short tail of the traceback."""
    text = "%s: %s" % (type(exc).__name__, exc)
    frames = traceback.extract_tb(exc.__traceback__)
    if _code_dir:
        frames = [f for f in frames if f.filename.startswith(_code_dir)] or frames[-1:]
    tail = frames[-2:]
    if tail:
        text += "".join(
            '\n  File "%s", line %s, in %s' % (os.path.relpath(f.filename, _code_dir or "/"), f.lineno, f.name)
            for f in tail
        )
    return text


def _load(req):
    global _handler, _code_dir, _pool
    if _handler is not None:
        return {"Success": False, "Error": "a handler is already loaded"}
    handler = req.get("Handler") or ""
    code_dir = req.get("Dir") or "/code"
    module_name, _, func_name = handler.rpartition(".")
    if not module_name or not func_name:
        return {"Success": False, "Error": "handler %r must be module.function" % handler}
    env = req.get("Env") or {}
    if not isinstance(env, dict):
        return {"Success": False, "Error": "Env must be an object"}
    for name, value in env.items():
        os.environ[str(name)] = str(value)
    _code_dir = os.path.realpath(code_dir)
    if _code_dir not in sys.path:
        sys.path.insert(0, _code_dir)
    try:
        os.chdir(_code_dir)
        importlib.invalidate_caches()
        module = importlib.import_module(module_name)
    except BaseException as exc:  # SyntaxError, ImportError, SystemExit, anything the module raises
        return {"Success": False, "Error": "cannot import %s: %s" % (module_name, _describe(exc))}
    func = getattr(module, func_name, None)
    if not callable(func):
        return {"Success": False, "Error": "module %s has no function %s" % (module_name, func_name)}
    try:
        concurrency = int(req.get("Concurrency") or 1)
    except (TypeError, ValueError):
        return {"Success": False, "Error": "bad Concurrency %r" % req.get("Concurrency")}
    if concurrency > 1:
        _pool = concurrent.futures.ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="invoke")
    _handler = func
    return {"Success": True, "Concurrent": True}


def _encode_result(value):
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return json.dumps(value, default=str)


def _invoke(req):
    if _handler is None:
        return {"Success": False, "Error": "no handler loaded"}
    params = req.get("Params")
    if params is None:
        params = {}
    context = req.get("Context")
    if context is None:
        context = {}
    capture = bool(req.get("ReturnOutput"))
    reply = {"Success": True, "Result": ""}
    buf = None
    start = time.perf_counter()
    try:
        if capture:
            buf = io.StringIO()
            _local.buf = buf
            try:
                value = _handler(params, context)
            finally:
                _local.buf = None
        else:
            value = _handler(params, context)
        reply["Duration"] = time.perf_counter() - start
        reply["Result"] = _encode_result(value)
    except BaseException as exc:  # the function's failure is reported, never fatal
        reply["Duration"] = time.perf_counter() - start
        reply["Success"] = False
        reply["Error"] = _describe(exc)
    if buf is not None:
        out = buf.getvalue()
        if len(out) > MAX_OUTPUT:
            out = out[:MAX_OUTPUT] + "\n[output truncated]"
        reply["Output"] = out
    else:
        # Output not captured goes to the container log; flush it now.
        for stream in (sys.stdout, sys.stderr):
            if getattr(stream, "dirty", True):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
    return reply


_encode = json.JSONEncoder(separators=(",", ":")).encode


def _send(replies, rid, reply):
    body = _encode(reply)
    if type(rid) is int and len(body) > 2:
        data = ('{"id":%d,%s\n' % (rid, body[1:])).encode()
    else:
        if rid is not None:
            body = _encode(dict({"id": rid}, **reply))
        data = (body + "\n").encode()
    with _reply_lock:
        replies.write(data)
        replies.flush()


def _invoke_async(replies, rid, req):
    try:
        reply = _invoke(req)
    except BaseException as exc:  # never lose a reply
        reply = {"Success": False, "Error": "worker: %s: %s" % (type(exc).__name__, exc)}
    _send(replies, rid, reply)


def main():
    _raise_oom_score()
    sys.stdout = _Capture(sys.stdout)
    sys.stderr = _Capture(sys.stderr)
    requests = os.fdopen(3, "rb", buffering=1 << 16)
    replies = os.fdopen(4, "wb", buffering=1 << 16)
    ops = {"load": _load, "invoke": _invoke, "ping": lambda req: {"Success": True}}
    for line in requests:
        rid = None
        try:
            req = json.loads(line)
            rid = req.get("id")
            op = req.get("op")
            if op == "invoke" and _pool is not None:
                _pool.submit(_invoke_async, replies, rid, req)
                continue
            fn = ops.get(op)
            reply = fn(req) if fn else {"Success": False, "Error": "unknown op %r" % op}
        except Exception as exc:
            reply = {"Success": False, "Error": "worker: bad request: %s: %s" % (type(exc).__name__, exc)}
        _send(replies, rid, reply)


if __name__ == "__main__":
    main()
