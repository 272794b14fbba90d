'use strict';
/**
 * memwatch for Node.js: detect and report changes to watched memory.
 *
 * The detection engine is native (Rust, memwatch-core); this file is the
 * JavaScript face of it: argument checks, the EventEmitter / callback /
 * async-iterator delivery, and Node-style errors.
 *
 * @module memwatch
 */

const { EventEmitter } = require('node:events');
const util = require('node:util');
const types = util.types;

const native = loadNative();

/** Backend names accepted by the `backend` option: the engine's list. */
const BACKENDS = Object.freeze(native.backends());

/** Loads the prebuilt addon for this platform, with a clear error if there is none. */
function loadNative() {
  const file = `./memwatch.${process.platform}-${process.arch}.node`;
  try {
    return require(file);
  } catch (err) {
    const e = new Error(
      `memwatch: cannot load the native addon ${file} (${err.message}). ` +
        'Prebuilt binaries exist for linux-x64; elsewhere build it with `npm run build` (needs Rust).',
    );
    e.code = 'ERR_MEMWATCH_NATIVE_LOAD';
    e.cause = err;
    throw e;
  }
}

/** Option names and their kinds. */
const OPTION_KINDS = {
  backend: 'backend',
  writableWindowMs: 'ms',
  pollIntervalMs: 'ms',
  maxValueBytes: 'count',
  previewBytes: 'count',
  ringCapacity: 'count',
  snapshots: 'boolean',
  locateWriters: 'boolean',
  stackDepth: 'count',
};

/** Error classes by the code prefix the native layer puts on its messages. */
const ERROR_CLASSES = {
  ERR_MEMWATCH_INVALID_ARGUMENT: TypeError,
  ERR_MEMWATCH_DETACHED: TypeError,
  ERR_MEMWATCH_EMPTY: RangeError,
  ERR_MEMWATCH_STORE_NAME: TypeError,
  ERR_MEMWATCH_STORE_KEY: TypeError,
  ERR_MEMWATCH_STORE_CAPACITY: RangeError,
  ERR_MEMWATCH_RECORD_URL: TypeError,
};

/** Arena bytes of a value store that `setValueStore(name)` creates when no capacity is given. */
const DEFAULT_VALUE_STORE_CAPACITY = 64 * 1024 * 1024;

/** Rethrows a native error as the right JS error class with a `code` property. */
function translate(err) {
  if (!(err instanceof Error)) return err;
  const m = /^\[(ERR_MEMWATCH_[A-Z_]+)\] ([\s\S]*)$/.exec(err.message);
  if (!m) return err;
  const Cls = ERROR_CLASSES[m[1]] || Error;
  const e = new Cls(m[2]);
  e.code = m[1];
  return e;
}

/** Calls a native function, translating its errors. */
function call(fn) {
  try {
    return fn();
  } catch (err) {
    throw translate(err);
  }
}

/** Makes an error with a code. */
function codedError(Cls, code, message) {
  const e = new Cls(message);
  e.code = code;
  return e;
}

/** Describes a received value for error messages, the way Node does. */
function describe(value) {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'function') return `function ${value.name || '<anonymous>'}`;
  if (typeof value === 'object') {
    const ctor = value.constructor && value.constructor.name;
    return ctor ? `an instance of ${ctor}` : 'an object';
  }
  let shown = String(value);
  if (shown.length > 28) shown = `${shown.slice(0, 25)}...`;
  if (typeof value === 'string') shown = `'${shown}'`;
  return `type ${typeof value} (${shown})`;
}

/** True if an ArrayBuffer has been detached (transferred). */
function isDetached(ab) {
  if (types.isSharedArrayBuffer(ab)) return false;
  if (typeof ab.detached === 'boolean') return ab.detached;
  if (ab.byteLength !== 0) return false;
  try {
    new Uint8Array(ab); // eslint-disable-line no-new
    return false;
  } catch {
    return true;
  }
}

/**
 * Turns any supported target into a Uint8Array over exactly its bytes.
 * @param {unknown} target
 * @returns {Uint8Array}
 */
function toView(target) {
  let buffer;
  if (types.isAnyArrayBuffer(target)) {
    buffer = target;
  } else if (ArrayBuffer.isView(target)) {
    buffer = target.buffer;
  } else {
    throw codedError(
      TypeError,
      'ERR_INVALID_ARG_TYPE',
      'The "target" argument must be a Buffer, TypedArray, DataView, ArrayBuffer or ' +
        `SharedArrayBuffer. Received ${describe(target)}`,
    );
  }
  if (isDetached(buffer)) {
    throw codedError(TypeError, 'ERR_MEMWATCH_DETACHED', 'cannot watch a detached ArrayBuffer');
  }
  if (buffer.resizable === true) {
    throw codedError(
      TypeError,
      'ERR_MEMWATCH_RESIZABLE',
      'cannot watch a resizable ArrayBuffer (it can shrink under the watch); use a fixed-length one',
    );
  }
  const view =
    buffer === target
      ? new Uint8Array(target)
      : new Uint8Array(buffer, target.byteOffset, target.byteLength);
  if (view.byteLength === 0) {
    throw codedError(RangeError, 'ERR_MEMWATCH_EMPTY', 'cannot watch an empty (0-byte) buffer');
  }
  return view;
}

/** Validates the options object and maps it to the native one. */
function nativeOptions(options) {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw codedError(
      TypeError,
      'ERR_INVALID_ARG_TYPE',
      `The "options" argument must be an object. Received ${describe(options)}`,
    );
  }
  const out = {};
  for (const [key, value] of Object.entries(options)) {
    const kind = OPTION_KINDS[key];
    if (kind === undefined) {
      throw codedError(
        TypeError,
        'ERR_INVALID_ARG_VALUE',
        `unknown option "${key}"; known options: ${Object.keys(OPTION_KINDS).join(', ')}`,
      );
    }
    if (value === undefined) continue;
    switch (kind) {
      case 'backend':
        if (typeof value !== 'string' || !BACKENDS.includes(value)) {
          throw codedError(
            TypeError,
            'ERR_INVALID_ARG_VALUE',
            `options.backend must be one of ${BACKENDS.map((b) => `"${b}"`).join(', ')}. ` +
              `Received ${describe(value)}`,
          );
        }
        break;
      case 'ms':
        if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
          throw codedError(
            TypeError,
            'ERR_INVALID_ARG_VALUE',
            `options.${key} must be a finite number >= 0 (milliseconds). Received ${describe(value)}`,
          );
        }
        break;
      case 'count':
        if (!Number.isSafeInteger(value) || value < 0) {
          throw codedError(
            TypeError,
            'ERR_INVALID_ARG_VALUE',
            `options.${key} must be an integer >= 0. Received ${describe(value)}`,
          );
        }
        break;
      case 'boolean':
        if (typeof value !== 'boolean') {
          throw codedError(
            TypeError,
            'ERR_INVALID_ARG_VALUE',
            `options.${key} must be a boolean. Received ${describe(value)}`,
          );
        }
        break;
    }
    out[key] = value;
  }
  return out;
}

/**
 * The fields of the public `ChangeEvent`, in its documented order; each is a
 * getter of the same name on `native.NativeChangeEvent`.
 */
const EVENT_FIELDS = [
  'seq', 'timestampNs', 'adapterId', 'regionId', 'variableName', 'where', 'howBig',
  'changedRanges', 'oldPreview', 'newPreview', 'oldValue', 'newValue',
  'storageKeyOld', 'storageKeyNew', 'metadata', 'coalesced',
];

/** Where a public event keeps its native event (not enumerable: no JSON, spread or clone sees it). */
const kNativeEvent = Symbol('memwatch.nativeEvent');

/**
 * Replaces the getter of `key` on `event` with a plain data property (left
 * as it is on a frozen or sealed event); false if that was not possible.
 */
function settle(event, key, value) {
  return Reflect.defineProperty(event, key, { value, writable: true, enumerable: true, configurable: true });
}

/**
 * One accessor per field, shared by every event: the first read converts the
 * field from the native event and keeps it as a plain property; a write
 * replaces it. Enumerable, so `Object.keys`, `JSON.stringify`, spread and
 * `structuredClone` see every field as they would on a plain object.
 */
const EVENT_DESCRIPTORS = Object.fromEntries(EVENT_FIELDS.map((key) => [key, {
  enumerable: true,
  configurable: true,
  get() {
    const value = this[kNativeEvent][key];
    settle(this, key, value);
    return value;
  },
  set(value) {
    if (!settle(this, key, value)) throw new TypeError(`Cannot assign to read only property '${key}' of object`);
  },
}]));
// console.log / util.inspect show the values, not [Getter/Setter].
EVENT_DESCRIPTORS[util.inspect.custom] = {
  value(_depth, options) {
    return util.inspect(Object.fromEntries(EVENT_FIELDS.map((key) => [key, this[key]])), options);
  },
};

/**
 * Wraps the engine's events for JavaScript: each field is converted (strings
 * copied, buffers and the stack built) on first access only, then kept.
 * @param {object[]} natives `native.NativeChangeEvent` instances
 * @returns {import('./index').ChangeEvent[]}
 */
function wrapEvents(natives) {
  return natives.map((n) => {
    const e = Object.defineProperties({}, EVENT_DESCRIPTORS);
    Object.defineProperty(e, kNativeEvent, { value: n });
    // An unlocated `where` (the common case) is all empty: a plain property from the start.
    const where = n.unlocatedWhere;
    if (where !== null) settle(e, 'where', where);
    return e;
  });
}

/** Symbol of the internal flush method (kept off the public API). */
const kFlush = Symbol('memwatch.flush');

/** Watchers that may need a last flush when the process is about to exit. */
const live = new Set();
/** Forgets the WeakRef of a watcher that was garbage-collected without close(). */
const forget = new FinalizationRegistry((ref) => live.delete(ref));
let exitHooksInstalled = false;

/**
 * How long the exit flush waits, for all watchers together, for the engine
 * to hand over the changes made before exit, in milliseconds: the engine's
 * `EXIT_FLUSH_TIMEOUT`, which every binding's exit hook uses.
 */
const EXIT_FLUSH_TIMEOUT_MS = native.exitFlushTimeoutMs();

/**
 * The bound of a watcher's queue (the engine's `QUEUE_CAP`): while the JS
 * thread is busy, at most this many events wait for it (or one per region,
 * if more regions changed); later changes of a region that has one waiting
 * are merged into it (its `coalesced` counts them, as does
 * `getStats().coalescedEvents`), so no change is lost.
 */
const QUEUE_CAP = native.queueCap();

/**
 * When Node is about to exit ('beforeExit': the event loop ran dry; 'exit':
 * also `process.exit()`), deliver the changes that were made but not yet
 * delivered to listeners/callbacks/iterators, waiting at most EXIT_FLUSH_TIMEOUT_MS.
 * A watcher never keeps the process alive by itself; this makes sure that a
 * script which writes and then ends still sees its events.
 * @param {string} why 'beforeExit' or 'exit'
 */
function flushAtExit(why) {
  const deadline = Date.now() + EXIT_FLUSH_TIMEOUT_MS;
  for (const ref of [...live]) {
    const w = ref.deref();
    if (w === undefined) {
      live.delete(ref);
      continue;
    }
    const left = deadline - Date.now();
    if (left <= 0) break;
    try {
      w[kFlush](left);
    } catch (err) {
      // In 'exit' nothing asynchronous runs any more: report it now.
      if (why === 'exit') console.error(err);
      else process.nextTick(() => {
        throw err;
      });
    }
  }
}

/**
 * Watches memory (Buffers, ArrayBuffers, SharedArrayBuffers, TypedArrays,
 * DataViews) and reports every change.
 *
 * Changes reach you in whichever ways you subscribe, each event exactly once
 * per subscriber: `setCallback(fn)`, `on('change', fn)` and
 * `for await (const e of watcher.changes())`. With no subscriber, events wait
 * for `checkChanges()`.
 *
 * Events: `'change'` (a {@link ChangeEvent}), `'error'` (a callback or listener
 * threw), `'close'`.
 */
class MemoryWatcher extends EventEmitter {
  /** @type {any} */
  #native;
  /** @type {((e: object) => void) | null} */
  #callback = null;
  /** @type {Set<{push(e: object): void, end(): void}>} */
  #iterators = new Set();
  #delivering = false;
  #closed = false;
  /** @type {string | null} */
  #valueStore = null;
  #liveRef;

  /**
   * Creates a watcher.
   * @param {import('./index').WatcherOptions} [options]
   */
  constructor(options) {
    const opts = nativeOptions(options);
    super();
    this.#native = call(() => new native.NativeWatcher(opts));
    this.#installHooks();
    this.#liveRef = new WeakRef(this);
    live.add(this.#liveRef);
    forget.register(this, this.#liveRef, this.#liveRef);
    if (!exitHooksInstalled) {
      exitHooksInstalled = true;
      // First in line, so that other listeners (test runners, frameworks)
      // already see the delivered events.
      process.prependListener('beforeExit', () => flushAtExit('beforeExit'));
      process.prependListener('exit', () => flushAtExit('exit'));
    }
  }

  /**
   * Same as `new MemoryWatcher(options)`.
   * @param {import('./index').WatcherOptions} [options]
   * @returns {MemoryWatcher}
   */
  static create(options) {
    return new MemoryWatcher(options);
  }

  /** Tracks 'change' listeners so that delivery is on exactly while somebody listens. */
  #installHooks() {
    if (!this.listeners('newListener').includes(this.#onNewListener)) {
      this.on('newListener', this.#onNewListener);
    }
    if (!this.listeners('removeListener').includes(this.#onRemoveListener)) {
      this.on('removeListener', this.#onRemoveListener);
    }
  }

  #onNewListener = (event) => {
    if (event === 'change') this.#updateDelivery(true);
  };

  #onRemoveListener = (event) => {
    if (event === 'change') this.#updateDelivery();
  };

  /**
   * Removes all listeners (of one event, or of all events), as
   * `EventEmitter#removeAllListeners` does.
   * @param {string | symbol} [event]
   * @returns {this}
   */
  removeAllListeners(event) {
    if (arguments.length === 0) super.removeAllListeners();
    else super.removeAllListeners(event);
    this.#installHooks();
    this.#updateDelivery();
    return this;
  }

  /** True once `close()` was called. */
  get closed() {
    return this.#closed;
  }

  #checkOpen() {
    if (this.#closed) {
      throw codedError(Error, 'ERR_MEMWATCH_CLOSED', 'watcher is closed');
    }
  }

  /**
   * Starts watching the bytes of `target` (a view watches exactly its byte
   * range) and returns the region id.
   * @param {ArrayBufferLike | ArrayBufferView} target
   * @param {string} [name]
   * @param {string | null} [metadata]
   * @returns {number}
   */
  watch(target, name = '', metadata = null) {
    this.#checkOpen();
    if (typeof name !== 'string') {
      throw codedError(
        TypeError,
        'ERR_INVALID_ARG_TYPE',
        `The "name" argument must be of type string. Received ${describe(name)}`,
      );
    }
    if (metadata !== null && metadata !== undefined && typeof metadata !== 'string') {
      throw codedError(
        TypeError,
        'ERR_INVALID_ARG_TYPE',
        `The "metadata" argument must be a string or null. Received ${describe(metadata)}`,
      );
    }
    const view = toView(target);
    return call(() => this.#native.watch(view, name, metadata ?? null));
  }

  /**
   * Stops watching a region. Returns false if the id is unknown or was
   * already unwatched.
   * @param {number} id
   * @returns {boolean}
   */
  unwatch(id) {
    this.#checkOpen();
    if (!Number.isInteger(id) || id < 0) {
      throw codedError(
        TypeError,
        'ERR_INVALID_ARG_TYPE',
        `The "id" argument must be a non-negative integer. Received ${describe(id)}`,
      );
    }
    if (id > 0xffffffff) return false;
    return call(() => this.#native.unwatch(id));
  }

  /**
   * Sets (or with `null` clears) the callback that receives every change.
   * @param {((event: import('./index').ChangeEvent) => void) | null} callback
   */
  setCallback(callback) {
    if (callback !== null && callback !== undefined && typeof callback !== 'function') {
      throw codedError(
        TypeError,
        'ERR_INVALID_ARG_TYPE',
        `The "callback" argument must be a function or null. Received ${describe(callback)}`,
      );
    }
    if (callback) this.#checkOpen();
    this.#callback = callback || null;
    this.#updateDelivery();
  }

  /**
   * Detects changes now, synchronously: every write made before this call
   * is in the result or has been delivered. With a callback, a 'change'
   * listener or an active iterator, the events are delivered to them before
   * this returns, and the result is empty.
   * @returns {import('./index').ChangeEvent[]}
   */
  checkChanges() {
    this.#checkOpen();
    const events = wrapEvents(call(() => this.#native.checkChanges()));
    if (this.#hasSubscribers()) {
      this.#dispatch(events);
      return [];
    }
    return events;
  }

  /**
   * Sends the whole old and new values of regions larger than
   * `maxValueBytes` to the MemStream store `name` (a shared-memory
   * key-value store, see {@link Store}); events of those regions then carry
   * `storageKeyOld` / `storageKeyNew`. The store is created with an arena of
   * `capacity` bytes and LRU eviction, or opened as it is when it exists.
   * The current value of every large region is stored at once. `null`
   * detaches the store: no more keys.
   * @param {string | null} name
   * @param {number} [capacity] arena bytes when the store is created; default 64 MiB
   */
  setValueStore(name, capacity = DEFAULT_VALUE_STORE_CAPACITY) {
    if (name === null || name === undefined) {
      if (!this.#closed) call(() => this.#native.setValueStore(null, 0));
      this.#valueStore = null;
      return;
    }
    if (typeof name !== 'string') {
      throw codedError(
        TypeError,
        'ERR_INVALID_ARG_TYPE',
        `The "name" argument must be a string or null. Received ${describe(name)}`,
      );
    }
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      throw codedError(
        TypeError,
        'ERR_INVALID_ARG_VALUE',
        `The "capacity" argument must be an integer >= 1 (bytes). Received ${describe(capacity)}`,
      );
    }
    this.#checkOpen();
    call(() => this.#native.setValueStore(name, capacity));
    this.#valueStore = name;
  }

  /**
   * Records every change event of this watcher (callback, iterator or
   * checkChanges() alike) into a database: a file path or `sqlite:PATH`
   * (SQLite, WAL mode) or `postgresql://user@host:port/db`. Tables
   * memwatch_recordings, memwatch_events, memwatch_losses (created if
   * missing). Never blocks the watched program: a bounded queue feeds the
   * recorder's own thread; what does not fit is counted and written to
   * memwatch_losses.
   * @param {string} url
   * @returns {Recorder}
   */
  recordTo(url) {
    if (typeof url !== 'string') {
      throw codedError(
        TypeError,
        'ERR_INVALID_ARG_TYPE',
        `The "url" argument must be a string. Received ${describe(url)}`,
      );
    }
    this.#checkOpen();
    return new Recorder(call(() => this.#native.recordTo(url)));
  }

  /** Name of the value store set with `setValueStore`, or null. */
  get valueStore() {
    return this.#valueStore;
  }

  /**
   * Statistics of this watcher (works after close too).
   * @returns {import('./index').WatcherStats}
   */
  getStats() {
    return this.#native.stats();
  }

  /**
   * Closes the watcher: unwatches everything, ends iterators, emits 'close'.
   * Idempotent.
   */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#valueStore = null;
    live.delete(this.#liveRef);
    forget.unregister(this.#liveRef);
    this.#native.close();
    this.#delivering = false;
    const its = [...this.#iterators];
    this.#iterators.clear();
    for (const it of its) it.end();
    this.emit('close');
  }

  /**
   * An async iterator over changes: `for await (const e of watcher.changes())`.
   * It ends when the watcher is closed or the loop is left (`break`).
   * Like `events.on()`, waiting on it does not keep the process alive.
   * With `{ signal }`, aborting the signal cancels the loop: the events it
   * had received but not yet handed out still come first, then the pending
   * `next()` rejects with an `AbortError` (`code: 'ABORT_ERR'`); from then on
   * changes go to the other subscribers or wait for `checkChanges()`.
   * @param {{ signal?: AbortSignal }} [options]
   * @returns {AsyncIterableIterator<import('./index').ChangeEvent>}
   */
  changes(options = {}) {
    if (options === null || typeof options !== 'object') {
      throw codedError(
        TypeError,
        'ERR_INVALID_ARG_TYPE',
        `The "options" argument must be of type object. Received ${describe(options)}`,
      );
    }
    const { signal } = options;
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw codedError(
        TypeError,
        'ERR_INVALID_ARG_TYPE',
        `The "options.signal" property must be an AbortSignal. Received ${describe(signal)}`,
      );
    }
    const queue = [];
    const waiters = [];
    let done = this.#closed;
    /** @type {Error | null} */
    let aborted = null;
    const self = this;
    const sink = {
      push(e) {
        if (waiters.length > 0) waiters.shift().resolve({ value: e, done: false });
        else queue.push(e);
      },
      end() {
        done = true;
        while (waiters.length > 0) waiters.shift().resolve({ value: undefined, done: true });
      },
    };
    const abortError = () => {
      const e = new Error('The operation was aborted', { cause: signal.reason });
      e.name = 'AbortError';
      e.code = 'ABORT_ERR';
      return e;
    };
    const onAbort = () => {
      if (done) return;
      aborted = abortError();
      self.#iterators.delete(sink);
      done = true;
      self.#updateDelivery();
      while (waiters.length > 0) waiters.shift().reject(aborted);
    };
    const iterator = {
      next() {
        if (queue.length > 0) return Promise.resolve({ value: queue.shift(), done: false });
        if (aborted !== null) return Promise.reject(aborted);
        if (done) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => waiters.push({ resolve, reject }));
      },
      return(value) {
        queue.length = 0;
        signal?.removeEventListener('abort', onAbort);
        if (!done) {
          self.#iterators.delete(sink);
          sink.end();
          self.#updateDelivery();
        }
        return Promise.resolve({ value, done: true });
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
    if (signal?.aborted) {
      done = true;
      aborted = abortError();
    } else if (!done) {
      this.#iterators.add(sink);
      this.#updateDelivery();
      signal?.addEventListener('abort', onAbort, { once: true });
    }
    return iterator;
  }

  #hasSubscribers(addingListener = false) {
    return (
      addingListener ||
      this.#callback !== null ||
      this.listenerCount('change') > 0 ||
      this.#iterators.size > 0
    );
  }

  /** Turns native delivery on/off to match whether anybody subscribes. */
  #updateDelivery(addingListener = false) {
    if (this.#closed) return;
    const want = this.#hasSubscribers(addingListener);
    if (want === this.#delivering) return;
    if (want) {
      call(() => this.#native.setWake(() => this.#onWake()));
    } else {
      call(() => this.#native.setWake(null));
      // Events queued for delivery stay for checkChanges().
    }
    this.#delivering = want;
  }

  /** Runs on the JS thread when the delivery thread queued events. */
  #onWake() {
    if (this.#closed || !this.#hasSubscribers()) return; // they stay for checkChanges()
    this.#dispatch(wrapEvents(this.#native.takeQueued()));
  }

  /**
   * Delivers the events still pending to the subscribers, waiting at most
   * `timeoutMs` for the engine (used before the process exits). Not part of
   * the public API.
   * @param {number} timeoutMs
   */
  [kFlush](timeoutMs) {
    if (this.#closed || !this.#delivering) return;
    call(() => this.#native.flush(timeoutMs));
    this.#dispatch(wrapEvents(this.#native.takeQueued()));
  }

  /** Hands each event to the callback, each 'change' listener and each iterator. */
  #dispatch(events) {
    if (events.length === 0) return;
    const errors = [];
    for (const e of events) {
      if (this.#closed) break;
      if (this.#callback !== null) {
        try {
          this.#callback.call(undefined, e);
        } catch (err) {
          errors.push(err);
        }
      }
      const listeners = this.rawListeners('change');
      for (const l of listeners) {
        try {
          l.call(this, e);
        } catch (err) {
          errors.push(err);
        }
      }
      for (const it of this.#iterators) it.push(e);
    }
    if (errors.length === 0) return;
    for (let i = 0; i < errors.length; i++) this.#native.reportCallbackError();
    if (this.listenerCount('error') > 0) {
      for (const err of errors) this.emit('error', err);
    } else {
      throw errors[0];
    }
  }
}

/** Lets only Store.open() construct a Store. */
const kStoreToken = Symbol('memwatch.Store');

/**
 * A read handle on a MemStream store: the crash-safe shared-memory key-value
 * store that `watcher.setValueStore(name)` sends large values to. Any process
 * on the machine can open it by name and read values by their keys.
 */
class Store {
  /** @type {any} */
  #native;
  /** @type {string} */
  #name;

  /** Use `Store.open(name)`. */
  constructor(token, nativeStore, name) {
    if (token !== kStoreToken) {
      throw codedError(TypeError, 'ERR_ILLEGAL_CONSTRUCTOR', 'use Store.open(name) to open a store');
    }
    this.#native = nativeStore;
    this.#name = name;
  }

  /**
   * Opens the existing store `name`.
   * @param {string} name
   * @returns {Store}
   */
  static open(name) {
    checkStoreName(name);
    return new Store(kStoreToken, call(() => native.NativeStore.open(name)), name);
  }

  /**
   * Removes the store's name (processes that have it open keep working on
   * it; its memory goes when the last one closes it). Returns true if it
   * existed, false if there was no store of that name.
   * @param {string} name
   * @returns {boolean}
   */
  static unlink(name) {
    checkStoreName(name);
    return call(() => native.storeUnlink(name));
  }

  /** The store's name. */
  get name() {
    return this.#name;
  }

  /** True once `close()` was called. */
  get closed() {
    return this.#native === null;
  }

  /**
   * A copy of the value of `key` (a string is taken as UTF-8), or `null`
   * when the store does not hold it (never stored, or evicted).
   * @param {string | Uint8Array} key
   * @returns {Buffer | null}
   */
  get(key) {
    let bytes;
    if (typeof key === 'string') bytes = Buffer.from(key, 'utf8');
    else if (types.isUint8Array(key)) bytes = Buffer.from(key.buffer, key.byteOffset, key.byteLength);
    else {
      throw codedError(
        TypeError,
        'ERR_INVALID_ARG_TYPE',
        `The "key" argument must be a string or a Uint8Array. Received ${describe(key)}`,
      );
    }
    if (this.#native === null) {
      throw codedError(Error, 'ERR_MEMWATCH_STORE_CLOSED', 'store is closed');
    }
    const nativeStore = this.#native;
    return call(() => nativeStore.get(bytes));
  }

  /** Closes this handle (the store itself stays until unlinked). Idempotent. */
  close() {
    if (this.#native === null) return;
    this.#native.close();
    this.#native = null;
  }
}

/** Throws the Node-style TypeError unless `name` is a string. */
function checkStoreName(name) {
  if (typeof name !== 'string') {
    throw codedError(
      TypeError,
      'ERR_INVALID_ARG_TYPE',
      `The "name" argument must be of type string. Received ${describe(name)}`,
    );
  }
}

/**
 * Creates a watcher: same as `new MemoryWatcher(options)`.
 * @param {import('./index').WatcherOptions} [options]
 * @returns {MemoryWatcher}
 */
function create(options) {
  return new MemoryWatcher(options);
}

/**
 * The operating system's page size in bytes.
 * @returns {number}
 */
function pageSize() {
  return native.pageSize();
}

/**
 * Allocates a zero-filled Buffer of `size` bytes that starts on a page
 * boundary and shares no page with any other memory. Watching such a buffer
 * with the protect backend never makes unrelated writes fault.
 * @param {number} size
 * @returns {Buffer}
 */
function allocPageAligned(size) {
  if (!Number.isSafeInteger(size) || size < 1) {
    throw codedError(
      TypeError,
      'ERR_INVALID_ARG_VALUE',
      `The "size" argument must be an integer >= 1. Received ${describe(size)}`,
    );
  }
  return call(() => native.allocPageAligned(size));
}

/**
 * True once memwatch's SIGSEGV handler is installed in this process (the
 * first watcher using the protect backend installs it; it then stays,
 * forwarding every fault that is not memwatch's own, such as V8's
 * WebAssembly traps, to the handler installed before it).
 * @returns {boolean}
 */
function signalHandlerInstalled() {
  return native.signalHandlerInstalled();
}

/** A running recorder, made by {@link MemoryWatcher#recordTo}. */
class Recorder {
  #native;
  /** @param {object} native */
  constructor(native) {
    this.#native = native;
  }

  /**
   * Counters: written, dropped, abandoned, queued, batches, reconnects,
   * connected, lastError, recordingId (a decimal string: 64 bits).
   */
  stats() {
    return this.#native.stats();
  }

  /**
   * Waits (blocking) up to `timeoutMs` until every event queued before the
   * call is written; false on timeout.
   * @param {number} [timeoutMs]
   */
  flush(timeoutMs = 10000) {
    if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0 && timeoutMs <= 86400000)) {
      throw codedError(
        RangeError,
        'ERR_INVALID_ARG_VALUE',
        `The "timeoutMs" argument must be a number of milliseconds from 0 to 86400000. Received ${describe(timeoutMs)}`,
      );
    }
    return this.#native.flush(timeoutMs);
  }

  /** Stops recording after writing what is queued. Idempotent. */
  close() {
    this.#native.close();
  }
}

module.exports = {
  MemoryWatcher,
  Recorder,
  Store,
  create,
  pageSize,
  allocPageAligned,
  signalHandlerInstalled,
  BACKENDS,
  QUEUE_CAP,
  EXIT_FLUSH_TIMEOUT_MS,
};
