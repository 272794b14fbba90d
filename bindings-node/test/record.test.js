'use strict';
// watcher.recordTo(url): events recorded into SQLite and read back (by
// Debian's sqlite3 shell) with exact old/new bytes; hostile names; errors.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const memwatch = require('..');

function tempDb() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memwatch-node-record-'));
  return { db: path.join(dir, 'events.db'), cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Rows of a query as objects, via `sqlite3 -json`. */
function query(db, sql) {
  const out = execFileSync('sqlite3', ['-json', db, sql], { encoding: 'utf8' });
  return out.trim() === '' ? [] : JSON.parse(out);
}

test('checkChanges events are recorded with exact old/new bytes', () => {
  const { db, cleanup } = tempDb();
  try {
    const w = new memwatch.MemoryWatcher({ backend: 'poll' });
    const buf = Buffer.from('hello world');
    w.watch(buf, 'greeting');
    const rec = w.recordTo(db);
    buf.write('HE', 0);
    const first = w.checkChanges();
    buf[10] = 0x44;
    const second = w.checkChanges();
    assert.equal(first.length + second.length, 2);
    assert.equal(rec.flush(), true);
    const rows = query(
      db,
      'SELECT seq, variable_name, hex(old_value) AS old, hex(new_value) AS new, changed_ranges, adapter FROM memwatch_events ORDER BY seq',
    );
    assert.deepEqual(
      rows.map((r) => [r.variable_name, r.old, r.new, r.changed_ranges, r.adapter]),
      [
        ['greeting', Buffer.from('hello world').toString('hex').toUpperCase(), Buffer.from('HEllo world').toString('hex').toUpperCase(), '[[0,2]]', 3],
        ['greeting', Buffer.from('HEllo world').toString('hex').toUpperCase(), Buffer.from('HEllo worlD').toString('hex').toUpperCase(), '[[10,1]]', 3],
      ],
    );
    assert.deepEqual(rows.map((r) => r.seq), [first[0].seq, second[0].seq].map(Number));
    const s = rec.stats();
    assert.equal(s.written, 2);
    assert.equal(s.dropped, 0);
    assert.equal(s.queued, 0);
    assert.equal(s.connected, true);
    const rid = query(db, 'SELECT CAST(recording_id AS TEXT) AS id, pid FROM memwatch_recordings');
    assert.deepEqual(rid, [{ id: s.recordingId, pid: process.pid }]);
    w.close();
    rec.close();
  } finally {
    cleanup();
  }
});

test('hostile names are stored byte-exact', () => {
  const { db, cleanup } = tempDb();
  try {
    const w = new memwatch.MemoryWatcher({ backend: 'poll' });
    const names = ["it's \"q\"", 'x\'); DROP TABLE memwatch_events; --', 'ünï\u{10ffff}'];
    const bufs = names.map(() => Buffer.alloc(4));
    names.forEach((n, i) => w.watch(bufs[i], n));
    const rec = w.recordTo(`sqlite:${db}`);
    for (const b of bufs) b[2] = 7;
    assert.equal(w.checkChanges().length, names.length);
    assert.equal(rec.flush(), true);
    const rows = query(db, 'SELECT hex(variable_name_bytes) AS nb, hex(new_value) AS nv FROM memwatch_events');
    assert.deepEqual(
      rows.map((r) => r.nb).sort(),
      names.map((n) => Buffer.from(n, 'utf8').toString('hex').toUpperCase()).sort(),
    );
    assert.ok(rows.every((r) => r.nv === '00000700'));
    w.close();
  } finally {
    cleanup();
  }
});

test('bad URLs and unreachable databases throw coded errors', () => {
  const w = new memwatch.MemoryWatcher({ backend: 'poll' });
  for (const bad of ['', 'mysql://localhost/x', 'http://example.invalid/']) {
    assert.throws(() => w.recordTo(bad), { name: 'TypeError', code: 'ERR_MEMWATCH_RECORD_URL' });
  }
  assert.throws(() => w.recordTo(42), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => w.recordTo('/nonexistent-memwatch-dir/x/events.db'), { code: 'ERR_MEMWATCH_DATABASE', message: /nonexistent/ });
  assert.throws(() => w.recordTo('postgresql://memwatch@127.0.0.1:1/memwatch'), { code: 'ERR_MEMWATCH_DATABASE', message: /PostgreSQL/ });
  const { db, cleanup } = tempDb();
  try {
    const rec = w.recordTo(db);
    assert.throws(() => rec.flush(-1), { code: 'ERR_INVALID_ARG_VALUE' });
    rec.close();
    rec.close();
  } finally {
    cleanup();
  }
  w.close();
  assert.throws(() => w.recordTo('x.db'), { code: 'ERR_MEMWATCH_CLOSED' });
});
