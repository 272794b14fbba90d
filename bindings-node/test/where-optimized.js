'use strict';
// Child of where.test.js, run with --allow-natives-syntax: a write from
// TurboFan-optimized code. Prints the where of the event and the lines, as JSON.
const memwatch = require('..');

function lineHere() {
  return Number(/:(\d+):\d+\)?$/.exec(new Error().stack.split('\n')[2])[1]);
}

const fnLine = lineHere() + 1;
function hotWriter(b, i) {
  b[i] = i;
}

const buf = memwatch.allocPageAligned(memwatch.pageSize());
const warm = memwatch.allocPageAligned(memwatch.pageSize());
%PrepareFunctionForOptimization(hotWriter);
hotWriter(warm, 1);
hotWriter(warm, 2);
%OptimizeFunctionOnNextCall(hotWriter);
hotWriter(warm, 3);
const w = memwatch.create({ locateWriters: true });
w.watch(buf, 'buf');
hotWriter(buf, 7);
// Bit 4 (16): optimized, bit 6 (64): by TurboFan (V8's OptimizationStatus).
const status = %GetOptimizationStatus(hotWriter);
const e = w.checkChanges()[0];
const bigints = (k, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v);
console.log(JSON.stringify({ status, fnLine, newByte: e.newValue[7], where: e.where }, bigints));
w.close();
