'use strict';
// Every kind of target watch() accepts, pooled Buffers, and bad input.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const memwatch = require('..');

const BACKENDS = ['protect', 'writewatch', 'poll'];

/** The single event of a checkChanges() call, asserting there is exactly one. */
function only(events) {
  assert.equal(events.length, 1, `expected 1 event, got ${events.length}`);
  return events[0];
}

const ranges = (e) => e.changedRanges.map((r) => [r.offset, r.length]);

for (const backend of BACKENDS) {
  test(`[${backend}] Buffer.alloc: exact event`, () => {
    const w = memwatch.create({ backend });
    try {
      const buf = Buffer.alloc(100);
      const id = w.watch(buf, 'buffer', 'm');
      buf[0] = 42;
      const e = only(w.checkChanges());
      assert.equal(e.regionId, id);
      assert.equal(e.variableName, 'buffer');
      assert.equal(e.metadata, 'm');
      assert.equal(e.howBig, 100);
      assert.equal(e.adapterId, 3);
      assert.deepEqual(ranges(e), [[0, 1]]);
      assert.deepEqual(e.oldValue, Buffer.alloc(100));
      const want = Buffer.alloc(100);
      want[0] = 42;
      assert.deepEqual(e.newValue, want);
      assert.equal(typeof e.timestampNs, 'bigint');
      assert.ok(e.timestampNs > 0n);
      if (backend !== 'protect') assert.equal(e.where.threadId, null, 'only protect knows the writer');
      assert.deepEqual(w.checkChanges(), []);
    } finally {
      w.close();
    }
  });

  test(`[${backend}] ArrayBuffer: whole buffer`, () => {
    const w = memwatch.create({ backend });
    try {
      const ab = new ArrayBuffer(32);
      w.watch(ab, 'ab');
      new Uint8Array(ab)[31] = 0xff;
      const e = only(w.checkChanges());
      assert.equal(e.howBig, 32);
      assert.deepEqual(ranges(e), [[31, 1]]);
      assert.equal(e.newValue[31], 0xff);
    } finally {
      w.close();
    }
  });

  test(`[${backend}] SharedArrayBuffer: whole buffer`, () => {
    const w = memwatch.create({ backend });
    try {
      const sab = new SharedArrayBuffer(24);
      w.watch(sab, 'sab');
      const i32 = new Int32Array(sab);
      Atomics.store(i32, 2, -1);
      const e = only(w.checkChanges());
      assert.equal(e.howBig, 24);
      assert.deepEqual(ranges(e), [[8, 4]]);
      assert.deepEqual(e.newValue.subarray(8, 12), Buffer.from('ffffffff', 'hex'));
    } finally {
      w.close();
    }
  });

  test(`[${backend}] every TypedArray kind watches exactly its byte range`, () => {
    const kinds = [
      [Int8Array, -1, 'ff'],
      [Uint8Array, 0xab, 'ab'],
      [Uint8ClampedArray, 300, 'ff'],
      [Int16Array, -2, 'feff'],
      [Uint16Array, 0x1234, '3412'],
      [Int32Array, -3, 'fdffffff'],
      [Uint32Array, 0xdeadbeef, 'efbeadde'],
      [Float32Array, 1.5, '0000c03f'],
      [Float64Array, -2.5, '00000000000004c0'],
      [BigInt64Array, -4n, 'fcffffffffffffff'],
      [BigUint64Array, 0x0102030405060708n, '0807060504030201'],
    ];
    const w = memwatch.create({ backend });
    try {
      for (const [Kind, value, hex] of kinds) {
        // A view into the middle of a larger buffer: elements 2..5 of 8.
        const backing = new ArrayBuffer(8 * Kind.BYTES_PER_ELEMENT);
        const whole = new Kind(backing);
        const view = new Kind(backing, 2 * Kind.BYTES_PER_ELEMENT, 4);
        const id = w.watch(view, Kind.name);
        whole[0] = value; // outside the view: no event
        whole[7] = value; // outside the view: no event
        view[1] = value; // inside: element 1 of the view
        const e = only(w.checkChanges());
        assert.equal(e.regionId, id, Kind.name);
        assert.equal(e.variableName, Kind.name);
        assert.equal(e.howBig, 4 * Kind.BYTES_PER_ELEMENT, Kind.name);
        const changed = Buffer.from(hex, 'hex');
        const first = changed.findIndex((b) => b !== 0);
        const last = changed.length - 1 - [...changed].reverse().findIndex((b) => b !== 0);
        assert.deepEqual(ranges(e), [[Kind.BYTES_PER_ELEMENT + first, last - first + 1]], Kind.name);
        assert.deepEqual(
          e.newValue.subarray(Kind.BYTES_PER_ELEMENT, 2 * Kind.BYTES_PER_ELEMENT),
          changed,
          Kind.name,
        );
        assert.deepEqual(e.oldValue, Buffer.alloc(4 * Kind.BYTES_PER_ELEMENT), Kind.name);
        assert.equal(w.unwatch(id), true);
      }
    } finally {
      w.close();
    }
  });

  test(`[${backend}] DataView watches exactly its byte range`, () => {
    const w = memwatch.create({ backend });
    try {
      const ab = new ArrayBuffer(64);
      const dv = new DataView(ab, 16, 8);
      w.watch(dv, 'dv');
      new Uint8Array(ab)[15] = 1; // just before the view
      new Uint8Array(ab)[24] = 1; // just after the view
      dv.setUint16(6, 0xbeef); // big-endian: bytes 6,7 = be ef
      const e = only(w.checkChanges());
      assert.equal(e.howBig, 8);
      assert.deepEqual(ranges(e), [[6, 2]]);
      assert.deepEqual(e.newValue, Buffer.from('000000000000beef', 'hex'));
    } finally {
      w.close();
    }
  });

  test(`[${backend}] pooled Buffers: watching one reports changes to its bytes only`, () => {
    const w = memwatch.create({ backend });
    try {
      const a = Buffer.from('aaaaaaaa');
      const b = Buffer.from('bbbbbbbb');
      const c = Buffer.from('cccccccc');
      assert.equal(a.buffer, b.buffer, 'a and b share the pool slab');
      assert.equal(b.buffer, c.buffer, 'b and c share the pool slab');
      const id = w.watch(b, 'b');
      a.fill('x');
      c.fill('y');
      a[a.length - 1] = 0; // the byte just before b
      c[0] = 0; // the byte just after b
      assert.deepEqual(w.checkChanges(), [], 'writes to neighbours are not changes of b');
      b.write('ZZ', 3);
      const e = only(w.checkChanges());
      assert.equal(e.regionId, id);
      assert.equal(e.howBig, 8);
      assert.deepEqual(ranges(e), [[3, 2]]);
      assert.deepEqual(e.oldValue, Buffer.from('bbbbbbbb'));
      assert.deepEqual(e.newValue, Buffer.from('bbbZZbbb'));
      assert.equal(a.toString('latin1'), 'xxxxxxx\0', 'neighbour a written normally');
    } finally {
      w.close();
    }
  });

  test(`[${backend}] Buffer.subarray and allocPageAligned; the writer thread`, () => {
    const w = memwatch.create({ backend });
    try {
      // Pages of their own: nothing but this test writes them, so with
      // protect the reported writer is this (the main) thread.
      const page = memwatch.allocPageAligned(memwatch.pageSize() * 2);
      assert.equal(page.length, memwatch.pageSize() * 2);
      assert.ok(page.every((x) => x === 0));
      const sub = page.subarray(memwatch.pageSize() - 2, memwatch.pageSize() + 2);
      w.watch(sub, 'straddle');
      page[memwatch.pageSize()] = 9;
      const e = only(w.checkChanges());
      if (backend === 'protect') {
        assert.equal(e.where.threadId, process.pid, 'main thread wrote it');
        assert.equal(typeof e.where.faultIp, 'bigint');
        assert.ok(e.where.faultIp > 0n);
      } else {
        assert.equal(e.where.threadId, null);
        assert.equal(e.where.faultIp, null);
      }
      assert.deepEqual(ranges(e), [[2, 1]]);
      assert.deepEqual(e.newValue, Buffer.from('00000900', 'hex'));
    } finally {
      w.close();
    }
  });

  test(`[${backend}] two watchers may watch the same bytes; one watcher may not`, () => {
    const w1 = memwatch.create({ backend });
    const w2 = memwatch.create({ backend });
    try {
      const buf = Buffer.alloc(16);
      w1.watch(buf, 'one');
      w2.watch(buf, 'two');
      assert.throws(() => w1.watch(buf.subarray(4, 8), 'again'), {
        name: 'Error',
        code: 'ERR_MEMWATCH_OVERLAP',
      });
      buf[5] = 5;
      assert.equal(only(w1.checkChanges()).variableName, 'one');
      assert.equal(only(w2.checkChanges()).variableName, 'two');
    } finally {
      w1.close();
      w2.close();
    }
  });
}

test('bad targets throw TypeError/RangeError with a clear message', () => {
  const w = memwatch.create({ backend: 'poll' });
  try {
    for (const bad of [42, 'abc', null, undefined, {}, [1, 2, 3], () => 1, 10n, Symbol('s')]) {
      assert.throws(() => w.watch(bad, 'x'), {
        name: 'TypeError',
        code: 'ERR_INVALID_ARG_TYPE',
        message: /The "target" argument must be a Buffer, TypedArray, DataView, ArrayBuffer or SharedArrayBuffer/,
      });
    }
    assert.throws(() => w.watch(Buffer.alloc(0), 'empty'), {
      name: 'RangeError',
      code: 'ERR_MEMWATCH_EMPTY',
      message: /empty/,
    });
    assert.throws(() => w.watch(new ArrayBuffer(0)), { name: 'RangeError', code: 'ERR_MEMWATCH_EMPTY' });
    assert.throws(() => w.watch(Buffer.alloc(8), 5), { name: 'TypeError', message: /"name" argument must be of type string/ });
    assert.throws(() => w.watch(Buffer.alloc(8), 'n', 5), { name: 'TypeError', message: /"metadata"/ });
    assert.equal(w.getStats().regions, 0, 'nothing was watched');
  } finally {
    w.close();
  }
});

test('a detached ArrayBuffer (and a view of one) throws TypeError', () => {
  const w = memwatch.create({ backend: 'poll' });
  try {
    const ab = new ArrayBuffer(16);
    const view = new Uint8Array(ab, 4, 4);
    const dv = new DataView(ab);
    structuredClone(ab, { transfer: [ab] });
    assert.equal(ab.byteLength, 0);
    for (const t of [ab, view, dv]) {
      assert.throws(() => w.watch(t, 'gone'), {
        name: 'TypeError',
        code: 'ERR_MEMWATCH_DETACHED',
        message: 'cannot watch a detached ArrayBuffer',
      });
    }
    assert.equal(w.getStats().regions, 0);
  } finally {
    w.close();
  }
});

test('a resizable ArrayBuffer throws TypeError', () => {
  const w = memwatch.create({ backend: 'poll' });
  try {
    let ab;
    try {
      ab = new ArrayBuffer(8, { maxByteLength: 16 });
    } catch {
      ab = null;
    }
    if (ab === null || ab.resizable !== true) {
      // This Node has no resizable ArrayBuffers: nothing to reject.
      assert.equal(typeof ArrayBuffer.prototype.resize, 'undefined');
      return;
    }
    assert.throws(() => w.watch(ab), { name: 'TypeError', code: 'ERR_MEMWATCH_RESIZABLE' });
    assert.throws(() => w.watch(new Uint8Array(ab)), { name: 'TypeError', code: 'ERR_MEMWATCH_RESIZABLE' });
  } finally {
    w.close();
  }
});

test('a closed watcher throws Error ERR_MEMWATCH_CLOSED (close is idempotent)', () => {
  const w = memwatch.create({ backend: 'poll' });
  const buf = Buffer.alloc(8);
  const id = w.watch(buf, 'b');
  let closes = 0;
  w.on('close', () => closes++);
  w.close();
  w.close();
  assert.equal(closes, 1);
  assert.equal(w.closed, true);
  const closed = { name: 'Error', code: 'ERR_MEMWATCH_CLOSED', message: 'watcher is closed' };
  assert.throws(() => w.watch(buf, 'b'), closed);
  assert.throws(() => w.unwatch(id), closed);
  assert.throws(() => w.checkChanges(), closed);
  assert.throws(() => w.setCallback(() => {}), closed);
  w.setCallback(null); // clearing is harmless
  assert.equal(w.getStats().regions, 0, 'close unwatched everything');
  buf[0] = 1; // the memory is an ordinary Buffer again
  assert.equal(buf[0], 1);
});

test('bad options throw TypeError', () => {
  assert.throws(() => memwatch.create({ backend: 'nope' }), { name: 'TypeError', message: /options.backend must be one of/ });
  assert.throws(() => memwatch.create({ bakend: 'poll' }), { name: 'TypeError', message: /unknown option "bakend"/ });
  assert.throws(() => memwatch.create({ maxValueBytes: -1 }), { name: 'TypeError', message: /maxValueBytes/ });
  assert.throws(() => memwatch.create({ previewBytes: 1.5 }), { name: 'TypeError', message: /previewBytes/ });
  // Bad windows and intervals: the documented TypeError with code ERR_INVALID_ARG_VALUE.
  for (const key of ['writableWindowMs', 'pollIntervalMs']) {
    for (const bad of [-1, -0.5, NaN, Infinity, -Infinity]) {
      assert.throws(() => memwatch.create({ [key]: bad }), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE', message: new RegExp(key) }, `${key}: ${bad}`);
    }
  }
  // Zero and more than a day pass the JS checks; the engine rejects them.
  assert.throws(() => memwatch.create({ pollIntervalMs: 86_400_001 }), { name: 'TypeError', code: 'ERR_MEMWATCH_INVALID_ARGUMENT', message: /pollIntervalMs/ });
  assert.throws(() => memwatch.create({ writableWindowMs: 0 }), { name: 'TypeError', code: 'ERR_MEMWATCH_INVALID_ARGUMENT', message: /writable_window/ });
  assert.throws(() => memwatch.create({ pollIntervalMs: 0 }), { name: 'TypeError', code: 'ERR_MEMWATCH_INVALID_ARGUMENT', message: /poll_interval/ });
  assert.throws(() => memwatch.create({ snapshots: 1 }), { name: 'TypeError', message: /snapshots/ });
  assert.throws(() => memwatch.create(5), { name: 'TypeError', message: /"options" argument must be an object/ });
  assert.throws(() => memwatch.allocPageAligned(0), { name: 'TypeError' });
});

test('writewatch unavailable (MEMWATCH_DISABLE_WRITEWATCH): explicit choice throws, auto falls back to protect', () => {
  const { spawnSync } = require('node:child_process');
  const script = `
    const memwatch = require(${JSON.stringify(require.resolve('..'))});
    const out = {};
    try { memwatch.create({ backend: 'writewatch' }).close(); out.explicit = 'created'; }
    catch (e) { out.explicit = { name: e.name, code: e.code, message: e.message }; }
    const w = memwatch.create();
    const buf = Buffer.alloc(8);
    w.watch(buf, 'auto');
    buf[1] = 1;
    out.events = w.checkChanges().map((e) => e.changedRanges);
    const s = w.getStats();
    out.backend = s.backend;
    out.reason = s.backendReason;
    w.close();
    console.log(JSON.stringify(out));
  `;
  const r = spawnSync(process.execPath, ['-e', script], {
    env: { ...process.env, MEMWATCH_DISABLE_WRITEWATCH: '1' },
    encoding: 'utf8',
    timeout: 30000,
  });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.explicit.name, 'Error');
  assert.equal(out.explicit.code, 'ERR_MEMWATCH_UNSUPPORTED');
  assert.match(out.explicit.message, /MEMWATCH_DISABLE_WRITEWATCH/);
  assert.equal(out.backend, 'protect');
  assert.match(out.reason, /MEMWATCH_DISABLE_WRITEWATCH/);
  assert.deepEqual(out.events, [[{ offset: 1, length: 1 }]]);
});

test('auto picks writewatch on this kernel, else says why', () => {
  const w = memwatch.create();
  try {
    const s = w.getStats();
    assert.ok(['writewatch', 'protect'].includes(s.backend), s.backend);
    if (s.backend === 'protect') assert.notEqual(s.backendReason, '', 'a fallback always has a reason');
    else assert.equal(s.backendReason, '');
  } finally {
    w.close();
  }
});

test('system calls writing into watched memory: EFAULT under protect, reported under writewatch and poll', () => {
  const fs = require('node:fs');
  const os = require('node:os');
  const path = require('node:path');
  const file = path.join(os.tmpdir(), `memwatch-node-efault-${process.pid}`);
  fs.writeFileSync(file, 'ABCD');
  try {
    for (const backend of BACKENDS) {
      const w = memwatch.create({ backend });
      try {
        const buf = memwatch.allocPageAligned(64);
        w.watch(buf, 'target');
        const fd = fs.openSync(file, 'r');
        try {
          if (backend === 'protect') {
            assert.throws(() => fs.readSync(fd, buf, 0, 4, 0), { code: 'EFAULT' }, backend);
            assert.deepEqual(w.checkChanges(), [], 'the kernel wrote nothing');
          } else {
            assert.equal(fs.readSync(fd, buf, 0, 4, 0), 4, backend);
            const e = only(w.checkChanges());
            assert.deepEqual(ranges(e), [[0, 4]], backend);
            assert.deepEqual(e.newValue.subarray(0, 4), Buffer.from('ABCD'), backend);
          }
        } finally {
          fs.closeSync(fd);
        }
      } finally {
        w.close();
      }
    }
  } finally {
    fs.unlinkSync(file);
  }
});

test('unwatch: ids, unknown ids and bad ids', () => {
  const w = memwatch.create({ backend: 'poll' });
  try {
    const a = w.watch(Buffer.alloc(4), 'a');
    const b = w.watch(Buffer.alloc(4), 'b');
    assert.ok(a >= 1 && b > a, `ids ${a}, ${b}`);
    assert.equal(w.unwatch(a), true);
    assert.equal(w.unwatch(a), false);
    assert.equal(w.unwatch(4000000000), false);
    assert.equal(w.unwatch(2 ** 40), false);
    assert.throws(() => w.unwatch(-1), { name: 'TypeError' });
    assert.throws(() => w.unwatch('1'), { name: 'TypeError' });
    assert.throws(() => w.unwatch(1.5), { name: 'TypeError' });
    assert.equal(w.getStats().regions, 1);
  } finally {
    w.close();
  }
});

test('snapshots: false gives new values only and one range over the region', () => {
  const w = memwatch.create({ backend: 'poll', snapshots: false });
  try {
    const buf = Buffer.alloc(8);
    w.watch(buf, 'nosnap');
    buf[2] = 1;
    const e = only(w.checkChanges());
    assert.equal(e.oldValue, null);
    assert.deepEqual(e.newValue, Buffer.from('0000010000000000', 'hex'));
    assert.deepEqual(ranges(e), [[0, 8]]);
  } finally {
    w.close();
  }
});
