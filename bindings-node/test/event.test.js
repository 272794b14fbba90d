'use strict';
// A ChangeEvent keeps the engine's event and converts each field when it is
// first read; to every plain-object operation it looks like a plain object.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const util = require('node:util');
const memwatch = require('..');

const FIELDS = [
  'seq', 'timestampNs', 'adapterId', 'regionId', 'variableName', 'where', 'howBig',
  'changedRanges', 'oldPreview', 'newPreview', 'oldValue', 'newValue',
  'storageKeyOld', 'storageKeyNew', 'metadata', 'coalesced',
];

/** One event of a poll watcher for buf[3]: 0 -> 7 in an 8-byte array named "b". */
function oneEvent() {
  const w = memwatch.create({ backend: 'poll' });
  const buf = new Uint8Array(8);
  const id = w.watch(buf, 'b', 'm');
  buf[3] = 7;
  const events = w.checkChanges();
  w.close();
  assert.equal(events.length, 1);
  return { e: events[0], id };
}

const OLD = Buffer.alloc(8);
const NEW = Buffer.from([0, 0, 0, 7, 0, 0, 0, 0]);

function assertValues(o, id, label) {
  assert.deepEqual(Object.keys(o), FIELDS, `${label}: keys in the documented order`);
  assert.equal(o.regionId, id, label);
  assert.equal(o.variableName, 'b', label);
  assert.equal(o.adapterId, 3, label);
  assert.equal(o.howBig, 8, label);
  assert.deepEqual(o.changedRanges, [{ offset: 3, length: 1 }], label);
  assert.deepEqual(Buffer.from(o.oldValue), OLD, label);
  assert.deepEqual(Buffer.from(o.newValue), NEW, label);
  assert.deepEqual(Buffer.from(o.oldPreview), OLD, label);
  assert.deepEqual(Buffer.from(o.newPreview), NEW, label);
  assert.equal(o.storageKeyOld, null, label);
  assert.equal(o.storageKeyNew, null, label);
  assert.equal(o.metadata, 'm', label);
  assert.equal(o.coalesced, 1, label);
  assert.equal(o.where.stack.length, 0, label);
}

test('fields are converted on first read, then kept as plain properties', () => {
  const { e, id } = oneEvent();
  for (const key of FIELDS.filter((k) => k !== 'where')) {
    assert.equal(typeof Object.getOwnPropertyDescriptor(e, key).get, 'function', `${key}: a getter until read`);
  }
  const first = e.newValue;
  assert.deepEqual(first, NEW);
  const after = Object.getOwnPropertyDescriptor(e, 'newValue');
  assert.equal(after.value, first, 'a plain data property now');
  assert.equal(after.writable && after.enumerable && after.configurable, true);
  assert.equal(e.newValue, first, 'the same Buffer on every read');
  assert.equal(typeof Object.getOwnPropertyDescriptor(e, 'oldValue').get, 'function', 'other fields still unread');
  assertValues(e, id, 'read');
});

test('JSON.stringify, spread, structuredClone, deepEqual and inspect see every field', () => {
  const { e, id } = oneEvent();
  const json = JSON.parse(JSON.stringify(e, (_k, x) => (typeof x === 'bigint' ? String(x) : x)));
  assert.deepEqual(Object.keys(json), FIELDS);
  assert.equal(json.variableName, 'b');
  assert.deepEqual(json.changedRanges, [{ offset: 3, length: 1 }]);
  assert.deepEqual(json.newValue, { type: 'Buffer', data: [...NEW] });

  const { e: e2, id: id2 } = oneEvent();
  assertValues({ ...e2 }, id2, 'spread');
  const { e: e3, id: id3 } = oneEvent();
  assertValues(structuredClone(e3), id3, 'structuredClone');
  assert.deepStrictEqual({ ...e }, e);
  assertValues(e, id, 'after JSON.stringify');

  const { e: e4 } = oneEvent();
  const shown = util.inspect(e4);
  assert.match(shown, /variableName: 'b'/);
  assert.match(shown, /changedRanges: \[ \{ offset: 3, length: 1 \} \]/);
  assert.doesNotMatch(shown, /Getter/);
});

test('writes replace a field; a frozen event is still readable and refuses writes', () => {
  const { e } = oneEvent();
  e.metadata = 'changed';
  assert.equal(e.metadata, 'changed');
  e.oldValue = null;
  assert.equal(e.oldValue, null);

  const { e: f, id } = oneEvent();
  Object.freeze(f);
  assertValues(f, id, 'frozen');
  assert.throws(() => {
    f.seq = 1;
  }, TypeError);
  assert.notEqual(f.seq, 1);
});
