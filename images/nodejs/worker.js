'use strict';
// Serverledge Node.js worker.
//
// Started by the executor (/serverledge/executor) before any function code
// arrives, so the runtime is already warm. It reads one JSON request per line
// from fd 3 and writes one JSON reply per line to fd 4; the function's own
// stdout/stderr stay untouched (see docs/executor.md).
//
// Requests (each carries an "id" the reply echoes first):
//   {"op": "load", "id": 1, "Dir": "/code", "Handler": "file.js", "Concurrency": 1, "Env": {"NAME": "value"}}
//   {"op": "invoke", "id": 2, "Params": {...}, "Context": {...}, "ReturnOutput": true}
// Replies (same shape for both):
//   {"id": 2, "Success": bool, "Result": "<json>", "Output": "...", "Error": "...", "Duration": seconds}
//
// Requests are handled as they arrive, so with a Concurrency above 1 the
// executor's invocations overlap (async handlers) and their replies may come
// back in any order. Output is captured per invocation through
// AsyncLocalStorage: whatever runs in the invocation's async context.

const { AsyncLocalStorage } = require('async_hooks');
const fs = require('fs');
const net = require('net');
const path = require('path');
const url = require('url');

const MAX_OUTPUT = 1 << 20; // characters of captured output returned per invocation
const REQUEST_FD = 3;
const REPLY_FD = 4;

let handler = null;
let codeDir = null;

// The capture buffer of the invocation whose async context is running, if
// it asked for its output.
const captured = new AsyncLocalStorage();
const realStdoutWrite = process.stdout.write;
const realStderrWrite = process.stderr.write;

function captureWrites(stream, real) {
  stream.write = function (chunk, encoding, cb) {
    const store = captured.getStore();
    if (store === undefined) {
      return real.apply(stream, arguments);
    }
    if (store.size < MAX_OUTPUT) {
      const s = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      store.chunks.push(s);
      store.size += s.length;
    }
    if (typeof encoding === 'function') {
      encoding();
    } else if (typeof cb === 'function') {
      cb();
    }
    return true;
  };
}

function raiseOOMScore() {
  try {
    fs.writeFileSync('/proc/self/oom_score_adj', '1000');
  } catch (_) {
    // Not fatal: outside a container the file may not be writable.
  }
}

function describe(err) {
  if (!(err instanceof Error)) {
    return 'Error: ' + String(err);
  }
  let text = (err.name || 'Error') + ': ' + err.message;
  if (typeof err.stack === 'string') {
    const frames = err.stack.split('\n').filter((l) => l.trimStart().startsWith('at '));
    const own = codeDir ? frames.filter((l) => l.includes(codeDir)) : [];
    const tail = (own.length > 0 ? own : frames).slice(0, 2);
    if (tail.length > 0) {
      text += '\n' + tail.join('\n');
    }
  }
  return text;
}

function resolveEntry(dir, name) {
  const candidates = [name];
  if (!/\.(c|m)?js$/.test(name)) {
    candidates.push(name + '.js');
  }
  for (const c of candidates) {
    const full = path.resolve(dir, c);
    if (fs.existsSync(full)) {
      return full;
    }
  }
  return null;
}

async function load(req) {
  if (handler !== null) {
    return { Success: false, Error: 'a handler is already loaded' };
  }
  const name = req.Handler || '';
  const env = req.Env || {};
  for (const key of Object.keys(env)) {
    process.env[key] = String(env[key]);
  }
  codeDir = fs.realpathSync(req.Dir || '/code');
  if (name === '') {
    return { Success: false, Error: 'handler must name a .js file' };
  }
  const file = resolveEntry(codeDir, name);
  if (file === null) {
    return { Success: false, Error: 'handler file ' + JSON.stringify(name) + ' not found in the code archive' };
  }
  let mod;
  try {
    process.chdir(codeDir);
    if (file.endsWith('.mjs')) {
      mod = await import(url.pathToFileURL(file).href);
    } else {
      mod = require(file);
    }
  } catch (err) {
    return { Success: false, Error: 'cannot load ' + name + ': ' + describe(err) };
  }
  let fn = null;
  if (typeof mod === 'function') {
    fn = mod;
  } else if (mod && typeof mod.handler === 'function') {
    fn = mod.handler;
  } else if (mod && typeof mod.default === 'function') {
    fn = mod.default;
  }
  if (fn === null) {
    return { Success: false, Error: name + ' exports neither a function nor a handler function' };
  }
  handler = fn;
  return { Success: true, Concurrent: true };
}

function encodeResult(value) {
  if (value === undefined) {
    return 'null';
  }
  try {
    const s = JSON.stringify(value);
    return s === undefined ? 'null' : s;
  } catch (_) {
    return JSON.stringify(String(value));
  }
}

async function invoke(req) {
  if (handler === null) {
    return { Success: false, Error: 'no handler loaded' };
  }
  const params = req.Params == null ? {} : req.Params;
  const context = req.Context == null ? {} : req.Context;
  const capture = req.ReturnOutput === true;
  const reply = { Success: true, Result: '' };
  const store = capture ? { chunks: [], size: 0 } : undefined;
  const start = process.hrtime.bigint();
  try {
    const value = await (capture ? captured.run(store, () => handler(params, context)) : handler(params, context));
    reply.Duration = Number(process.hrtime.bigint() - start) / 1e9;
    reply.Result = encodeResult(value);
  } catch (err) {
    reply.Duration = Number(process.hrtime.bigint() - start) / 1e9;
    reply.Success = false;
    reply.Error = describe(err);
  }
  if (store !== undefined) {
    let out = store.chunks.join('');
    if (out.length > MAX_OUTPUT) {
      out = out.slice(0, MAX_OUTPUT) + '\n[output truncated]';
    }
    reply.Output = out;
  }
  return reply;
}

function writeReply(reply) {
  const buf = Buffer.from(JSON.stringify(reply) + '\n');
  let off = 0;
  while (off < buf.length) {
    off += fs.writeSync(REPLY_FD, buf, off, buf.length - off);
  }
}

async function handle(line) {
  let reply;
  let id;
  try {
    const req = JSON.parse(line);
    id = req.id;
    if (req.op === 'load') {
      reply = await load(req);
    } else if (req.op === 'invoke') {
      reply = await invoke(req);
    } else if (req.op === 'ping') {
      reply = { Success: true };
    } else {
      reply = { Success: false, Error: 'unknown op ' + JSON.stringify(req.op) };
    }
  } catch (err) {
    reply = { Success: false, Error: 'worker: bad request: ' + describe(err) };
  }
  writeReply(id === undefined ? reply : Object.assign({ id: id }, reply));
}

function main() {
  raiseOOMScore();
  captureWrites(process.stdout, realStdoutWrite);
  captureWrites(process.stderr, realStderrWrite);
  // A stray async error in function code must not take the worker down.
  process.on('uncaughtException', (err) => {
    errWrite('uncaught exception: ' + describe(err) + '\n');
  });
  process.on('unhandledRejection', (err) => {
    errWrite('unhandled rejection: ' + describe(err) + '\n');
  });

  const input = new net.Socket({ fd: REQUEST_FD, readable: true, writable: false });
  let pending = '';
  input.setEncoding('utf8');
  input.on('data', (data) => {
    pending += data;
    let nl;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (line.length > 0) {
        handle(line);
      }
    }
  });
  input.on('end', () => process.exit(0));
  input.on('error', (err) => {
    errWrite('worker: reading requests: ' + err.message + '\n');
    process.exit(1);
  });
}

function errWrite(s) {
  try {
    fs.writeSync(2, s);
  } catch (_) {
    // Nothing else to report to.
  }
}

main();
