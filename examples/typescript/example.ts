// memwatch in TypeScript: the seed's snippet, working (ESM, strict types).
//
//   (cd ../../bindings-node && npm ci && npm run build)   # once: builds the addon
//   npm install --no-package-lock && npx tsc && node dist/example.js
//
// Prints one line per change and exits by itself.
import { MemoryWatcher, type ChangeEvent } from 'memwatch';

const watcher = MemoryWatcher.create();
const buf = Buffer.alloc(100);
watcher.watch(buf, 'buffer');
watcher.on('change', (e: ChangeEvent) => {
  const before = e.oldValue?.[0];
  const after = e.newValue?.[0];
  console.log(`${e.variableName} changed: byte 0 ${before} -> ${after} at ${e.timestampNs} ns`);
});
buf[0] = 42;
