// memwatch in Node.js: the seed's snippet, working.
//
//   (cd ../../bindings-node && npm ci && npm run build)   # once: builds the addon
//   npm install --no-package-lock                          # links memwatch from ../../bindings-node
//   node example.js
//
// Prints one line per change and exits by itself: a watcher never keeps the
// process alive, and changes not yet delivered when the script ends are
// delivered before Node exits.
'use strict';

const memwatch = require('memwatch');

const watcher = memwatch.create();
const buf = Buffer.alloc(100);
watcher.watch(buf, 'buffer');
watcher.on('change', (e) =>
  console.log(
    `${e.variableName} changed: bytes ${e.changedRanges.map((r) => `[${r.offset}, +${r.length})`).join(' ')}, ` +
      `byte 0 ${e.oldValue[0]} -> ${e.newValue[0]} (backend ${watcher.getStats().backend})`,
  ),
);
buf[0] = 42;
