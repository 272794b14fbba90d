'use strict';
// The value store: watcher.setValueStore(name, capacity) sends the values of
// regions larger than maxValueBytes to a MemStream store, events carry their
// keys, and memwatch.Store reads them back (here and from another process).

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const memwatch = require('..');
const { Store } = memwatch;
const { project, node, describeRun, PACKAGE_DIR } = require('./helpers');

const BACKENDS = ['protect', 'writewatch', 'poll'];
const MODULE = JSON.stringify(require.resolve('..'));

let counter = 0;
/** A store name unique to this test run (pid) and test; the store is unlinked afterwards. */
async function withStoreName(fn) {
  const name = `memwatch-node-test-${process.pid}-${++counter}`;
  try {
    await fn(name);
  } finally {
    Store.unlink(name);
  }
}

/** Asserts two buffers hold exactly the same bytes (without printing 100 000 of them). */
function sameBytes(actual, expected, what) {
  assert.ok(Buffer.isBuffer(actual), `${what}: not a Buffer: ${actual}`);
  assert.equal(actual.length, expected.length, `${what}: length`);
  assert.ok(actual.equals(expected), `${what}: bytes differ (first at ${actual.findIndex((b, i) => b !== expected[i])})`);
}

/** Reads `keys` from store `name` in a separate Node.js process; returns the values (null if absent). */
function readInAnotherProcess(name, ...keys) {
  const r = node(
    [
      '-e',
      `const { Store } = require(${MODULE});
       const s = Store.open(process.argv[1]);
       const out = [];
       for (const key of process.argv.slice(2)) {
         const v = s.get(key);
         const len = Buffer.alloc(8);
         len.writeBigInt64LE(v === null ? -1n : BigInt(v.length));
         out.push(len, v ?? Buffer.alloc(0));
       }
       s.close();
       process.stdout.write(Buffer.concat(out));`,
      name,
      ...keys,
    ],
    { encoding: 'buffer', timeout: 30000 },
  );
  assert.equal(r.status, 0, `reader: status ${r.status}\n${r.stderr}`);
  assert.equal(r.stderr.length, 0, r.stderr.toString());
  const values = [];
  for (let i = 0; i < r.stdout.length; ) {
    const n = Number(r.stdout.readBigInt64LE(i));
    i += 8;
    if (n < 0) {
      values.push(null);
    } else {
      values.push(r.stdout.subarray(i, i + n));
      i += n;
    }
  }
  return values;
}

for (const backend of BACKENDS) {
  test(`[${backend}] a large region's values go to the store; keys read back exactly, also from another process`, () =>
    withStoreName((name) => {
      const w = memwatch.create({ backend, maxValueBytes: 4096 });
      try {
        assert.equal(w.valueStore, null);
        w.setValueStore(name, 8 * 1024 * 1024);
        assert.equal(w.valueStore, name);
        const big = Buffer.alloc(100000);
        for (let i = 0; i < big.length; i++) big[i] = (i * 7) % 251;
        const region = w.watch(big, 'big');
        const v0 = Buffer.from(big);
        big[50000] ^= 0xff;
        big[50001] ^= 0xff;
        const v1 = Buffer.from(big);

        const events = w.checkChanges();
        assert.equal(events.length, 1);
        const [e] = events;
        assert.equal(e.regionId, region);
        assert.equal(e.howBig, 100000);
        assert.deepEqual(e.changedRanges, [{ offset: 50000, length: 2 }]);
        assert.equal(e.oldValue, null);
        assert.equal(e.newValue, null);
        assert.equal(e.storageKeyOld, `memwatch/3/${region}/0`);
        assert.equal(e.storageKeyNew, `memwatch/3/${region}/1`);

        // Same process.
        const s = Store.open(name);
        try {
          assert.equal(s.name, name);
          sameBytes(s.get(e.storageKeyOld), v0, 'old (same process)');
          sameBytes(s.get(e.storageKeyNew), v1, 'new (same process)');
          sameBytes(s.get(Buffer.from(e.storageKeyNew)), v1, 'new, key as bytes');
        } finally {
          s.close();
        }
        // Another process.
        const [old, now] = readInAnotherProcess(name, e.storageKeyOld, e.storageKeyNew);
        sameBytes(old, v0, 'old (other process)');
        sameBytes(now, v1, 'new (other process)');

        // The next change: its old key is the previous new key.
        big[99999] ^= 0x01;
        const v2 = Buffer.from(big);
        const [e2, ...more] = w.checkChanges();
        assert.equal(more.length, 0);
        assert.deepEqual(e2.changedRanges, [{ offset: 99999, length: 1 }]);
        assert.equal(e2.storageKeyOld, e.storageKeyNew);
        assert.equal(e2.storageKeyNew, `memwatch/3/${region}/2`);
        const [old2, now2] = readInAnotherProcess(name, e2.storageKeyOld, e2.storageKeyNew);
        sameBytes(old2, v1, 'old of the 2nd change');
        sameBytes(now2, v2, 'new of the 2nd change');

        // Small regions keep carrying their values inline, no keys.
        const small = Buffer.from('small');
        w.watch(small, 'small');
        small[0] = 0x53; // 'S'
        const [e3, ...more3] = w.checkChanges();
        assert.equal(more3.length, 0);
        assert.deepEqual([e3.oldValue, e3.newValue], [Buffer.from('small'), Buffer.from('Small')]);
        assert.deepEqual([e3.storageKeyOld, e3.storageKeyNew], [null, null]);

        // Cleared: no more keys, and still no values.
        w.setValueStore(null);
        assert.equal(w.valueStore, null);
        big[0] ^= 0xff;
        big[1] ^= 0xff;
        const [e4, ...more4] = w.checkChanges();
        assert.equal(more4.length, 0);
        assert.deepEqual(e4.changedRanges, [{ offset: 0, length: 2 }]);
        assert.deepEqual([e4.oldValue, e4.newValue, e4.storageKeyOld, e4.storageKeyNew], [null, null, null, null]);
        // What was stored stays in the store.
        assert.deepEqual(
          readInAnotherProcess(name, `memwatch/3/${region}/2`, `memwatch/3/${region}/3`).map((v) => v && v.length),
          [100000, null],
        );
      } finally {
        w.close();
      }
    }));
}

test('events delivered to listeners, callbacks and iterators carry the keys too', () =>
  withStoreName(async (name) => {
    const w = memwatch.create({ backend: 'protect', maxValueBytes: 64 });
    try {
      w.setValueStore(name, 1024 * 1024);
      const big = memwatch.allocPageAligned(1000);
      const region = w.watch(big, 'big');
      const seen = { listener: [], callback: [], iterator: [] };
      w.on('change', (e) => seen.listener.push([e.storageKeyOld, e.storageKeyNew]));
      w.setCallback((e) => seen.callback.push([e.storageKeyOld, e.storageKeyNew]));
      const it = w.changes();
      big[10] = 1;
      big[11] = 2;
      assert.deepEqual(w.checkChanges(), []);
      const { value } = await it.next();
      seen.iterator.push([value.storageKeyOld, value.storageKeyNew]);
      await it.return();
      const keys = [`memwatch/3/${region}/0`, `memwatch/3/${region}/1`];
      assert.deepEqual(seen, { listener: [keys], callback: [keys], iterator: [keys] });
      const s = Store.open(name);
      try {
        sameBytes(s.get(keys[0]), Buffer.alloc(1000), 'old');
        const expected = Buffer.alloc(1000);
        expected[10] = 1;
        expected[11] = 2;
        sameBytes(s.get(keys[1]), expected, 'new');
      } finally {
        s.close();
      }
    } finally {
      w.close();
    }
  }));

test('setValueStore after watch() stores the current value of each large region (epoch 0)', () =>
  withStoreName((name) => {
    const w = memwatch.create({ backend: 'poll', maxValueBytes: 100 });
    try {
      const big = Buffer.alloc(10000, 'x');
      const region = w.watch(big, 'big');
      w.setValueStore(name); // default capacity
      const s = Store.open(name);
      try {
        sameBytes(s.get(`memwatch/3/${region}/0`), Buffer.alloc(10000, 'x'), 'epoch 0');
        big[0] = 0x79; // 'y'
        const [e, ...more] = w.checkChanges();
        assert.equal(more.length, 0);
        assert.equal(e.storageKeyOld, `memwatch/3/${region}/0`);
        const expected = Buffer.alloc(10000, 'x');
        expected[0] = 0x79;
        sameBytes(s.get(e.storageKeyNew), expected, 'epoch 1');
      } finally {
        s.close();
      }
    } finally {
      w.close();
    }
  }));

test('the watcher keeps writing to its store after a reader handle closes; close() detaches it', () =>
  withStoreName((name) => {
    const w = memwatch.create({ backend: 'poll', maxValueBytes: 100 });
    const big = Buffer.alloc(20000);
    w.watch(big, 'big');
    w.setValueStore(name, 1024 * 1024);
    Store.open(name).close();
    big[5] = 1;
    const [e] = w.checkChanges();
    assert.equal(readInAnotherProcess(name, e.storageKeyNew)[0][5], 1);
    w.close();
    assert.equal(w.valueStore, null);
    w.setValueStore(null); // allowed after close, like setCallback(null)
    assert.throws(() => w.setValueStore(name), { name: 'Error', code: 'ERR_MEMWATCH_CLOSED' });
  }));

test('Store: open/get/close/unlink, missing keys and stores, bad arguments', () =>
  withStoreName((name) => {
    assert.throws(() => Store.open(name), {
      name: 'Error',
      code: 'ERR_MEMWATCH_STORE_NOT_FOUND',
      message: `no store named "${name}" exists (watcher.setValueStore(name) creates one)`,
    });
    assert.equal(Store.unlink(name), false);
    const w = memwatch.create({ backend: 'poll' });
    try {
      w.setValueStore(name, 4096);
      // A second setValueStore of the same name opens the existing store.
      w.setValueStore(name, 1 << 30);
    } finally {
      w.close();
    }
    const s = Store.open(name);
    assert.equal(s.closed, false);
    assert.equal(s.get('memwatch/3/1/0'), null);
    assert.throws(() => s.get(''), { name: 'TypeError', code: 'ERR_MEMWATCH_STORE_KEY', message: 'key is empty' });
    assert.throws(() => s.get('k'.repeat(5000)), { name: 'TypeError', code: 'ERR_MEMWATCH_STORE_KEY' });
    assert.throws(() => s.get(42), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    s.close();
    s.close();
    assert.equal(s.closed, true);
    assert.throws(() => s.get('k'), { name: 'Error', code: 'ERR_MEMWATCH_STORE_CLOSED' });
    // Unlinking removes the name; a handle opened before keeps working.
    const kept = Store.open(name);
    assert.equal(Store.unlink(name), true);
    assert.equal(Store.unlink(name), false);
    assert.throws(() => Store.open(name), { code: 'ERR_MEMWATCH_STORE_NOT_FOUND' });
    assert.equal(kept.get('x'), null);
    kept.close();

    assert.throws(() => new Store(), { name: 'TypeError', code: 'ERR_ILLEGAL_CONSTRUCTOR' });
    assert.throws(() => Store.open(7), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => Store.open('a/b'), { name: 'TypeError', code: 'ERR_MEMWATCH_STORE_NAME' });
    assert.throws(() => Store.unlink(''), { name: 'TypeError', code: 'ERR_MEMWATCH_STORE_NAME' });
  }));

test('setValueStore: bad arguments', () => {
  const w = memwatch.create({ backend: 'poll' });
  try {
    assert.throws(() => w.setValueStore(42), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => w.setValueStore('a/b', 4096), { name: 'TypeError', code: 'ERR_MEMWATCH_STORE_NAME' });
    for (const bad of [0, -1, 1.5, '4096', null, 2 ** 60]) {
      assert.throws(() => w.setValueStore('memwatch-node-never-made', bad), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' }, String(bad));
    }
    const name = `memwatch-node-test-${process.pid}-small`;
    assert.throws(() => w.setValueStore(name, 100), { name: 'RangeError', code: 'ERR_MEMWATCH_STORE_CAPACITY' });
    assert.equal(Store.unlink(name), false, 'nothing was created');
    assert.equal(w.valueStore, null);
  } finally {
    w.close();
  }
});

test("the README's value-store example runs and prints what the README shows", () => {
  const readme = fs.readFileSync(path.join(PACKAGE_DIR, 'README.md'), 'utf8');
  const section = readme.split('\n## Value store')[1];
  assert.ok(section, 'README has a "## Value store" section');
  const code = /```js\n([\s\S]*?)```/.exec(section)[1];
  // The lines it prints are the comments right under each console.log.
  const lines = code.split('\n');
  const expected = [];
  lines.forEach((l, i) => {
    if (/^\s*console\.log\(/.test(l)) expected.push(lines[i + 1].trim().replace(/^\/\/ /, ''));
  });
  assert.ok(expected.length >= 2);
  const t = project('readme-store');
  try {
    fs.writeFileSync(path.join(t.dir, 'example.js'), code);
    const r = node([path.join(t.dir, 'example.js')], { cwd: t.dir, timeout: 30000 });
    assert.equal(r.status, 0, describeRun(r));
    assert.equal(r.stderr, '');
    assert.deepEqual(r.stdout.trimEnd().split('\n'), expected);
  } finally {
    t.cleanup();
  }
});
