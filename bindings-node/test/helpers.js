'use strict';
// Shared helpers for the tests that run separate Node processes.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const PACKAGE_DIR = path.resolve(__dirname, '..');
const REPO_DIR = path.resolve(PACKAGE_DIR, '..');
const EXAMPLES_DIR = path.join(REPO_DIR, 'examples');
const TSC = path.join(PACKAGE_DIR, 'node_modules', 'typescript', 'bin', 'tsc');

/** A fresh temporary directory, removed by the returned cleanup function. */
function tempDir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `memwatch-node-${prefix}-`));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/**
 * A project directory whose node_modules has `memwatch` (this package, as a
 * symlink, unless `install` put a real copy there), and TypeScript and
 * @types/node from this package's devDependencies.
 */
function project(prefix, { linkMemwatch = true, type } = {}) {
  const t = tempDir(prefix);
  const nm = path.join(t.dir, 'node_modules');
  fs.mkdirSync(path.join(nm, '@types'), { recursive: true });
  if (linkMemwatch) fs.symlinkSync(PACKAGE_DIR, path.join(nm, 'memwatch'), 'dir');
  fs.symlinkSync(path.join(PACKAGE_DIR, 'node_modules', '@types', 'node'), path.join(nm, '@types', 'node'), 'dir');
  fs.symlinkSync(path.join(PACKAGE_DIR, 'node_modules', 'undici-types'), path.join(nm, 'undici-types'), 'dir');
  const pkg = { name: `memwatch-test-${prefix}`, private: true };
  if (type) pkg.type = type;
  fs.writeFileSync(path.join(t.dir, 'package.json'), JSON.stringify(pkg, null, 2));
  return t;
}

/** Runs a command synchronously; returns {status, stdout, stderr, signal}. */
function run(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120000, ...options });
  if (r.error) throw r.error;
  return r;
}

/** Runs node with arguments. */
function node(args, options = {}) {
  return run(process.execPath, args, options);
}

/** Formats a finished process for assertion messages. */
function describeRun(r) {
  return `status ${r.status} signal ${r.signal}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

/** Copies the TypeScript example into `dir` and compiles it there with tsc; returns the tsc run. */
function buildTsExample(dir) {
  for (const f of ['example.ts', 'tsconfig.json']) {
    fs.copyFileSync(path.join(EXAMPLES_DIR, 'typescript', f), path.join(dir, f));
  }
  return node([TSC, '-p', dir]);
}

module.exports = {
  PACKAGE_DIR,
  REPO_DIR,
  EXAMPLES_DIR,
  TSC,
  tempDir,
  project,
  run,
  node,
  describeRun,
  buildTsExample,
};
