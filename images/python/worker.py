"""Serverledge Python worker.

Started by the executor (/serverledge/executor) before any function code
arrives, so the interpreter is already warm. It reads one JSON request per
line from fd 3 and writes one JSON reply per line to fd 4; the function's own
stdout/stderr stay untouched (see docs/executor.md).

Requests:
  {"op": "load", "Dir": "/code", "Handler": "module.function"}
  {"op": "invoke", "Params": {...}, "Context": {...}, "ReturnOutput": true}
Replies (same shape for both):
  {"Success": bool, "Result": "<json>", "Output": "...", "Error": "...", "Duration": seconds}
"""

import contextlib
import importlib
import io
import json
import os
import sys
import time
import traceback

MAX_OUTPUT = 1 << 20  # bytes of captured output returned per invocation

_handler = None
_code_dir = None


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
    global _handler, _code_dir
    if _handler is not None:
        return {"Success": False, "Error": "a handler is already loaded"}
    handler = req.get("Handler") or ""
    code_dir = req.get("Dir") or "/code"
    module_name, _, func_name = handler.rpartition(".")
    if not module_name or not func_name:
        return {"Success": False, "Error": "handler %r must be module.function" % handler}
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
    _handler = func
    return {"Success": True}


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
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                value = _handler(params, context)
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
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
    return reply


def main():
    _raise_oom_score()
    requests = os.fdopen(3, "rb", buffering=1 << 16)
    replies = os.fdopen(4, "wb", buffering=1 << 16)
    ops = {"load": _load, "invoke": _invoke, "ping": lambda req: {"Success": True}}
    for line in requests:
        try:
            req = json.loads(line)
            op = ops.get(req.get("op"))
            reply = op(req) if op else {"Success": False, "Error": "unknown op %r" % req.get("op")}
        except Exception as exc:
            reply = {"Success": False, "Error": "worker: bad request: %s: %s" % (type(exc).__name__, exc)}
        replies.write(json.dumps(reply, separators=(",", ":")).encode())
        replies.write(b"\n")
        replies.flush()


if __name__ == "__main__":
    main()
