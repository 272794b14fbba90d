#!/usr/bin/env node
'use strict';
// Builds the native addon with cargo (release) and copies it next to index.js
// as memwatch.<platform>-<arch>.node, the file index.js loads and `npm pack`
// ships. Honours CARGO_TARGET_DIR; defaults to bindings-node/target.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const targetDir = process.env.CARGO_TARGET_DIR
  ? path.resolve(process.env.CARGO_TARGET_DIR)
  : path.join(root, 'target');
const profile = process.argv.includes('--debug') ? 'debug' : 'release';
const args = ['build', '--manifest-path', path.join(root, 'Cargo.toml')];
if (profile === 'release') args.push('--release');

const res = spawnSync('cargo', args, {
  stdio: 'inherit',
  env: { ...process.env, CARGO_TARGET_DIR: targetDir },
});
if (res.error) {
  console.error(`memwatch build: cannot run cargo: ${res.error.message}`);
  process.exit(1);
}
if (res.status !== 0) process.exit(res.status ?? 1);

const libName = { linux: 'libmemwatch_node.so', darwin: 'libmemwatch_node.dylib', win32: 'memwatch_node.dll' }[
  process.platform
];
const src = path.join(targetDir, profile, libName);
const dest = path.join(root, `memwatch.${process.platform}-${process.arch}.node`);
// Copy to a temporary name and rename, so that a running process that has
// the old file mapped keeps a valid mapping.
const tmp = `${dest}.tmp-${process.pid}`;
fs.copyFileSync(src, tmp);
fs.renameSync(tmp, dest);
// stderr, so that `npm pack --json` (which runs this as prepack) prints only its JSON.
console.error(`memwatch build: ${path.relative(root, src)} -> ${path.basename(dest)}`);
