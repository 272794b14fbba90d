'use strict';
// The four ways events reach JavaScript: setCallback, 'change' listeners,
// the changes() async iterator and checkChanges(); each event exactly once.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const memwatch = require('..');

const BACKENDS = ['protect', 'writewatch', 'poll'];
const ASYNC_TIMEOUT_MS = 10000;

/** Resolves with the value `register(resolve)` hands over; rejects after a timeout. */
function within(what, register) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ASYNC_TIMEOUT_MS);
    register((v) => {
      clearTimeout(timer);
      resolve(v);
    });
  });
}

/**
 * Writes `marker` into buf[index] and waits until the asynchronous path
 * (engine delivery thread -> threadsafe function -> JS) delivered it to
 * `seen`. Delivery is FIFO, so afterwards every earlier wake-up has run too.
 */
async function roundTrip(buf, index, marker, seen) {
  const before = seen.length;
  buf[index] = marker;
  await within(`event for marker ${marker}`, (done) => {
    const poll = () => (seen.length > before ? done() : setImmediate(poll));
    poll();
  });
}

const ranges = (e) => e.changedRanges.map((r) => [r.offset, r.length]);

for (const backend of BACKENDS) {
  test(`[${backend}] callback: synchronous via checkChanges, exactly once`, { timeout: 60000 }, async () => {
    const w = memwatch.create({ backend });
    try {
      const buf = Buffer.alloc(32);
      const seen = [];
      w.setCallback((e) => seen.push(e));
      w.watch(buf, 'cb');
      buf[7] = 7;
      assert.deepEqual(w.checkChanges(), [], 'with a callback, checkChanges returns nothing');
      assert.equal(seen.length, 1, 'delivered before checkChanges returned');
      assert.deepEqual(ranges(seen[0]), [[7, 1]]);
      assert.equal(seen[0].newValue[7], 7);
      assert.equal(seen[0].oldValue[7], 0);
      await roundTrip(buf, 8, 8, seen);
      assert.equal(seen.length, 2, 'no duplicate of the first event');
      assert.deepEqual(ranges(seen[1]), [[8, 1]]);
      assert.deepEqual(seen.map((e) => e.newValue[7]), [7, 7]);
    } finally {
      w.close();
    }
  });

  test(`[${backend}] callback: asynchronous delivery on the JS thread`, { timeout: 60000 }, async () => {
    const w = memwatch.create({ backend });
    try {
      const buf = memwatch.allocPageAligned(16); // its own page: only this thread writes it
      const id = w.watch(buf, 'async', 'meta');
      const got = within('async callback', (done) => w.setCallback(done));
      buf.write('hi', 4);
      const e = await got;
      assert.equal(e.variableName, 'async');
      assert.equal(e.metadata, 'meta');
      assert.deepEqual(ranges(e), [[4, 2]]);
      assert.deepEqual(e.newValue, Buffer.from('00000000686900000000000000000000', 'hex'));
      assert.equal(e.regionId, id);
      if (backend === 'protect') assert.equal(e.where.threadId, process.pid);
      assert.deepEqual(w.checkChanges(), []);
    } finally {
      w.close();
    }
  });

  test(`[${backend}] emitter: on/once/off, exactly once per listener`, { timeout: 60000 }, async () => {
    const w = memwatch.create({ backend });
    try {
      const buf = Buffer.alloc(16);
      const a = [];
      const b = [];
      const once = [];
      const la = (e) => a.push(e);
      w.on('change', la);
      w.on('change', (e) => b.push(e));
      w.once('change', (e) => once.push(e));
      w.watch(buf, 'em');
      buf[0] = 1;
      assert.deepEqual(w.checkChanges(), []);
      buf[1] = 2;
      assert.deepEqual(w.checkChanges(), []);
      await roundTrip(buf, 2, 3, a);
      assert.equal(a.length, 3);
      assert.equal(b.length, 3);
      assert.equal(once.length, 1);
      assert.deepEqual(a.map(ranges), [[[0, 1]], [[1, 1]], [[2, 1]]]);
      assert.deepEqual(new Set(a.map((e) => e.seq)).size, 3);
      assert.equal(a[0], b[0], 'listeners share the event object');
      w.removeAllListeners('change');
      assert.equal(w.listenerCount('change'), 0);
      buf[3] = 4;
      const e = w.checkChanges();
      assert.equal(e.length, 1, 'without listeners the event waits for checkChanges');
      assert.deepEqual(ranges(e[0]), [[3, 1]]);
      assert.equal(a.length, 3);
      w.on('change', la);
      buf[4] = 5;
      w.checkChanges();
      assert.equal(a.length, 4, 'a listener added again gets events again');
    } finally {
      w.close();
    }
  });

  test(`[${backend}] async iterator: next, for await, return, close`, { timeout: 60000 }, async () => {
    const w = memwatch.create({ backend });
    try {
      const buf = Buffer.alloc(16);
      w.watch(buf, 'it');
      const it = w.changes();
      buf[0] = 1;
      assert.deepEqual(w.checkChanges(), [], 'an active iterator is a subscriber');
      const r1 = await it.next();
      assert.equal(r1.done, false);
      assert.deepEqual(ranges(r1.value), [[0, 1]]);
      const pending = it.next();
      buf[1] = 2; // delivered asynchronously
      const r2 = await within('iterator event', (done) => pending.then(done));
      assert.deepEqual(ranges(r2.value), [[1, 1]]);
      assert.deepEqual(await it.return(), { value: undefined, done: true });
      assert.deepEqual(await it.next(), { value: undefined, done: true });
      buf[2] = 3;
      assert.equal(w.checkChanges().length, 1, 'after return() events wait for checkChanges');

      // for await with break
      const collected = [];
      buf[3] = 4;
      buf[10] = 5;
      const loop = (async () => {
        for await (const e of w.changes()) {
          collected.push(e);
          if (collected.length === 2) break;
        }
      })();
      assert.deepEqual(w.checkChanges(), []);
      buf[12] = 6;
      w.checkChanges();
      await loop;
      assert.equal(collected.length, 2);
      assert.deepEqual(ranges(collected[0]), [[3, 1], [10, 1]]);
      assert.deepEqual(ranges(collected[1]), [[12, 1]]);

      // close ends a waiting iterator
      const it2 = w.changes();
      const waiting = it2.next();
      w.close();
      assert.deepEqual(await waiting, { value: undefined, done: true });
      assert.deepEqual(await w.changes().next(), { value: undefined, done: true });
    } finally {
      w.close();
    }
  });

  test(`[${backend}] callback, listeners and iterator all get each event exactly once`, { timeout: 60000 }, async () => {
    const w = memwatch.create({ backend });
    try {
      const buf = Buffer.alloc(64);
      w.watch(buf, 'all');
      const viaCallback = [];
      const viaListener = [];
      const viaIterator = [];
      w.setCallback((e) => viaCallback.push(e.seq));
      w.on('change', (e) => viaListener.push(e.seq));
      const it = w.changes();
      const N = 50;
      for (let i = 0; i < N; i++) {
        buf[i] = i + 1;
        w.checkChanges();
      }
      for (let i = 0; i < N; i++) viaIterator.push((await it.next()).value.seq);
      assert.equal(viaCallback.length, N);
      assert.equal(new Set(viaCallback).size, N, 'no duplicates');
      assert.deepEqual(viaListener, viaCallback);
      assert.deepEqual(viaIterator, viaCallback);
      assert.deepEqual([...viaCallback].sort((x, y) => x - y), viaCallback, 'in seq order');
      await it.return();
      assert.equal(w.getStats().events, N);
    } finally {
      w.close();
    }
  });

  test(`[${backend}] exactly once while async delivery races checkChanges`, { timeout: 60000 }, async () => {
    const w = memwatch.create({ backend, writableWindowMs: 1, pollIntervalMs: 1 });
    try {
      const buf = Buffer.alloc(256);
      w.watch(buf, 'race');
      const seqs = [];
      const changedBytes = [];
      w.on('change', (e) => {
        seqs.push(e.seq);
        for (const r of e.changedRanges) for (let k = 0; k < r.length; k++) changedBytes.push(r.offset + k);
      });
      for (let i = 0; i < 200; i++) {
        buf[i % 256] = 1 + (i >> 8);
        if (i % 3 === 0) w.checkChanges();
        if (i % 7 === 0) await new Promise(setImmediate); // let async deliveries in
      }
      w.checkChanges();
      assert.equal(new Set(seqs).size, seqs.length, 'no event delivered twice');
      assert.equal(seqs.length, w.getStats().events, 'every event the engine produced was delivered');
      assert.deepEqual(
        [...changedBytes].sort((x, y) => x - y),
        Array.from({ length: 200 }, (_, i) => i),
        'each written byte reported exactly once',
      );
    } finally {
      w.close();
    }
  });
}

test('clearing the callback leaves undelivered events for checkChanges', { timeout: 60000 }, () => {
  const w = memwatch.create({ backend: 'protect' });
  try {
    const buf = Buffer.alloc(8);
    const seen = [];
    w.setCallback((e) => seen.push(e));
    w.watch(buf, 'switch');
    buf[5] = 5;
    // Still on the JS thread: the callback cannot have run yet.
    w.setCallback(null);
    const events = w.checkChanges();
    assert.equal(events.length, 1);
    assert.deepEqual(ranges(events[0]), [[5, 1]]);
    assert.equal(seen.length, 0);
  } finally {
    w.close();
  }
});

test('a throwing callback: counted, reported on "error", others still served', { timeout: 60000 }, () => {
  const w = memwatch.create({ backend: 'poll' });
  try {
    const buf = Buffer.alloc(8);
    w.watch(buf, 'boom');
    const errors = [];
    const listened = [];
    w.on('error', (err) => errors.push(err));
    w.setCallback(() => {
      throw new Error('callback failed');
    });
    w.on('change', (e) => listened.push(e));
    buf[0] = 1;
    assert.deepEqual(w.checkChanges(), []);
    assert.equal(listened.length, 1, 'the listener still got the event');
    assert.equal(errors.length, 1);
    assert.equal(errors[0].message, 'callback failed');
    assert.equal(w.getStats().callbackErrors, 1);
  } finally {
    w.close();
  }
});

test('a throwing listener without an "error" listener: checkChanges rethrows it', { timeout: 60000 }, () => {
  const w = memwatch.create({ backend: 'poll' });
  try {
    const buf = Buffer.alloc(8);
    w.watch(buf, 'boom');
    const second = [];
    w.on('change', () => {
      throw new Error('listener failed');
    });
    w.on('change', (e) => second.push(e));
    buf[1] = 1;
    assert.throws(() => w.checkChanges(), { message: 'listener failed' });
    assert.equal(second.length, 1, 'later listeners still got the event');
    assert.equal(w.getStats().callbackErrors, 1);
    assert.deepEqual(w.checkChanges(), [], 'the event is not delivered again');
    assert.equal(second.length, 1);
  } finally {
    w.close();
  }
});

test('close() from inside the callback stops delivery, without deadlock', { timeout: 60000 }, () => {
  const w = memwatch.create({ backend: 'protect' });
  const a = Buffer.alloc(8);
  const b = Buffer.alloc(8);
  w.watch(a, 'a');
  w.watch(b, 'b');
  const seen = [];
  w.setCallback((e) => {
    seen.push(e.variableName);
    w.close();
  });
  a[0] = 1;
  b[0] = 1;
  assert.deepEqual(w.checkChanges(), []);
  assert.equal(seen.length, 1, 'no event after close');
  assert.equal(w.closed, true);
  a[1] = 2; // unprotected again: plain write
  assert.equal(a[1], 2);
});

test('checkChanges() from inside a listener', { timeout: 60000 }, () => {
  const w = memwatch.create({ backend: 'protect' });
  try {
    const buf = Buffer.alloc(8);
    w.watch(buf, 'nested');
    const seen = [];
    w.on('change', (e) => {
      seen.push(e.newValue[0]);
      if (e.newValue[0] === 1) {
        buf[0] = 2;
        assert.deepEqual(w.checkChanges(), []);
      }
    });
    buf[0] = 1;
    w.checkChanges();
    assert.deepEqual(seen, [1, 2]);
  } finally {
    w.close();
  }
});

test('getStats: pendingEvents counts events waiting for checkChanges', { timeout: 60000 }, () => {
  const w = memwatch.create({ backend: 'poll' });
  try {
    const buf = Buffer.alloc(8);
    w.watch(buf, 'p');
    const s0 = w.getStats();
    assert.equal(s0.backend, 'poll');
    assert.equal(s0.regions, 1);
    assert.equal(s0.events, 0);
    buf[0] = 1;
    assert.equal(w.checkChanges().length, 1);
    const s1 = w.getStats();
    assert.equal(s1.events, 1);
    assert.equal(s1.pendingEvents, 0);
    assert.equal(s1.snapshotBytes, 8);
  } finally {
    w.close();
  }
});

test('an undrained queue merges later changes into a pending event that counts them (coalesced)', () => {
  // Nobody drains: past 1024 pending events, later changes of the region are
  // merged into its pending event; every change is in some event.
  const w = memwatch.create({ backend: 'poll', pollIntervalMs: 1 });
  const buf = Buffer.alloc(8);
  w.watch(buf, 'counter');
  const pause = new Int32Array(new SharedArrayBuffer(4));
  let i = 0n;
  while (w.getStats().coalescedEvents < 50) {
    i += 1n;
    buf.writeBigUInt64LE(i);
    Atomics.wait(pause, 0, 0, 0.3);
    assert.ok(i < 1000000n, JSON.stringify(w.getStats()));
  }
  assert.equal(w.getStats().pendingEvents, 1024);
  const events = w.checkChanges();
  assert.ok(events.length === 1024 || events.length === 1025, `${events.length} events`);
  const u64 = (b) => b.readBigUInt64LE(0);
  assert.equal(u64(events[0].oldValue), 0n);
  for (let k = 1; k < events.length; k++) {
    assert.equal(u64(events[k].oldValue), u64(events[k - 1].newValue), `event ${k}: old is the previous new`);
  }
  assert.equal(u64(events[events.length - 1].newValue), i);
  const stats = w.getStats();
  const merged = events.reduce((n, e) => n + e.coalesced, 0);
  assert.equal(merged, stats.events, 'every detected change is in some event');
  assert.equal(merged - events.length, stats.coalescedEvents);
  assert.ok(events.some((e) => e.coalesced > 1));
  assert.ok(events.slice(0, 1023).every((e) => e.coalesced === 1));
  w.close();
});

test('aborting the signal of changes() cancels a waiting loop promptly; no event is lost', { timeout: 60000 }, async () => {
  const w = memwatch.create({ backend: 'poll', pollIntervalMs: 60000 });
  const buf = Buffer.alloc(8);
  w.watch(buf, 'loop');
  const ac = new AbortController();
  const it = w.changes({ signal: ac.signal });
  // An event the loop received but did not take yet still comes out after the abort.
  buf[1] = 5;
  assert.deepEqual(w.checkChanges(), [], 'delivered to the iterator');
  const waiting = (async () => {
    const got = [];
    try {
      for await (const e of it) got.push([e.variableName, e.newValue.toString('hex')]);
    } catch (err) {
      return { got, err };
    }
    return { got, err: null };
  })();
  const start = Date.now();
  setTimeout(() => ac.abort(), 50);
  const { got, err } = await waiting;
  assert.ok(Date.now() - start < 2000, `the abort ended the loop after ${Date.now() - start} ms`);
  assert.deepEqual(got, [['loop', '0005000000000000']]);
  assert.equal(err?.name, 'AbortError');
  assert.equal(err?.code, 'ABORT_ERR');
  // The loop is gone: the next change waits for checkChanges() instead.
  buf[2] = 6;
  const events = w.checkChanges();
  assert.deepEqual(events.map((e) => e.newValue.toString('hex')), ['0005060000000000']);
  // An already aborted signal: the loop rejects at once.
  await assert.rejects(w.changes({ signal: AbortSignal.abort() }).next(), { name: 'AbortError' });
  assert.throws(() => w.changes({ signal: 1 }), { code: 'ERR_INVALID_ARG_TYPE' });
  w.close();
});
