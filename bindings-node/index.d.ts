// Type definitions for memwatch (Node.js). They describe index.js exactly;
// test/types.test.js checks that every runtime export and method is declared
// here and the other way round.

/// <reference types="node" />
import { EventEmitter } from 'node:events';

/**
 * Detection mechanism.
 * - `"auto"`: `"writewatch"` where the kernel has it, else `"protect"`
 *   (`getStats().backendReason` says why).
 * - `"writewatch"`: userfaultfd write-protection + PAGEMAP_SCAN (Linux 6.7+):
 *   no signals; system calls writing into watched memory succeed and are
 *   reported; no writer thread.
 * - `"protect"`: page protection + SIGSEGV handler; knows the writing thread.
 *   A system call that writes into a watched page fails with EFAULT.
 * - `"poll"`: snapshot + hash every `pollIntervalMs`; works on any memory.
 */
export type Backend = 'auto' | 'protect' | 'writewatch' | 'poll';

/** Options of a {@link MemoryWatcher}. Every field is optional; unknown fields are rejected. */
export interface WatcherOptions {
  /** Detection mechanism; default `"auto"`. */
  backend?: Backend;
  /** protect backend: how long a page stays writable after its first write before it is re-checked, ms; default 5. The writewatch backend scans every tenth of it. */
  writableWindowMs?: number;
  /** poll backend: how often regions are hashed, ms; default 100. */
  pollIntervalMs?: number;
  /** Events carry the whole old and new value when the region is at most this many bytes; default 4096. */
  maxValueBytes?: number;
  /** Bytes of old/new preview carried in every event; default 256. */
  previewBytes?: number;
  /** Capacity of the process-wide fault ring, used when the engine starts; default 32768. */
  ringCapacity?: number;
  /** Keep a copy of each region for old values and exact ranges; default true. */
  snapshots?: boolean;
  /**
   * Locate every writer: events carry `where` with the writing thread, the JS
   * function, script and line, and the stack (JS frames first, then native
   * ones). `"auto"` then picks protect; `"writewatch"` and `"poll"` are
   * refused. Only the first write to a page in its writable window is located
   * (`where.unattributedFaults` counts the others). Default false.
   */
  locateWriters?: boolean;
  /** With `locateWriters`: frames captured per located write, 1..32; default 8. */
  stackDepth?: number;
}

/** A run of changed bytes, relative to the start of the watched target. */
export interface ChangedRange {
  /** Offset from the start of the watched bytes. */
  offset: number;
  /** Number of changed bytes. */
  length: number;
}

/** One frame of a writer's stack (innermost first). */
export interface Frame {
  /** Instruction address: the write itself for a native first frame, a return address - 1 for native callers, a code address (bytecode or machine code) for JS frames. */
  ip: bigint;
  /** Executable or shared library of a native frame; the script of a JS frame; `""` when unknown. */
  module: string;
  /** `ip` minus the module's load address (native), or minus the JS function's code start. */
  moduleOffset: number;
  /** Function name (`""` when unknown; an anonymous JS function is `"(anonymous)"`). */
  function: string;
  /** Source file (a JS frame's script: a path, or a `file:` URL for ES modules); `""` without debug info. */
  file: string;
  /** Source line, 1-based; for a JS frame the line where its function starts; 0 when unknown. */
  line: number;
  /** This frame was inlined into the next one. */
  inlined: boolean;
}

/** Where a change was made, as far as the backend can tell. */
export interface Where {
  /** Kernel thread id of the writer (protect backend); `null` when unknown (poll backend). The main thread's id equals `process.pid`. */
  threadId: number | null;
  /** Name of the writing thread (`"node"` for the main thread); `""` unless `locateWriters`. */
  threadName: string;
  /** Instruction pointer of the write; `null` when unknown. */
  faultIp: bigint | null;
  /** Module (or script) of the user frame, the first frame of `stack` outside memwatch and memcpy-style helpers; `""` unless located. */
  module: string;
  /** Offset of the user frame in `module`. */
  moduleOffset: number;
  /** Source file of the user frame; `""` unless located. */
  file: string;
  /** Function of the user frame; `""` unless located. */
  function: string;
  /** Source line of the user frame (for JS, the line where the writing function starts); 0 when unknown. */
  line: number;
  /** First writes to other pages of the region merged into this event without a location of their own. */
  unattributedFaults: number;
  /** The writer's stack, innermost first (JS frames, then native ones); empty unless `locateWriters`. */
  stack: Frame[];
}

/** One detected change to one watched target. */
export interface ChangeEvent {
  /** Process-wide sequence number, increasing in detection order. */
  seq: number;
  /** CLOCK_MONOTONIC nanoseconds of the first write seen (protect) or of detection (poll). */
  timestampNs: bigint;
  /** Which language adapter made the watcher: 3 for Node.js. */
  adapterId: number;
  /** The id `watch()` returned. */
  regionId: number;
  /** The name given to `watch()`. */
  variableName: string;
  /** Who wrote it, where known. */
  where: Where;
  /** Size of the watched target in bytes. */
  howBig: number;
  /** The changed byte ranges, ascending. */
  changedRanges: ChangedRange[];
  /** First `previewBytes` bytes before the change (empty without snapshots). */
  oldPreview: Buffer;
  /** First `previewBytes` bytes after the change. */
  newPreview: Buffer;
  /** The whole old value when `howBig <= maxValueBytes` and snapshots are on, else `null`. */
  oldValue: Buffer | null;
  /** The whole new value when `howBig <= maxValueBytes`, else `null`. */
  newValue: Buffer | null;
  /**
   * With a value store set (`setValueStore`) and `howBig > maxValueBytes`:
   * the store key (`"memwatch/{adapterId}/{regionId}/{epoch}"`) of the old
   * value, while the store still holds it (read it with {@link Store.get});
   * else `null`.
   */
  storageKeyOld: string | null;
  /**
   * With a value store set and `howBig > maxValueBytes`: the store key of the
   * new value, when the store took it; else `null`.
   */
  storageKeyNew: string | null;
  /** The metadata given to `watch()`, or `null`. */
  metadata: string | null;
  /**
   * Changes this event stands for: 1, or more when later changes of the
   * region were merged into it while it waited in a full queue
   * ({@link QUEUE_CAP} events, in the engine or, while the JS thread is busy, here):
   * then the old values are the first change's, the new values the last's,
   * and `changedRanges` the union.
   */
  coalesced: number;
}

/** Counters of one watcher (`faults` and `droppedWheres` are process-wide). */
export interface WatcherStats {
  /** Backend this watcher uses (`"protect"`, `"poll"`, ...). */
  backend: string;
  /** Why a better backend was not used; `""` when the preferred one works. */
  backendReason: string;
  /** Regions watched. */
  regions: number;
  /** Pages the engine keeps protected for all watchers. */
  protectedPages: number;
  /** Write faults handled by the engine since it started (all watchers). */
  faults: number;
  /** Events this watcher produced. */
  events: number;
  /** Regions of a writewatch watcher that userfaultfd refused and that use protect instead. */
  fallbackRegions: number;
  /** Regions in shared memory watched with protect or writewatch, which cannot see other processes' writes (reason in `backendReason`). */
  sharedRegions: number;
  /** Regions dropped because their memory was unmapped while watched (process-wide). */
  goneRegions: number;
  /** Protect pages that could not be made read-only again (near vm.max_map_count; polled instead, process-wide). */
  reprotectFailures: number;
  /** Faults whose thread/IP was dropped because the ring was full (the change itself never is). */
  droppedWheres: number;
  /** Native bytes held for this watcher's regions. */
  nativeBytes: number;
  /** Bytes of that which are snapshots. */
  snapshotBytes: number;
  /** Events detected but not yet delivered or returned (the engine's queue plus, while the JS thread is busy, the binding's: each at most {@link QUEUE_CAP} or one per region). */
  pendingEvents: number;
  /** Changes merged into an event already pending for the same region (the queue held {@link QUEUE_CAP} events). */
  coalescedEvents: number;
  /** Pages written nonstop that are left writable and polled every poll interval instead, their writer not located (process-wide; 0 when nothing is written nonstop). */
  hotPages: number;
  /** Callbacks and 'change' listeners that threw. */
  callbackErrors: number;
  /** Median first-write-to-delivery latency, ns. */
  latencyP50Ns: number;
  /** 99th percentile of the same, ns. */
  latencyP99Ns: number;
}

/** Anything `watch()` accepts: a Buffer, any TypedArray, a DataView, an ArrayBuffer or a SharedArrayBuffer. */
export type WatchTarget = ArrayBufferView | ArrayBuffer | SharedArrayBuffer;

/** Events a {@link MemoryWatcher} emits. */
export interface MemoryWatcherEvents {
  /** A watched target changed. */
  change: [event: ChangeEvent];
  /** A callback or 'change' listener threw (without an 'error' listener the error is rethrown). */
  error: [error: unknown];
  /** The watcher was closed. */
  close: [];
}

/**
 * Watches memory and reports every change. Changes reach every subscriber
 * exactly once: the callback (`setCallback`), each 'change' listener and each
 * `changes()` iterator, on the JavaScript thread. With no subscriber, events
 * wait for `checkChanges()`. A watcher never keeps the process alive by
 * itself; changes not yet delivered when the process is about to exit are
 * delivered then (on 'beforeExit' and 'exit', i.e. also at `process.exit()`;
 * waiting {@link EXIT_FLUSH_TIMEOUT_MS} at most for all watchers together).
 */
/** Counters of a {@link Recorder}. */
export interface RecorderStats {
  written: number;
  dropped: number;
  abandoned: number;
  queued: number;
  batches: number;
  reconnects: number;
  connected: boolean;
  lastError: string;
  /** memwatch_recordings.recording_id, a decimal string (64 bits). */
  recordingId: string;
}

/** A running recorder, made by {@link MemoryWatcher.recordTo}. */
export declare class Recorder {
  stats(): RecorderStats;
  /** Blocks up to `timeoutMs` (default 10000) until everything queued before the call is written; false on timeout. */
  flush(timeoutMs?: number): boolean;
  /** Stops recording after writing what is queued. Idempotent. */
  close(): void;
}

export declare class MemoryWatcher extends EventEmitter {
  /**
   * Creates a watcher.
   * @throws {TypeError} on an unknown option or a bad option value.
   * @throws {Error} `code: "ERR_MEMWATCH_UNSUPPORTED"` when the backend cannot be used here.
   */
  constructor(options?: WatcherOptions);
  /** Same as `new MemoryWatcher(options)`. */
  static create(options?: WatcherOptions): MemoryWatcher;
  /** True once `close()` was called. */
  readonly closed: boolean;
  /**
   * Starts watching the bytes of `target` (a view watches exactly its byte
   * range) and returns the region id (>= 1, never reused). The target is kept
   * alive while watched. Do not transfer (detach) a watched ArrayBuffer.
   * @throws {TypeError} for a value that is not a buffer, a detached or resizable ArrayBuffer, a non-string name.
   * @throws {RangeError} for an empty (0-byte) target.
   * @throws {Error} `code` `"ERR_MEMWATCH_OVERLAP"` when the bytes overlap a region of this watcher, `"ERR_MEMWATCH_CLOSED"` after close.
   */
  watch(target: WatchTarget, name?: string, metadata?: string | null): number;
  /**
   * Stops watching a region; `false` if the id is unknown or already unwatched.
   * @throws {Error} `code: "ERR_MEMWATCH_CLOSED"` after close.
   */
  unwatch(id: number): boolean;
  /** Sets, or with `null` clears, the callback that receives every change. */
  setCallback(callback: ((event: ChangeEvent) => void) | null): void;
  /**
   * Detects changes now, synchronously: every write made before the call is
   * in the result or has been delivered. With a subscriber (callback,
   * 'change' listener, iterator) the events are delivered to it before this
   * returns and the result is empty.
   * @throws {Error} `code: "ERR_MEMWATCH_CLOSED"` after close.
   */
  checkChanges(): ChangeEvent[];
  /**
   * Sends the whole old and new values of regions larger than `maxValueBytes`
   * to the MemStream store `name`, so that their events carry
   * `storageKeyOld` / `storageKeyNew` (readable with {@link Store}, from any
   * process on the machine). The store is created with an arena of
   * `capacity` bytes (default 64 MiB) and LRU eviction, or opened as it is if
   * it exists. The current value of every large region is stored at once.
   * Keys name no process: give each watching process a store of its own.
   * `null` detaches the store (no more keys; also allowed after close).
   * @throws {TypeError} for a name that is not a string or null or not a valid store name (`code: "ERR_MEMWATCH_STORE_NAME"`), a capacity that is not an integer >= 1.
   * @throws {RangeError} `code: "ERR_MEMWATCH_STORE_CAPACITY"` for a capacity the store refuses (4 KiB to 1 TiB).
   * @throws {Error} `code` `"ERR_MEMWATCH_CLOSED"` after close, `"ERR_MEMWATCH_STORE"` when the store cannot be created or opened.
   */
  setValueStore(name: string | null, capacity?: number): void;
  /** Name of the value store set with `setValueStore`, or `null`. */
  readonly valueStore: string | null;
  /**
   * Records every change event of this watcher into SQLite (a file path or
   * `sqlite:PATH`) or PostgreSQL (`postgresql://...`): tables
   * memwatch_recordings, memwatch_events, memwatch_losses. Never blocks the
   * watched program (bounded queue; what does not fit is counted).
   * @throws {TypeError} `code: "ERR_MEMWATCH_RECORD_URL"` for a URL that is neither.
   * @throws {Error} `code: "ERR_MEMWATCH_DATABASE"` when the database cannot be opened or reached, `"ERR_MEMWATCH_CLOSED"` after close.
   */
  recordTo(url: string): Recorder;
  /** Statistics of this watcher (also after close). */
  getStats(): WatcherStats;
  /** Unwatches everything, ends the iterators, emits 'close'. Idempotent. */
  close(): void;
  /**
   * An async iterator over changes: `for await (const e of watcher.changes())`.
   * Ends when the watcher is closed or the loop is left. Waiting on it does not
   * keep the process alive (like `events.on()`). Aborting `signal` cancels
   * it: the events it already received come first, then `next()` rejects with
   * an `AbortError` (`code: "ABORT_ERR"`); later changes go to the other
   * subscribers or wait for `checkChanges()`.
   */
  changes(options?: { signal?: AbortSignal }): AsyncIterableIterator<ChangeEvent>;
  /** Removes all listeners of `event`, or of every event. */
  removeAllListeners(event?: string | symbol): this;

  /** Adds a listener ('change' turns delivery on; see {@link MemoryWatcherEvents}). */
  on<K extends keyof MemoryWatcherEvents>(event: K, listener: (...args: MemoryWatcherEvents[K]) => void): this;
  /** Adds a listener ('change' turns delivery on; see {@link MemoryWatcherEvents}). */
  on(event: string | symbol, listener: (...args: any[]) => void): this;
  /** Adds a one-time listener. */
  once<K extends keyof MemoryWatcherEvents>(event: K, listener: (...args: MemoryWatcherEvents[K]) => void): this;
  /** Adds a one-time listener. */
  once(event: string | symbol, listener: (...args: any[]) => void): this;
  /** Same as `on`. */
  addListener<K extends keyof MemoryWatcherEvents>(event: K, listener: (...args: MemoryWatcherEvents[K]) => void): this;
  /** Same as `on`. */
  addListener(event: string | symbol, listener: (...args: any[]) => void): this;
  /** Adds a listener at the front of the list. */
  prependListener<K extends keyof MemoryWatcherEvents>(event: K, listener: (...args: MemoryWatcherEvents[K]) => void): this;
  /** Adds a listener at the front of the list. */
  prependListener(event: string | symbol, listener: (...args: any[]) => void): this;
  /** Adds a one-time listener at the front of the list. */
  prependOnceListener<K extends keyof MemoryWatcherEvents>(event: K, listener: (...args: MemoryWatcherEvents[K]) => void): this;
  /** Adds a one-time listener at the front of the list. */
  prependOnceListener(event: string | symbol, listener: (...args: any[]) => void): this;
  /** Same as `removeListener`. */
  off<K extends keyof MemoryWatcherEvents>(event: K, listener: (...args: MemoryWatcherEvents[K]) => void): this;
  /** Same as `removeListener`. */
  off(event: string | symbol, listener: (...args: any[]) => void): this;
  /** Removes a listener (removing the last 'change' listener turns delivery off when nothing else subscribes). */
  removeListener<K extends keyof MemoryWatcherEvents>(event: K, listener: (...args: MemoryWatcherEvents[K]) => void): this;
  /** Removes a listener (removing the last 'change' listener turns delivery off when nothing else subscribes). */
  removeListener(event: string | symbol, listener: (...args: any[]) => void): this;
}

/**
 * A read handle on a MemStream store: the crash-safe shared-memory key-value
 * store that {@link MemoryWatcher.setValueStore} sends large values to. Any
 * process on the machine can open it by name and read values by key.
 */
export declare class Store {
  /** Use {@link Store.open}. */
  private constructor();
  /**
   * Opens the existing store `name`.
   * @throws {TypeError} for a name that is not a string or not a valid store name (`code: "ERR_MEMWATCH_STORE_NAME"`).
   * @throws {Error} `code: "ERR_MEMWATCH_STORE_NOT_FOUND"` when there is no such store, `"ERR_MEMWATCH_STORE"` when it cannot be opened.
   */
  static open(name: string): Store;
  /**
   * Removes the store's name; `true` if it existed, `false` if there was none.
   * Processes that have it open keep working on it; its memory goes when the
   * last one closes it.
   */
  static unlink(name: string): boolean;
  /** The store's name. */
  readonly name: string;
  /** True once `close()` was called. */
  readonly closed: boolean;
  /**
   * A copy of the value of `key` (a string is taken as UTF-8), or `null` when
   * the store does not hold it (never stored, or evicted).
   * @throws {TypeError} `code: "ERR_MEMWATCH_STORE_KEY"` for an empty key or one longer than the store allows.
   * @throws {Error} `code: "ERR_MEMWATCH_STORE_CLOSED"` after close.
   */
  get(key: string | Uint8Array): Buffer | null;
  /** Closes this handle (the store stays until unlinked). Idempotent. */
  close(): void;
}

/** Creates a watcher: same as `new MemoryWatcher(options)`. */
export declare function create(options?: WatcherOptions): MemoryWatcher;

/** The operating system's page size in bytes. */
export declare function pageSize(): number;

/**
 * Allocates a zero-filled Buffer of `size` bytes that starts on a page
 * boundary and shares no page with other memory (its own mapping). Watching
 * it with the protect backend never makes unrelated writes fault.
 * @throws {TypeError} unless `size` is an integer >= 1.
 */
export declare function allocPageAligned(size: number): Buffer;

/**
 * True once memwatch's SIGSEGV handler is installed in this process (the
 * first watcher using the protect backend installs it; it then stays,
 * forwarding every fault that is not memwatch's own, such as V8's
 * WebAssembly traps, to the handler installed before it).
 */
export declare function signalHandlerInstalled(): boolean;

/** The backend names accepted by the `backend` option. */
export declare const BACKENDS: readonly Backend[];

/**
 * The bound of a watcher's queue (the engine's `QUEUE_CAP`): while the
 * JS thread is busy, at most this many events wait for it (or one per
 * region); later changes of a region with an event waiting are merged into
 * it (`coalesced`, `WatcherStats.coalescedEvents`), so no change is lost.
 */
export declare const QUEUE_CAP: number;

/**
 * How long the exit hook ('beforeExit', 'exit') waits, for all watchers
 * together, for pending changes to reach the subscribers, in milliseconds
 * (the engine's `EXIT_FLUSH_TIMEOUT`, which every binding uses; see the
 * top-level README's Limits).
 */
export declare const EXIT_FLUSH_TIMEOUT_MS: number;
