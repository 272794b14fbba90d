'use strict';
// `npm pack` yields a tarball that installs into an empty project, where
// both examples (JavaScript and compiled TypeScript) run.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { tempDir, run, node, describeRun, buildTsExample, EXAMPLES_DIR, PACKAGE_DIR, REPO_DIR } = require('./helpers');

const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const npmEnv = { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' };

/**
 * A fresh copy of the package's sources, as a clean checkout has them: no
 * memwatch.*.node, node_modules or target. `crates/` (the engine the addon
 * is built from) is linked in at the same relative place, beside the
 * workspace manifest they inherit from.
 */
function cleanCheckout(dir) {
  const pkg = path.join(dir, 'bindings-node');
  for (const f of ['package.json', 'index.js', 'index.mjs', 'index.d.ts', 'README.md', 'Cargo.toml', 'Cargo.lock', 'build.rs']) {
    fs.mkdirSync(pkg, { recursive: true });
    fs.copyFileSync(path.join(PACKAGE_DIR, f), path.join(pkg, f));
  }
  for (const d of ['src', 'scripts']) fs.cpSync(path.join(PACKAGE_DIR, d), path.join(pkg, d), { recursive: true });
  fs.symlinkSync(path.join(REPO_DIR, 'crates'), path.join(dir, 'crates'), 'dir');
  fs.copyFileSync(path.join(REPO_DIR, 'Cargo.toml'), path.join(dir, 'Cargo.toml')); // the workspace the crates inherit from
  assert.ok(!fs.readdirSync(pkg).some((f) => f.endsWith('.node')), 'no prebuilt addon in the copy');
  return pkg;
}

test('npm pack (as the README says, from a clean checkout) -> npm install into an empty project -> the examples run there', { timeout: 600000 }, () => {
  const t = tempDir('pack');
  try {
    // 1. Pack: the prepack script builds the addon (cargo, release) first.
    //    The copy shares the real target directory, so only the two path
    //    crates are compiled again.
    const src = cleanCheckout(path.join(t.dir, 'checkout'));
    const targetDir = process.env.CARGO_TARGET_DIR || path.join(PACKAGE_DIR, 'target');
    const packed = run(NPM, ['pack', '--json', '--pack-destination', t.dir], {
      cwd: src,
      env: { ...npmEnv, CARGO_TARGET_DIR: targetDir },
      timeout: 540000,
    });
    assert.equal(packed.status, 0, describeRun(packed));
    const info = JSON.parse(packed.stdout)[0];
    const files = info.files.map((f) => f.path).sort();
    assert.deepEqual(files, ['README.md', 'index.d.ts', 'index.js', 'index.mjs', 'memwatch.linux-x64.node', 'package.json']);
    const tarball = path.join(t.dir, info.filename);
    assert.ok(fs.existsSync(tarball));

    // 2. Install into an empty project (the package has no dependencies: no network needed).
    const app = path.join(t.dir, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true }, null, 2));
    const installed = run(NPM, ['install', '--offline', '--no-package-lock', tarball], { cwd: app, env: npmEnv });
    assert.equal(installed.status, 0, describeRun(installed));
    const dest = path.join(app, 'node_modules', 'memwatch');
    assert.ok(fs.existsSync(path.join(dest, 'memwatch.linux-x64.node')));
    assert.ok(!fs.lstatSync(dest).isSymbolicLink(), 'a real copy, not a link to the source tree');

    // 3. The JavaScript example, run in the project.
    fs.copyFileSync(path.join(EXAMPLES_DIR, 'node', 'example.js'), path.join(app, 'example.js'));
    const js = node([path.join(app, 'example.js')], { cwd: app, timeout: 30000 });
    assert.equal(js.status, 0, describeRun(js));
    assert.match(js.stdout, /^buffer changed: bytes \[0, \+1\), byte 0 0 -> 42 \(backend (writewatch|protect)\)\n$/);
    assert.doesNotMatch(js.stderr, /\S/, 'nothing on stderr');

    // 4. The TypeScript example, compiled against the installed package's
    //    index.d.ts (ESM) and run. @types/node comes from this package's
    //    devDependencies, linked in after the install.
    const tsDir = path.join(app, 'ts');
    fs.mkdirSync(tsDir);
    fs.writeFileSync(path.join(tsDir, 'package.json'), JSON.stringify({ private: true, type: 'module' }));
    const types = path.join(app, 'node_modules', '@types');
    fs.mkdirSync(types, { recursive: true });
    fs.symlinkSync(path.join(PACKAGE_DIR, 'node_modules', '@types', 'node'), path.join(types, 'node'), 'dir');
    fs.symlinkSync(path.join(PACKAGE_DIR, 'node_modules', 'undici-types'), path.join(app, 'node_modules', 'undici-types'), 'dir');
    const tsc = buildTsExample(tsDir);
    assert.equal(tsc.status, 0, describeRun(tsc));
    const tsRun = node([path.join(tsDir, 'dist', 'example.js')], { cwd: tsDir, timeout: 30000 });
    assert.equal(tsRun.status, 0, describeRun(tsRun));
    assert.match(tsRun.stdout, /^buffer changed: byte 0 0 -> 42 at \d+ ns\n$/);

    // 5. CommonJS require and ESM import of the installed copy resolve to it.
    const resolved = node(['-p', "require.resolve('memwatch')"], { cwd: app });
    assert.equal(resolved.stdout.trim(), path.join(fs.realpathSync(dest), 'index.js'));
  } finally {
    t.cleanup();
  }
});
