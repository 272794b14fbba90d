'use strict';
// index.d.ts: compiles (with the TypeScript example and types-check.mts) and
// matches the runtime exactly: the same exports, the same class members, the
// same fields on events and statistics.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const ts = require('typescript');
const memwatch = require('..');
const { node, describeRun, TSC, PACKAGE_DIR } = require('./helpers');

const DTS = path.join(PACKAGE_DIR, 'index.d.ts');

test('tsc --noEmit over index.d.ts, examples/typescript and test/types-check.mts', { timeout: 180000 }, () => {
  const r = node([TSC, '-p', path.join(__dirname, 'tsconfig.json')], { timeout: 170000 });
  assert.equal(r.status, 0, describeRun(r));
});

let cached = null;

/** The declarations of index.d.ts, through the TypeScript checker (built once). */
function declarations() {
  if (cached) return cached;
  const program = ts.createProgram([DTS], { strict: true, types: ['node'], module: ts.ModuleKind.NodeNext });
  const checker = program.getTypeChecker();
  const file = program.getSourceFile(DTS);
  const moduleSymbol = checker.getSymbolAtLocation(file);
  const exports = checker.getExportsOfModule(moduleSymbol);
  const byName = new Map(exports.map((s) => [s.getName(), s]));
  const propsOf = (name) =>
    checker
      .getDeclaredTypeOfSymbol(byName.get(name))
      .getProperties()
      .map((p) => p.getName())
      .sort();
  cached = { checker, exports, byName, propsOf };
  return cached;
}

test('runtime exports == value exports declared in index.d.ts', () => {
  const { exports } = declarations();
  const declared = exports
    .filter((s) => s.flags & (ts.SymbolFlags.Value | ts.SymbolFlags.Class | ts.SymbolFlags.Function))
    .map((s) => s.getName())
    .sort();
  assert.deepEqual(Object.keys(memwatch).sort(), declared);
});

test('ESM entry exports == CommonJS exports + default', async () => {
  const esm = await import('../index.mjs');
  assert.deepEqual(Object.keys(esm).sort(), [...Object.keys(memwatch), 'default'].sort());
  for (const k of Object.keys(memwatch)) assert.equal(esm[k], memwatch[k], k);
  assert.equal(esm.default, memwatch);
});

test('MemoryWatcher members: every runtime member is declared and every declared member exists', () => {
  const { checker, byName } = declarations();
  const cls = byName.get('MemoryWatcher');
  const instanceType = checker.getDeclaredTypeOfSymbol(cls);
  // Members declared on MemoryWatcher itself (not only inherited from EventEmitter).
  const ownDeclared = new Set(
    cls.declarations[0].members.filter((m) => m.name).map((m) => m.name.getText()),
  );
  const runtimeOwn = Object.getOwnPropertyNames(memwatch.MemoryWatcher.prototype).filter((n) => n !== 'constructor');
  for (const name of runtimeOwn) assert.ok(ownDeclared.has(name), `runtime member ${name} is not declared`);
  // (Symbol-keyed members such as EventEmitter's optional captureRejectionSymbol
  // method are named "__@..." by the checker; they are EventEmitter's, not ours.)
  const declared = instanceType.getProperties().map((p) => p.getName()).filter((n) => !n.startsWith('__@'));
  for (const name of declared) {
    assert.ok(name in memwatch.MemoryWatcher.prototype, `declared member ${name} does not exist at runtime`);
  }
  const staticDeclared = checker
    .getTypeOfSymbolAtLocation(cls, cls.declarations[0])
    .getProperties()
    .map((p) => p.getName())
    .filter((n) => n !== 'prototype');
  const runtimeStatic = Object.getOwnPropertyNames(memwatch.MemoryWatcher).filter(
    (n) => !['length', 'name', 'prototype'].includes(n),
  );
  for (const name of runtimeStatic) assert.ok(staticDeclared.includes(name), `static ${name} is not declared`);
  assert.ok(staticDeclared.includes('create'));
});

test('Store members: every runtime member is declared and every declared member exists', () => {
  const { checker, byName } = declarations();
  const cls = byName.get('Store');
  const decl = cls.declarations[0];
  const instanceDeclared = checker.getDeclaredTypeOfSymbol(cls).getProperties().map((p) => p.getName()).sort();
  const runtimeOwn = Object.getOwnPropertyNames(memwatch.Store.prototype).filter((n) => n !== 'constructor').sort();
  assert.deepEqual(runtimeOwn, instanceDeclared);
  const staticDeclared = checker
    .getTypeOfSymbolAtLocation(cls, decl)
    .getProperties()
    .map((p) => p.getName())
    .filter((n) => n !== 'prototype')
    .sort();
  const runtimeStatic = Object.getOwnPropertyNames(memwatch.Store)
    .filter((n) => !['length', 'name', 'prototype'].includes(n))
    .sort();
  assert.deepEqual(runtimeStatic, staticDeclared);
  // The constructor is private in the declarations and refused at runtime.
  const ctor = decl.members.find((m) => m.kind === ts.SyntaxKind.Constructor);
  assert.ok(ctor && ctor.modifiers.some((m) => m.kind === ts.SyntaxKind.PrivateKeyword));
  assert.throws(() => new memwatch.Store(), { code: 'ERR_ILLEGAL_CONSTRUCTOR' });
});

test('ChangeEvent, Where, ChangedRange and WatcherStats fields == runtime objects', () => {
  const { propsOf } = declarations();
  for (const backend of ['protect', 'poll']) {
    const w = memwatch.create({ backend });
    try {
      const buf = Buffer.alloc(8);
      w.watch(buf, 'shape', 'm');
      buf[1] = 1;
      const [e] = w.checkChanges();
      assert.deepEqual(Object.keys(e).sort(), propsOf('ChangeEvent'), backend);
      assert.deepEqual(Object.keys(e.where).sort(), propsOf('Where'), backend);
      assert.deepEqual(Object.keys(e.changedRanges[0]).sort(), propsOf('ChangedRange'), backend);
      assert.deepEqual(Object.keys(w.getStats()).sort(), propsOf('WatcherStats'), backend);
      // The declared value types.
      assert.equal(typeof e.seq, 'number');
      assert.equal(typeof e.timestampNs, 'bigint');
      assert.ok(Buffer.isBuffer(e.oldPreview) && Buffer.isBuffer(e.newPreview));
      assert.ok(Buffer.isBuffer(e.oldValue) && Buffer.isBuffer(e.newValue));
      assert.equal(e.storageKeyOld, null);
      assert.equal(e.storageKeyNew, null);
      assert.equal(typeof e.where.file, 'string');
      assert.equal(typeof e.where.line, 'number');
      if (backend === 'protect') {
        assert.equal(typeof e.where.threadId, 'number');
        assert.equal(typeof e.where.faultIp, 'bigint');
      } else {
        assert.equal(e.where.threadId, null);
        assert.equal(e.where.faultIp, null);
      }
      for (const [k, v] of Object.entries(w.getStats())) {
        assert.equal(typeof v, k === 'backend' || k === 'backendReason' ? 'string' : 'number', k);
      }
    } finally {
      w.close();
    }
  }
});
