'use strict';
// worker_threads: a watcher living in a worker, and a SharedArrayBuffer
// written from a worker while the main thread watches it.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { Worker } = require('node:worker_threads');
const memwatch = require('..');

const BACKENDS = ['protect', 'writewatch', 'poll'];
const MODULE = require.resolve('..');

/** Runs `source` in a worker (with `memwatch` and `workerData` in scope) and resolves with its messages. */
function runWorker(source, workerData) {
  return new Promise((resolve, reject) => {
    const messages = [];
    const worker = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       const memwatch = require(${JSON.stringify(MODULE)});
       const post = (m) => parentPort.postMessage(m);
       ${source}`,
      { eval: true, workerData },
    );
    worker.on('message', (m) => messages.push(m));
    worker.on('error', reject);
    worker.on('exit', (code) => (code === 0 ? resolve(messages) : reject(new Error(`worker exited ${code}`))));
  });
}

for (const backend of BACKENDS) {
  test(`[${backend}] a watcher inside a worker`, { timeout: 60000 }, async () => {
    const messages = await runWorker(
      `
      const w = memwatch.create({ backend: workerData.backend });
      const buf = memwatch.allocPageAligned(32); // its own page: only the worker writes it
      w.watch(buf, 'in-worker', 'w');
      buf.write('abc', 10);
      const events = w.checkChanges();
      post(events.map((e) => ({
        name: e.variableName, metadata: e.metadata, ranges: e.changedRanges,
        newValue: e.newValue.toString('latin1'), threadId: e.where.threadId,
      })));
      // Asynchronous delivery inside the worker too.
      w.on('change', (e) => { post({ async: e.changedRanges }); w.close(); });
      buf[0] = 1;
      `,
      { backend },
    );
    assert.equal(messages.length, 2, JSON.stringify(messages));
    const [events, asyncMsg] = messages;
    assert.equal(events.length, 1);
    assert.equal(events[0].name, 'in-worker');
    assert.equal(events[0].metadata, 'w');
    assert.deepEqual(events[0].ranges, [{ offset: 10, length: 3 }]);
    assert.equal(events[0].newValue, `${'\0'.repeat(10)}abc${'\0'.repeat(19)}`);
    if (backend === 'protect') {
      assert.equal(typeof events[0].threadId, 'number');
      assert.notEqual(events[0].threadId, process.pid, 'written by the worker thread, not the main thread');
    } else {
      assert.equal(events[0].threadId, null);
    }
    assert.deepEqual(asyncMsg, { async: [{ offset: 0, length: 1 }] });
  });

  test(`[${backend}] a worker that ends with a watcher still open exits cleanly`, { timeout: 60000 }, async () => {
    const messages = await runWorker(
      `
      const w = memwatch.create({ backend: workerData.backend });
      const buf = Buffer.alloc(4096 * 4);
      w.watch(buf, 'left-open');
      w.on('change', () => {});
      buf[5] = 5;
      post('done');
      `,
      { backend },
    );
    assert.deepEqual(messages, ['done']);
    // The main thread's memwatch still works after the worker's environment was torn down.
    const w = memwatch.create({ backend });
    try {
      const b = Buffer.alloc(8);
      w.watch(b, 'main');
      b[1] = 1;
      assert.equal(w.checkChanges().length, 1);
    } finally {
      w.close();
    }
  });

  test(`[${backend}] a SharedArrayBuffer written from a worker, watched on the main thread`, { timeout: 60000 }, async () => {
    const w = memwatch.create({ backend });
    try {
      // A large SharedArrayBuffer (its own mapping) so that the watched page
      // holds nothing else the main thread might write: with protect, the
      // writer reported is the first thread to write the page.
      const sab = new SharedArrayBuffer(256 * 1024);
      const BASE = 64 * 1024;
      const id = w.watch(new Uint8Array(sab, BASE + 16, 32), 'shared');
      const messages = await runWorker(
        `
        const bytes = new Uint8Array(workerData.sab, workerData.BASE);
        bytes[15] = 0xaa;           // just before the watched range
        bytes.set([1, 2, 3], 20);   // inside: offsets 4..6 of the view
        bytes[48] = 0xbb;           // just after the watched range
        post('written');
        `,
        { sab, BASE },
      );
      assert.deepEqual(messages, ['written']);
      const events = w.checkChanges();
      assert.equal(events.length, 1);
      const e = events[0];
      assert.equal(e.regionId, id);
      assert.equal(e.howBig, 32);
      assert.deepEqual(e.changedRanges, [{ offset: 4, length: 3 }]);
      const want = Buffer.alloc(32);
      want.set([1, 2, 3], 4);
      assert.deepEqual(e.newValue, want);
      assert.deepEqual(e.oldValue, Buffer.alloc(32));
      if (backend === 'protect') {
        assert.equal(typeof e.where.threadId, 'number');
        assert.notEqual(e.where.threadId, process.pid, 'the worker thread wrote it');
      }
      assert.equal(new Uint8Array(sab)[BASE + 15], 0xaa);
      assert.equal(new Uint8Array(sab)[BASE + 48], 0xbb);

      // And delivered asynchronously to a main-thread listener.
      let timer;
      const got = new Promise((resolve, reject) => {
        w.once('change', resolve);
        timer = setTimeout(() => reject(new Error('no asynchronous event within 30 s')), 30000);
      }).finally(() => clearTimeout(timer));
      await runWorker(`new Uint8Array(workerData.sab)[workerData.BASE + 40] = 7;`, { sab, BASE });
      const e2 = await got;
      assert.deepEqual(e2.changedRanges, [{ offset: 24, length: 1 }]);
      assert.equal(e2.newValue[24], 7);
    } finally {
      w.close();
    }
  });
}
