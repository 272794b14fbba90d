'use strict';
// Runs every shared scenario in tests/behavior/*.json (read at test time)
// under every backend the scenario lists. Format: tests/behavior/README.md.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const memwatch = require('..');

const SCENARIO_DIR = process.env.MEMWATCH_BEHAVIOR_DIR ?? path.resolve(__dirname, '..', '..', 'tests', 'behavior');
const PAGE = memwatch.pageSize();

/** Resolves a size/offset: an integer, or "Np", "Np+M", "Np-M". */
function size(v) {
  if (typeof v === 'number') return v;
  const m = /^(\d+)p(?:([+-])(\d+))?$/.exec(v);
  if (!m) throw new Error(`bad size ${JSON.stringify(v)}`);
  let n = Number(m[1]) * PAGE;
  if (m[2] === '+') n += Number(m[3]);
  if (m[2] === '-') n -= Number(m[3]);
  return n;
}

/** Builds the bytes a value spec describes (hex string or {len, fill, patches}). */
function valueSpec(spec) {
  if (typeof spec === 'string') return Buffer.from(spec, 'hex');
  const out = Buffer.alloc(size(spec.len), Buffer.from(spec.fill ?? '00', 'hex')[0]);
  for (const [off, hex] of spec.patches ?? []) Buffer.from(hex, 'hex').copy(out, size(off));
  return out;
}

const OPTION_NAMES = {
  max_value_bytes: 'maxValueBytes',
  preview_bytes: 'previewBytes',
  snapshots: 'snapshots',
  writable_window_ms: 'writableWindowMs',
};

function watcherOptions(scenario, backend) {
  const opts = { backend };
  for (const [k, v] of Object.entries(scenario.options ?? {})) {
    const name = OPTION_NAMES[k];
    if (!name) throw new Error(`scenario option ${k} is not known to this runner`);
    opts[name] = typeof v === 'string' ? size(v) : v;
  }
  return opts;
}

/** Short printable form of a value for failure messages. */
function show(v) {
  if (Buffer.isBuffer(v)) return v.length > 48 ? `<${v.length} bytes ${v.subarray(0, 24).toString('hex')}...>` : v.toString('hex');
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? String(x) : x));
}

const KNOWN_FIELDS = new Set([
  'region', 'variable_name', 'how_big', 'metadata', 'changed_ranges', 'coalesced',
  'old_value', 'new_value', 'old_preview', 'new_preview',
]);

function compareEvent(where, exp, ev) {
  for (const k of Object.keys(exp)) {
    // A field this runner does not know would otherwise pass unchecked.
    if (!KNOWN_FIELDS.has(k)) assert.fail(`${where}: expected-event field ${k} is not known to this runner`);
  }
  const fail = (field, expected, actual) =>
    assert.fail(`${where}: region ${exp.region} field ${field}: expected ${show(expected)}, got ${show(actual)}`);
  if ('variable_name' in exp && ev.variableName !== exp.variable_name) fail('variable_name', exp.variable_name, ev.variableName);
  if ('how_big' in exp && ev.howBig !== size(exp.how_big)) fail('how_big', size(exp.how_big), ev.howBig);
  if ('metadata' in exp && ev.metadata !== exp.metadata) fail('metadata', exp.metadata, ev.metadata);
  if ('coalesced' in exp && ev.coalesced !== exp.coalesced) fail('coalesced', exp.coalesced, ev.coalesced);
  if ('changed_ranges' in exp) {
    const want = exp.changed_ranges.map(([o, l]) => [size(o), size(l)]);
    const got = ev.changedRanges.map((r) => [r.offset, r.length]);
    if (JSON.stringify(want) !== JSON.stringify(got)) fail('changed_ranges', want, got);
  }
  for (const [field, key] of [
    ['old_value', 'oldValue'],
    ['new_value', 'newValue'],
    ['old_preview', 'oldPreview'],
    ['new_preview', 'newPreview'],
  ]) {
    if (!(field in exp)) continue;
    if (exp[field] === null) {
      if (ev[key] !== null) fail(field, null, ev[key]);
      continue;
    }
    const want = valueSpec(exp[field]);
    if (!Buffer.isBuffer(ev[key]) || !want.equals(ev[key])) fail(field, want, ev[key]);
  }
}

/** The events of one check match the expected list: same count, one per region. */
function compareEvents(where, expected, events, ids, keyOf) {
  const got = events.map((e) => keyOf.get(e.regionId) ?? `unknown id ${e.regionId}`);
  const want = expected.map((e) => e.region);
  assert.equal(
    events.length,
    want.length,
    `${where}: expected ${want.length} event(s) for [${want}], got ${events.length} for [${got}]`,
  );
  for (const exp of expected) {
    const matching = events.filter((e) => e.regionId === ids.get(exp.region));
    assert.equal(matching.length, 1, `${where}: expected one event for region ${exp.region}, got [${got}]`);
    compareEvent(where, exp, matching[0]);
  }
}

/** snake_case scenario names -> the package's camelCase. */
const camel = (s) => s.replace(/_([a-z0-9])/g, (_m, c) => c.toUpperCase());

/**
 * The engine error kind (tests/behavior/README.md) of each documented error
 * code: bad arguments are Node-style TypeError/RangeError codes.
 */
const ERROR_KINDS = {
  ERR_INVALID_ARG_TYPE: 'invalid_argument',
  ERR_INVALID_ARG_VALUE: 'invalid_argument',
  ERR_MEMWATCH_EMPTY: 'invalid_argument',
  ERR_MEMWATCH_INVALID_ARGUMENT: 'invalid_argument',
  ERR_MEMWATCH_UNMAPPED: 'unmapped',
  ERR_MEMWATCH_READ_ONLY: 'read_only',
  ERR_MEMWATCH_OVERLAP: 'overlap',
  ERR_MEMWATCH_UNSUPPORTED: 'unsupported',
  ERR_MEMWATCH_CLOSED: 'closed',
  ERR_MEMWATCH_OS: 'os',
};

function expectError(where, kind, fn) {
  let got;
  try {
    got = fn();
  } catch (err) {
    assert.equal(ERROR_KINDS[err.code], kind, `${where}: expected a ${kind} error, got ${err.code}: ${err.message}`);
    return;
  }
  assert.fail(`${where}: expected a ${kind} error, got ${show(got)}`);
}

function runScenario(scenario, backend) {
  const w = memwatch.create(watcherOptions(scenario, backend));
  const delivered = [];
  try {
    const buffers = new Map();
    for (const b of scenario.buffers) {
      const buf = memwatch.allocPageAligned(size(b.size));
      buf.fill(Buffer.from(b.fill ?? '00', 'hex')[0]);
      buffers.set(b.name, buf);
    }
    const ids = new Map();
    const keyOf = new Map();
    for (const r of scenario.regions) {
      const buf = buffers.get(r.buffer);
      const off = size(r.offset);
      const view = buf.subarray(off, off + size(r.length));
      const id = w.watch(view, r.name, r.metadata ?? null);
      ids.set(r.key, id);
      keyOf.set(id, r.key);
    }
    scenario.steps.forEach((step, i) => {
      const where = `scenario ${scenario.name} [${backend}] step ${i}`;
      if (step.write) {
        const s = step.write;
        const buf = buffers.get(s.buffer);
        const off = size(s.offset);
        if (s.hex !== undefined) buf.set(Buffer.from(s.hex, 'hex'), off);
        else buf.fill(Buffer.from(s.byte, 'hex')[0], off, off + size(s.len));
      } else if (step.check) {
        compareEvents(where, step.check, w.checkChanges(), ids, keyOf);
      } else if (step.watch_error) {
        const e = step.watch_error;
        let target = null; // the null of a buffer-taking API
        if (!e.null) {
          const off = size(e.offset);
          target = buffers.get(e.buffer).subarray(off, off + size(e.length));
        }
        expectError(where, e.expect, () => w.watch(target, 'bad'));
      } else if (step.check_error) {
        expectError(where, step.check_error.expect, () => w.checkChanges());
      } else if (step.close) {
        w.close();
      } else if (step.stats) {
        const stats = w.getStats();
        for (const f of step.stats.fields ?? []) {
          assert.ok(camel(f) in stats, `${where}: stats field ${camel(f)} missing from ${show(stats)}`);
        }
        for (const [f, want] of Object.entries(step.stats.equal ?? {})) {
          assert.equal(stats[camel(f)], want, `${where}: stats.${camel(f)} in ${show(stats)}`);
        }
      } else if ('set_callback' in step) {
        w.setCallback(step.set_callback ? (e) => delivered.push(e) : null);
      } else if (step.check_callback) {
        assert.deepEqual(w.checkChanges(), [], `${where}: with a callback, checkChanges returned events`);
        compareEvents(where, step.check_callback, delivered.splice(0), ids, keyOf);
      } else if (step.unwatch) {
        const got = w.unwatch(ids.get(step.unwatch.region));
        assert.equal(got, step.unwatch.expect, `${where}: unwatch(${step.unwatch.region}) returned ${got}`);
      } else if (step.constants) {
        const want = step.constants.exit_flush_timeout_ms;
        assert.equal(memwatch.EXIT_FLUSH_TIMEOUT_MS, want, `${where}: EXIT_FLUSH_TIMEOUT_MS`);
      } else if (step.unwatch_unknown) {
        const got = w.unwatch(4000000000);
        assert.equal(got, step.unwatch_unknown.expect, `${where}: unwatch(4000000000) returned ${got}`);
      } else {
        assert.fail(`${where}: unknown step ${JSON.stringify(step)}`);
      }
    });
  } finally {
    w.close();
  }
}

const files = fs.readdirSync(SCENARIO_DIR).filter((f) => f.endsWith('.json')).sort();

test('the shared scenario folder has scenarios', () => {
  assert.ok(files.length >= 12, `only ${files.length} scenario files in ${SCENARIO_DIR}`);
});

for (const file of files) {
  const scenario = JSON.parse(fs.readFileSync(path.join(SCENARIO_DIR, file), 'utf8'));
  for (const backend of scenario.backends) {
    test(`behavior ${scenario.name} [${backend}]`, () => runScenario(scenario, backend));
  }
}
