// ESM entry of memwatch: the same objects as the CommonJS entry (index.js).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const memwatch = require('./index.js');

/** Watches memory and reports every change; see index.d.ts. */
export const MemoryWatcher = memwatch.MemoryWatcher;
/** A running recorder (MemoryWatcher.recordTo). */
export const Recorder = memwatch.Recorder;
/** A read handle on a MemStream store (values of large regions, by key). */
export const Store = memwatch.Store;
/** Same as `new MemoryWatcher(options)`. */
export const create = memwatch.create;
/** The operating system's page size in bytes. */
export const pageSize = memwatch.pageSize;
/** Allocates a page-aligned Buffer that shares no page with other memory. */
export const allocPageAligned = memwatch.allocPageAligned;
/** True once memwatch's SIGSEGV handler is installed in this process. */
export const signalHandlerInstalled = memwatch.signalHandlerInstalled;
/** The backend names accepted by the `backend` option. */
export const BACKENDS = memwatch.BACKENDS;
/** The bound of a watcher's queue (the engine's QUEUE_CAP). */
export const QUEUE_CAP = memwatch.QUEUE_CAP;
/** How long the exit hook waits for pending changes, ms (the engine's EXIT_FLUSH_TIMEOUT). */
export const EXIT_FLUSH_TIMEOUT_MS = memwatch.EXIT_FLUSH_TIMEOUT_MS;
export default memwatch;
