'use strict';
// locateWriters: event.where names the writing thread, the JS function,
// script and line, and carries the stack (JS frames, then native ones).
// Expected lines come from the test's own `new Error().stack`.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const memwatch = require('..');
const { node, describeRun } = require('./helpers');

const PAGE = memwatch.pageSize();

/** The line of the caller of `lineHere()`, from V8's own stack trace. */
function lineHere() {
  const frame = new Error().stack.split('\n')[2];
  const m = /:(\d+):\d+\)?$/.exec(frame);
  assert.ok(m, `no line in ${frame}`);
  return Number(m[1]);
}

function only(events) {
  assert.equal(events.length, 1, `expected one event, got ${events.length}`);
  return events[0];
}

// The writer and its caller. Each returns the line the write is on and the
// line its function starts on (the JS frame's line: see the README).
function writeThird(buf, value) {
  const fnLine = lineHere() - 1;
  buf[3] = value; const writeLine = lineHere();
  return { fnLine, writeLine };
}

function callsWriter(buf, value) {
  const fnLine = lineHere() - 1;
  const inner = writeThird(buf, value); const callLine = lineHere();
  return { fnLine, callLine, inner };
}

test('locateWriters: a JS write names the writing function, this script and its line, then its caller', () => {
  const w = memwatch.create({ locateWriters: true });
  try {
    const buf = memwatch.allocPageAligned(PAGE);
    w.watch(buf, 'buf');
    const stats = w.getStats();
    assert.equal(stats.backend, 'protect');
    assert.match(stats.backendReason, /locate_writers/);
    const lines = callsWriter(buf, 1);
    const e = only(w.checkChanges());
    assert.deepEqual([...e.changedRanges].map((r) => [r.offset, r.length]), [[3, 1]]);
    const where = e.where;
    assert.equal(where.threadId, process.pid, 'the main thread wrote it');
    const comm = fs.readFileSync(`/proc/self/task/${process.pid}/comm`, 'utf8').trim();
    assert.equal(where.threadName, comm);
    assert.equal(where.unattributedFaults, 0);
    assert.equal(typeof where.faultIp, 'bigint');

    // The user frame: the JS function that wrote.
    assert.equal(where.function, 'writeThird');
    assert.equal(where.file, __filename);
    assert.equal(where.module, __filename);
    assert.equal(where.line, lines.inner.fnLine);
    // JS frames first, innermost first: the writer, then its caller.
    const js = where.stack.filter((f) => f.file === __filename);
    assert.deepEqual(
      js.slice(0, 2).map((f) => [f.function, f.line]),
      [
        ['writeThird', lines.inner.fnLine],
        ['callsWriter', lines.fnLine],
      ],
    );
    assert.equal(where.stack[0].function, 'writeThird');
    assert.equal(where.stack[1].function, 'callsWriter');
    // Then the native frames, the first of which is the write itself.
    const native = where.stack.filter((f) => f.file !== __filename);
    assert.ok(native.length >= 1, 'native frames follow the JS ones');
    assert.ok(
      native.some((f) => f.ip === where.faultIp),
      `a native frame is the faulting instruction ${where.faultIp.toString(16)}`,
    );
    for (const f of where.stack) {
      assert.deepEqual(Object.keys(f).sort(), ['file', 'function', 'inlined', 'ip', 'line', 'module', 'moduleOffset']);
      assert.equal(typeof f.ip, 'bigint');
      assert.equal(typeof f.moduleOffset, 'number');
    }
  } finally {
    w.close();
  }
});

test('locateWriters: `where` is converted on first access, then kept', () => {
  const w = memwatch.create({ locateWriters: true });
  try {
    const buf = memwatch.allocPageAligned(PAGE);
    w.watch(buf, 'buf');
    writeThird(buf, 5);
    const e = only(w.checkChanges());
    const before = Object.getOwnPropertyDescriptor(e, 'where');
    assert.equal(typeof before.get, 'function', 'a getter until read');
    assert.ok(Object.keys(e).includes('where'), 'enumerable');
    const first = e.where;
    assert.equal(first.function, 'writeThird');
    assert.equal(e.where, first, 'the same object on every read');
    assert.equal(Object.getOwnPropertyDescriptor(e, 'where').value, first, 'a plain data property now');
  } finally {
    w.close();
  }
});

test('locateWriters: stackDepth bounds the JS frames; the same line on every call', () => {
  const w = memwatch.create({ locateWriters: true, stackDepth: 1, writableWindowMs: 1 });
  try {
    const buf = memwatch.allocPageAligned(PAGE);
    w.watch(buf, 'buf');
    for (let i = 1; i <= 50; i++) {
      const lines = callsWriter(buf, i);
      const e = only(w.checkChanges());
      assert.equal(e.newValue[3], i);
      const js = e.where.stack.filter((f) => f.file === __filename);
      assert.deepEqual(
        js.map((f) => [f.function, f.line]),
        [['writeThird', lines.inner.fnLine]],
        `call ${i}: one JS frame with stackDepth 1`,
      );
      assert.equal(e.where.line, lines.inner.fnLine);
    }
  } finally {
    w.close();
  }
});

test('locateWriters: a write from Buffer.fill (C++ under JS) still names the JS caller', () => {
  const w = memwatch.create({ locateWriters: true });
  try {
    const buf = memwatch.allocPageAligned(PAGE);
    w.watch(buf, 'buf');
    const fnLine = lineHere() + 1;
    function fills(b) {
      b.fill(7, 100, 108);
    }
    fills(buf);
    const e = only(w.checkChanges());
    assert.deepEqual([...e.changedRanges].map((r) => [r.offset, r.length]), [[100, 8]]);
    assert.equal(e.where.threadId, process.pid);
    const js = e.where.stack.filter((f) => f.file === __filename);
    assert.equal(js[0].function, 'fills');
    assert.equal(js[0].line, fnLine);
  } finally {
    w.close();
  }
});

test('locateWriters: a write from TurboFan-optimized code names that function (the fault is in its code)', () => {
  const child = path.join(__dirname, 'where-optimized.js');
  const r = node(['--allow-natives-syntax', child]);
  assert.equal(r.status, 0, describeRun(r));
  const out = JSON.parse(r.stdout);
  assert.equal(out.status & (16 | 64), 16 | 64, `hotWriter is TurboFan code (status ${out.status})`);
  assert.equal(out.newByte, 7);
  assert.equal(out.where.function, 'hotWriter');
  assert.equal(out.where.file, child);
  assert.equal(out.where.line, out.fnLine);
  // The faulting instruction is in hotWriter's machine code: its JS frame is the pc itself.
  assert.equal(out.where.stack[0].ip, out.where.faultIp);
  assert.equal(out.where.stack[1].function, '(anonymous)', 'called from the script top level');
  assert.equal(out.where.stack[1].file, child);
});

test('without locateWriters nothing is located and where is a plain object', () => {
  const w = memwatch.create({ backend: 'protect' });
  try {
    const buf = memwatch.allocPageAligned(PAGE);
    w.watch(buf, 'buf');
    writeThird(buf, 9);
    const e = only(w.checkChanges());
    assert.equal(typeof Object.getOwnPropertyDescriptor(e, 'where').get, 'undefined');
    assert.equal(e.where.threadId, process.pid);
    assert.deepEqual(
      { ...e.where, threadId: 0, faultIp: 0 },
      {
        threadId: 0,
        threadName: '',
        faultIp: 0,
        module: '',
        moduleOffset: 0,
        file: '',
        function: '',
        line: 0,
        unattributedFaults: 0,
        stack: [],
      },
    );
  } finally {
    w.close();
  }
});

test('locateWriters / stackDepth: bad values are rejected with clear errors', () => {
  const expectCode = (options, code, re) => {
    assert.throws(
      () => memwatch.create(options),
      (err) => {
        assert.equal(err.code, code, `${JSON.stringify(options)}: ${err.message}`);
        assert.match(err.message, re);
        return true;
      },
    );
  };
  expectCode({ locateWriters: 'yes' }, 'ERR_INVALID_ARG_VALUE', /locateWriters must be a boolean/);
  expectCode({ locateWriters: true, stackDepth: 1.5 }, 'ERR_INVALID_ARG_VALUE', /stackDepth must be an integer/);
  expectCode({ locateWriters: true, stackDepth: 0 }, 'ERR_MEMWATCH_INVALID_ARGUMENT', /stack_depth must be 1..=32/);
  expectCode({ locateWriters: true, stackDepth: 33 }, 'ERR_MEMWATCH_INVALID_ARGUMENT', /stack_depth must be 1..=32/);
  expectCode({ locateWriters: true, backend: 'poll' }, 'ERR_MEMWATCH_INVALID_ARGUMENT', /needs the protect backend/);
});
