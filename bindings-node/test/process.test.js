'use strict';
// Whole-process behaviour: a watcher never keeps the process alive, pending
// changes are still delivered before exit, the ESM entry works, and the two
// examples run.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { project, node, describeRun, buildTsExample, EXAMPLES_DIR } = require('./helpers');

const BACKENDS = ['protect', 'writewatch', 'poll'];
const MODULE = JSON.stringify(require.resolve('..'));

/** Runs a CommonJS script in a child process; it must exit by itself well before the timeout. */
function script(source, env = {}) {
  const started = Date.now();
  const r = node(['-e', source], { timeout: 30000, env: { ...process.env, ...env } });
  return { ...r, ms: Date.now() - started };
}

for (const backend of BACKENDS) {
  test(`[${backend}] a script that watches with a listener and ends exits by itself, event delivered once`, () => {
    const r = script(`
      const memwatch = require(${MODULE});
      const w = memwatch.create({ backend: '${backend}', pollIntervalMs: 60000 });
      const buf = Buffer.alloc(16);
      w.watch(buf, 'tail');
      w.on('change', (e) => console.log('change', e.variableName, JSON.stringify(e.changedRanges)));
      buf[3] = 1;
    `);
    assert.equal(r.signal, null, `killed: ${describeRun(r)}`);
    assert.equal(r.status, 0, describeRun(r));
    // pollIntervalMs is a minute, so for poll only the exit flush can deliver it.
    assert.equal(r.stdout, 'change tail [{"offset":3,"length":1}]\n', describeRun(r));
  });

  test(`[${backend}] a script that sets a callback, writes and calls process.exit() still gets its event`, () => {
    const r = script(`
      const memwatch = require(${MODULE});
      const w = memwatch.create({ backend: '${backend}', pollIntervalMs: 60000 });
      const data = Buffer.alloc(8);
      w.watch(data, 'data');
      w.setCallback((e) => console.log('event', e.variableName, e.newValue.toString('hex'), e.coalesced));
      data[2] = 0xab;
      process.exit(0);
    `);
    assert.equal(r.signal, null, `killed: ${describeRun(r)}`);
    assert.equal(r.status, 0, describeRun(r));
    // pollIntervalMs is a minute and process.exit() skips 'beforeExit': only the 'exit' flush delivers it.
    assert.equal(r.stdout, 'event data 0000ab0000000000 1\n', describeRun(r));
  });

  test(`[${backend}] a script that only watches (no subscriber) exits by itself`, () => {
    const r = script(`
      const memwatch = require(${MODULE});
      const w = memwatch.create({ backend: '${backend}' });
      const buf = Buffer.alloc(4096);
      w.watch(buf, 'idle');
      buf[0] = 1;
      console.log('end of script');
    `);
    assert.equal(r.status, 0, describeRun(r));
    assert.equal(r.stdout, 'end of script\n');
  });

  test(`[${backend}] a for-await loop waiting for changes does not keep the process alive`, () => {
    const r = script(`
      const memwatch = require(${MODULE});
      const w = memwatch.create({ backend: '${backend}' });
      const buf = Buffer.alloc(8);
      w.watch(buf, 'loop');
      (async () => {
        for await (const e of w.changes()) console.log('change', JSON.stringify(e.changedRanges));
        console.log('loop ended');
      })();
      buf[2] = 2;
    `);
    assert.equal(r.status, 0, describeRun(r));
    assert.equal(r.stdout, 'change [{"offset":2,"length":1}]\n', describeRun(r));
  });
}

test('a callback that throws during asynchronous delivery is an uncaught exception, as in any Node callback', () => {
  const r = script(`
    const memwatch = require(${MODULE});
    const w = memwatch.create({ backend: 'protect' });
    const buf = Buffer.alloc(8);
    w.watch(buf, 'x');
    w.setCallback(() => { throw new Error('thrown in callback'); });
    process.on('uncaughtException', (err) => {
      console.log('uncaught:', err.message, 'callbackErrors:', w.getStats().callbackErrors);
      w.close();
    });
    buf[0] = 1;
  `);
  assert.equal(r.status, 0, describeRun(r));
  assert.equal(r.stdout, 'uncaught: thrown in callback callbackErrors: 1\n');
});

test('ESM: import memwatch, { MemoryWatcher, create } from "memwatch"', () => {
  const p = project('esm', { type: 'module' });
  try {
    fs.writeFileSync(
      path.join(p.dir, 'main.js'),
      `import memwatch, { MemoryWatcher, create, pageSize, allocPageAligned, signalHandlerInstalled, BACKENDS } from 'memwatch';
       import { createRequire } from 'node:module';
       const cjs = createRequire(import.meta.url)('memwatch');
       if (memwatch !== cjs || MemoryWatcher !== cjs.MemoryWatcher || create !== cjs.create) throw new Error('ESM and CJS differ');
       const w = new MemoryWatcher({ backend: 'poll' });
       const buf = allocPageAligned(pageSize());
       w.watch(buf, 'esm');
       buf[9] = 9;
       const [e] = w.checkChanges();
       console.log(e.variableName, e.changedRanges[0].offset, typeof signalHandlerInstalled(), BACKENDS.join(','));
       w.close();`,
    );
    const r = node([path.join(p.dir, 'main.js')], { cwd: p.dir });
    assert.equal(r.status, 0, describeRun(r));
    assert.equal(r.stdout, 'esm 9 boolean auto,protect,writewatch,poll\n');
  } finally {
    p.cleanup();
  }
});

test('examples/node/example.js runs and prints its change once', () => {
  const p = project('example-node');
  try {
    fs.copyFileSync(path.join(EXAMPLES_DIR, 'node', 'example.js'), path.join(p.dir, 'example.js'));
    const r = node([path.join(p.dir, 'example.js')], { cwd: p.dir, timeout: 30000 });
    assert.equal(r.status, 0, describeRun(r));
    assert.match(r.stdout, /^buffer changed: bytes \[0, \+1\), byte 0 0 -> 42 \(backend (writewatch|protect)\)\n$/);
  } finally {
    p.cleanup();
  }
});

test('examples/typescript/example.ts compiles (strict) and runs', () => {
  const p = project('example-ts', { type: 'module' });
  try {
    const tsc = buildTsExample(p.dir);
    assert.equal(tsc.status, 0, describeRun(tsc));
    const r = node([path.join(p.dir, 'dist', 'example.js')], { cwd: p.dir, timeout: 30000 });
    assert.equal(r.status, 0, describeRun(r));
    assert.match(r.stdout, /^buffer changed: byte 0 0 -> 42 at \d+ ns\n$/);
  } finally {
    p.cleanup();
  }
});

test('a watcher without subscribers that is garbage-collected is closed (its pages unprotected)', () => {
  const r = node(
    [
      '--expose-gc',
      '-e',
      `
      const memwatch = require(${MODULE});
      const probe = memwatch.create({ backend: 'protect' });
      const buf = memwatch.allocPageAligned(memwatch.pageSize() * 3);
      (function () {
        const w = memwatch.create({ backend: 'protect' });
        w.watch(buf, 'dropped');
      })();
      const before = probe.getStats().protectedPages;
      (async () => {
        for (let i = 0; i < 50 && probe.getStats().protectedPages !== 0; i++) {
          global.gc();
          await new Promise((r) => setTimeout(r, 10)); // finalizers run after GC, on the loop
        }
        buf[0] = 1; // a plain write again
        console.log(before, probe.getStats().protectedPages, buf[0]);
        probe.close();
      })();
      `,
    ],
    { timeout: 30000 },
  );
  assert.equal(r.status, 0, describeRun(r));
  assert.equal(r.stdout, '3 0 1\n');
});
