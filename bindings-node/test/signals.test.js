'use strict';
// V8's own use of SIGSEGV keeps working while memwatch's protect backend is
// active. On x86_64 Linux, Node runs WebAssembly with guard regions: an
// out-of-bounds memory access faults (SIGSEGV) and V8's trap handler turns
// the fault into a RuntimeError. memwatch's handler sits in front of it and
// must forward every fault that is not its own.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const memwatch = require('..');

// (module
//   (import "m" "mem" (memory 1))
//   (func (export "load") (param i32) (result i32) local.get 0 i32.load)
//   (func (export "store") (param i32 i32) local.get 0 local.get 1 i32.store))
const WASM = Buffer.from(
  '0061736d01000000' + // magic, version
    '010b02' + '60017f017f' + '60027f7f00' + // types: (i32)->i32, (i32,i32)->()
    '020a01' + '016d' + '036d656d' + '020001' + // import m.mem memory min 1
    '03030200' + '01' + // functions: type 0, type 1
    '071002' + '046c6f61640000' + '0573746f72650001' + // exports load=0, store=1
    '0a1302' + '0700200028020' + '00b' + '090020002001360200' + '0b', // code
  'hex',
);

function vmSize() {
  const m = /VmSize:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return Number(m[1]) * 1024;
}

function instantiate() {
  const before = vmSize();
  const mem = new WebAssembly.Memory({ initial: 1 });
  const reserved = vmSize() - before;
  const instance = new WebAssembly.Instance(new WebAssembly.Module(WASM), { m: { mem } });
  return { mem, reserved, load: instance.exports.load, store: instance.exports.store };
}

// Each test runs plain and with locateWriters (V8's stack sampled in memwatch's handler).
for (const locate of [false, true]) {
const opts = locate ? { backend: 'protect', locateWriters: true } : { backend: 'protect' };
const tag = locate ? ' [locateWriters]' : '';

test(`wasm out-of-bounds still throws RuntimeError, 10 000 times, while protect watches; exact events after${tag}`, { timeout: 60000 }, () => {
  const { mem, reserved, load } = instantiate();
  // Guard regions (and so signal-based bounds checks) are in use: V8
  // reserves many GiB of address space for one 64 KiB memory.
  assert.ok(reserved >= 4 * 2 ** 30, `wasm memory reserved only ${reserved} bytes: no guard regions, no trap handler`);
  new Uint32Array(mem.buffer)[1] = 0x11223344;
  assert.equal(load(4), 0x11223344);

  const w = memwatch.create(opts);
  try {
    const buf = memwatch.allocPageAligned(memwatch.pageSize());
    const id = w.watch(buf, 'watched');
    assert.equal(memwatch.signalHandlerInstalled(), true, 'memwatch handler is in front of V8');
    let traps = 0;
    let events = 0;
    for (let i = 0; i < 10000; i++) {
      try {
        load(0x7fff0000 + (i % 1024) * 4); // far past the 64 KiB memory
        assert.fail('out-of-bounds load returned');
      } catch (err) {
        assert.ok(err instanceof WebAssembly.RuntimeError, `iteration ${i}: ${err}`);
        assert.match(err.message, /memory access out of bounds/);
        traps++;
      }
      if (i % 500 === 0) {
        // A write of ours to the protected page between the traps: memwatch's
        // own fault, handled by memwatch, reported exactly.
        const k = i / 500;
        buf[k] = k + 1;
        const got = w.checkChanges();
        assert.equal(got.length, 1, `iteration ${i}: ${got.length} events`);
        assert.equal(got[0].regionId, id);
        assert.deepEqual(got[0].changedRanges, [{ offset: k, length: 1 }]);
        assert.equal(got[0].oldValue[k], 0);
        assert.equal(got[0].newValue[k], k + 1);
        assert.equal(got[0].where.threadId, process.pid);
        if (locate) assert.equal(got[0].where.stack[0].file, __filename, 'the JS frame of this test comes first');
        events++;
      }
    }
    assert.equal(traps, 10000);
    assert.equal(events, 20);
    // In-bounds wasm still works, and memwatch still works after the loop.
    assert.equal(load(4), 0x11223344);
    buf.fill(0xee, 100, 110);
    const after = w.checkChanges();
    assert.equal(after.length, 1);
    assert.deepEqual(after[0].changedRanges, [{ offset: 100, length: 10 }]);
    assert.deepEqual(after[0].newValue.subarray(100, 110), Buffer.alloc(10, 0xee));
  } finally {
    w.close();
  }
});

test(`wasm code writing into watched wasm memory is reported (protect)${tag}`, { timeout: 60000 }, () => {
  const { mem, load, store } = instantiate();
  const w = memwatch.create(opts);
  try {
    const view = new Uint8Array(mem.buffer, 64, 16);
    w.watch(view, 'wasm-heap');
    store(64 + 4, 0x0a0b0c0d); // a fault in wasm code on memwatch's page
    const got = w.checkChanges();
    assert.equal(got.length, 1);
    assert.deepEqual(got[0].changedRanges, [{ offset: 4, length: 4 }]);
    assert.deepEqual(got[0].newValue, Buffer.from('000000000d0c0b0a0000000000000000', 'hex'));
    assert.equal(got[0].where.threadId, process.pid);
    if (locate) assert.ok(got[0].where.stack.length > 0, 'a stack for the wasm write');
    assert.equal(load(64 + 4), 0x0a0b0c0d);
    assert.throws(() => load(0x7fff0000), WebAssembly.RuntimeError);
  } finally {
    w.close();
  }
});
}
