/*
 * memwatch.h - C API of memwatch: detect and report changes to watched memory.
 *
 * Two layers:
 *   - Handle API (memwatch_watcher_*): any number of independent watchers,
 *     each with its own regions, callback and pending events.
 *   - The seeds' global API (memwatch_init, memwatch_watch, ...): the same
 *     calls on one process-wide default watcher.
 *
 * Sections, by topic: errors, options, lifecycle, watch, events and
 * callbacks, stats, location, store (MemStream, memwatch_store_*), record,
 * glass (memglass.h). memwatch.hpp is the C++17 API over this header;
 * memwatch_store.h keeps the seed's cache_* names of the store.
 *
 * Conventions
 *   - Functions returning int return MEMWATCH_OK (0) on success or a negative
 *     memwatch_error_t; memwatch_last_error() then describes the failure in
 *     the calling thread. Nothing aborts or unwinds across this ABI.
 *   - Region ids are >= 1, unique for the life of the process, never reused.
 *   - Strings are UTF-8, NUL-terminated. Anything memwatch hands out is freed
 *     with the matching memwatch_*_free function.
 *   - The watched memory must stay mapped until it is unwatched (or the
 *     watcher is freed). Memory freed after memwatch_unwatch() is fine. If it
 *     is unmapped or replaced anyway, the region is dropped and counted
 *     (stats.gone_regions) and memwatch never changes the new mapping's
 *     protection.
 *   - fork(): the child's copy of watched memory is not watched. In the
 *     child, memwatch_watcher_free(), memwatch_watcher_close() and
 *     memwatch_shutdown() only release memory (they never wait on the
 *     parent's threads); every other call, and creating a watcher, fails with
 *     MEMWATCH_ERR_UNSUPPORTED.
 *
 * Thread safety: every function may be called from any thread. Callbacks run
 * on the watcher's delivery thread, one at a time per watcher.
 *
 * Callbacks must return normally: they must not throw a C++ exception or
 * longjmp out. (A C++ exception escaping a callback is caught at the Rust
 * boundary and counted in stats.callback_errors where the platform allows,
 * otherwise the process aborts; it never unwinds through memwatch.) A callback
 * may call any memwatch function, including memwatch_watcher_free() or
 * memwatch_shutdown() on its own watcher; check_changes() called from inside
 * a callback returns the events instead of delivering them.
 *
 * Backend "protect" write-protects watched pages and catches the write fault
 * with a SIGSEGV handler that forwards faults that are not its own to the
 * handler installed before it. A program with its own SIGSEGV handler must
 * install it before the first "protect" watcher starts the engine (or chain
 * to the handler it replaces). A system call that writes into a watched page
 * (read(2) into a watched buffer, for example) fails with EFAULT instead.
 *
 * Linking: -lmemwatch (shared), or libmemwatch.a plus
 * -lpthread -ldl -lm -lrt -lgcc_s (see `pkg-config --static --libs memwatch`).
 */
#ifndef MEMWATCH_H
#define MEMWATCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ==== errors ============================================================ */

/* Every function returning int returns MEMWATCH_OK or a negative code; the
 * calling thread's last-error slot (one for the whole library: watchers,
 * store, recorder, memglass) then holds the code and a message. */

/** Error codes (negative); MEMWATCH_OK is success. */
typedef enum memwatch_error {
    MEMWATCH_OK = 0,
    MEMWATCH_ERR_INVALID_ARGUMENT = -1, /* null/zero length/bad option */
    MEMWATCH_ERR_UNMAPPED = -2,         /* memory not (fully) mapped */
    MEMWATCH_ERR_READ_ONLY = -3,        /* memory not writable */
    MEMWATCH_ERR_OVERLAP = -4,          /* overlaps a region of the same watcher */
    MEMWATCH_ERR_UNSUPPORTED = -5,      /* backend not available here */
    MEMWATCH_ERR_CLOSED = -6,           /* watcher closed / not initialised */
    MEMWATCH_ERR_OS = -7,               /* a system call failed */
    MEMWATCH_ERR_INTERNAL = -8,         /* a bug in memwatch (caught panic) */
    MEMWATCH_ERR_DATABASE = -9,         /* memwatch_record_to: database unreachable or refused */
    /* the store (memwatch_store_*) */
    MEMWATCH_ERR_NOT_FOUND = -10,       /* key absent; or no such store (open, unlink) */
    MEMWATCH_ERR_KEY_TOO_LONG = -11,    /* key longer than the store's limit */
    MEMWATCH_ERR_VALUE_TOO_LARGE = -12, /* key + value can never fit in this store */
    MEMWATCH_ERR_FULL = -13,            /* policy REFUSE and no room (or all pinned) */
    MEMWATCH_ERR_BUFFER_TOO_SMALL = -14,
    MEMWATCH_ERR_CORRUPT = -15,         /* not a store, wrong version, truncated, corrupt */
    MEMWATCH_ERR_NOT_INITIALIZED = -16, /* exists but its creator died before finishing */
    MEMWATCH_ERR_LOCK = -17,            /* writer lock timed out (10 s) or unrecoverable */
    MEMWATCH_ERR_TOO_MANY_PINS = -18,
    MEMWATCH_ERR_BUSY = -19             /* writer lock held elsewhere (memwatch_store_try_put) */
} memwatch_error_t;

/** Message of the last failure in this thread ("" if none). Like errno, it is
 *  only set by failing calls; the pointer stays valid until the next failing
 *  call in this thread. */
const char *memwatch_last_error(void);

/** Code of the last failure in this thread (MEMWATCH_OK if none). */
int memwatch_last_error_code(void);

/* ==== options =========================================================== */

/** Adapter ids used by the official bindings (memwatch_options_t.adapter_id). */
#define MEMWATCH_ADAPTER_RUST 0u
#define MEMWATCH_ADAPTER_C 1u
#define MEMWATCH_ADAPTER_PYTHON 2u
#define MEMWATCH_ADAPTER_NODE 3u
#define MEMWATCH_ADAPTER_JAVA 4u
#define MEMWATCH_ADAPTER_CSHARP 5u
#define MEMWATCH_ADAPTER_GO 6u
#define MEMWATCH_ADAPTER_CPP 7u

/** Watcher settings. Fill with memwatch_options_default() first. */
typedef struct memwatch_options {
    const char *backend;         /* "auto" (default: writewatch where the kernel has it,
                                    else protect), "protect", "writewatch", "poll" */
    uint32_t writable_window_ms; /* default 5 */
    uint32_t poll_interval_ms;   /* default 100 */
    uint64_t max_value_bytes;    /* default 4096 */
    uint64_t preview_bytes;      /* default 256 */
    uint64_t ring_capacity;      /* default 32768; used when the engine starts */
    int32_t snapshots;           /* default 1; 0 = no old values, less memory */
    uint32_t adapter_id;         /* default MEMWATCH_ADAPTER_C */
    int32_t locate_writers;      /* default 0; 1 = every event of a "protect" watcher
                                    carries a memwatch_where_t (thread name, file,
                                    function, line, stack); "auto" then picks protect
                                    (stats.backend_reason says so); "writewatch" and
                                    "poll" are refused (they never see the writer) */
    uint32_t stack_depth;        /* default 8, 1..32: frames captured per located write */
} memwatch_options_t;

/** Fills *opts with the defaults. */
void memwatch_options_default(memwatch_options_t *opts);

/* ==== lifecycle ========================================================= */

/* Watchers (the handle API), the default watcher (the seeds' global API),
 * the process-wide signal handler, and facts about the library. */

typedef struct memwatch_watcher memwatch_watcher_t;

/** Creates a watcher; opts may be NULL for defaults. */
int memwatch_watcher_new(const memwatch_options_t *opts, memwatch_watcher_t **out);

/** Closes a watcher (unwatching everything) without freeing the handle; later
 *  calls on it fail with MEMWATCH_ERR_CLOSED. Idempotent. */
int memwatch_watcher_close(memwatch_watcher_t *w);

/** Closes the watcher (unwatching everything) and frees it. NULL is ignored.
 *  May be called from inside its own callback. No other thread may be using
 *  the handle during or after this call (use memwatch_watcher_close() to stop
 *  a watcher that other threads may still touch, and free it afterwards). */
void memwatch_watcher_free(memwatch_watcher_t *w);

/** Creates the default watcher if needed. Idempotent. The other global
 *  functions create it on first use too, so calling this is optional. */
int memwatch_init(void);

/** Creates the default watcher with these options (NULL = defaults).
 *  MEMWATCH_ERR_INVALID_ARGUMENT if it already exists: call memwatch_shutdown() first. */
int memwatch_init_with_options(const memwatch_options_t *opts);

/** Frees the default watcher (unwatching everything), after delivering the
 *  changes made before the call to the default callback (waiting
 *  memwatch_exit_flush_timeout_ms() at most; not when called from inside the
 *  callback). A later global call
 *  creates a fresh one. May be called from inside the default callback. */
void memwatch_shutdown(void);

/**
 * Puts memwatch's SIGSEGV handler back on top after another library installed
 * its own over it (a crash reporter, a runtime initialised late): that handler
 * then receives every fault that is not memwatch's, and the protect backend
 * keeps working. A handler that re-raises (restoring its predecessor, as
 * Python's faulthandler does) ends in the default action, once, not a loop.
 * Returns 1 if memwatch's handler was put back, 0 if it already was on top (or
 * no protect watcher ever started), < 0 on error.
 */
int memwatch_reassert_signal_handler(void);

/** The operating system's page size in bytes. */
size_t memwatch_page_size(void);

/** How long an exit hook waits for the changes made before exit to reach
 *  the callbacks, in milliseconds, for all its watchers together (the
 *  engine's EXIT_FLUSH_TIMEOUT; README "Limits"). memwatch_shutdown() waits
 *  this long; the bindings' exit hooks (Go's ExitFlushTimeout, C#'s
 *  ProcessExit) use it. */
uint32_t memwatch_exit_flush_timeout_ms(void);

/** The library version, a static string such as "0.1.0". */
const char *memwatch_version(void);

/* ==== watch ============================================================= */

/** Starts watching [addr, addr+len). name may be NULL (""), metadata may be NULL. */
int memwatch_watcher_watch(memwatch_watcher_t *w, const void *addr, size_t len,
                           const char *name, const char *metadata, uint32_t *out_id);

/** Stops watching a region: 1 if it was watched, 0 if the id is unknown, <0 on error. */
int memwatch_watcher_unwatch(memwatch_watcher_t *w, uint32_t region_id);

/** Watches on the default watcher; returns the region id, or 0 on error. */
uint32_t memwatch_watch(uint64_t addr, size_t size, const char *name, const char *metadata);

/** 1 if the region was watched, 0 if unknown, <0 on error. */
int memwatch_unwatch(uint32_t region_id);

/**
 * Sends values larger than max_value_bytes to the MemStream store `store_name`
 * (created with `capacity` bytes and LRU eviction if it does not exist; see
 * "store" below). Events of such regions then carry storage_key_new and,
 * while the store holds it, storage_key_old: keys of the form
 * "memwatch/{adapter_id}/{region_id}/{epoch}" that any process can read with
 * memwatch_store_get on the same store. store_name == NULL stops it.
 */
int memwatch_watcher_set_value_store(memwatch_watcher_t *w, const char *store_name, uint64_t capacity);

/* ==== events and callbacks ============================================== */

/** Defined in "location" below. */
typedef struct memwatch_where memwatch_where_t;

/** A run of changed bytes, relative to the start of the region. */
typedef struct memwatch_range {
    size_t offset;
    size_t length;
} memwatch_range_t;

/**
 * One change to one region. Pointers are owned by memwatch: valid during a
 * callback, or until memwatch_events_free() for check_changes results.
 * Absent values are NULL with length 0.
 */
typedef struct memwatch_change_event {
    uint64_t seq;            /* process-wide, increasing */
    uint64_t timestamp_ns;   /* CLOCK_MONOTONIC */
    uint32_t adapter_id;
    uint32_t region_id;
    const char *variable_name;
    /* where */
    uint32_t thread_id;      /* kernel tid of the writer; 0 = unknown */
    uint64_t fault_ip;       /* instruction pointer of the write; 0 = unknown */
    const char *file;        /* source file of the user frame; "" unless located */
    const char *function;    /* function of the user frame; "" unless located */
    uint32_t line;           /* 0 = unknown */
    size_t how_big;          /* region size in bytes */
    const memwatch_range_t *changed_ranges;
    size_t changed_range_count;
    const uint8_t *old_preview;
    size_t old_preview_len;
    const uint8_t *new_preview;
    size_t new_preview_len;
    const uint8_t *old_value; /* whole old value if how_big <= max_value_bytes */
    size_t old_value_len;
    const uint8_t *new_value; /* whole new value if how_big <= max_value_bytes */
    size_t new_value_len;
    const char *storage_key_old; /* value store key of the old value (regions larger than
                                    max_value_bytes, memwatch_watcher_set_value_store),
                                    while the store still holds it; else NULL */
    const char *storage_key_new; /* value store key of the new value, or NULL */
    const char *metadata;        /* as given to watch, or NULL */
    const memwatch_where_t *location; /* locate_writers: where the write was made, or
                                         NULL (not located: option off, other backend,
                                         fault ring full); same lifetime as the event */
    uint32_t coalesced;      /* changes this event stands for: 1, or more when later
                                changes were merged into it in a full queue (then
                                old_* is the first's, new_* the last's, ranges the union) */
} memwatch_change_event_t;

/**
 * Detects changes now. Every write made before this call is in the result
 * or was already delivered to the callback. With a callback set, events go to
 * it (this call waits until they were delivered) and *out_count is 0.
 * Free the array with memwatch_events_free (NULL/0 is fine).
 */
int memwatch_watcher_check_changes(memwatch_watcher_t *w, memwatch_change_event_t **out_events,
                                   size_t *out_count);

/** memwatch_watcher_check_changes on the default watcher; free with memwatch_events_free. */
int memwatch_check_changes(memwatch_change_event_t **out_events, size_t *out_count);

/** Frees an array returned by check_changes. */
void memwatch_events_free(memwatch_change_event_t *events, size_t count);

/* Cancellable check_changes and the exit flush. */

/** A check_changes() waiting for the callback (opaque). */
typedef struct memwatch_pending memwatch_pending_t;

/**
 * memwatch_watcher_check_changes in two steps, for callers that must be able
 * to stop waiting for a slow callback (a Go context, a C# CancellationToken,
 * Java's Thread.interrupt()). Detects changes now. Without a callback (or from
 * inside it) fills *out_events and *out_count as check_changes does and sets
 * *out_pending to NULL. With one, sets *out_pending to a handle to wait on with
 * memwatch_pending_wait and to free with memwatch_pending_free. Giving up
 * (freeing it before the wait said 1) loses nothing: the callback still gets
 * every event. The handle keeps the watcher's engine side alive until freed.
 */
int memwatch_watcher_check_changes_start(memwatch_watcher_t *w, memwatch_change_event_t **out_events,
                                         size_t *out_count, memwatch_pending_t **out_pending);
/** Waits up to timeout_ms for the callback to have every event of a pending
 *  check: 1 when it has (then *out_events and *out_count are what check_changes
 *  returns: none, unless the callback was cleared meanwhile; free them with
 *  memwatch_events_free), 0 if not yet (wait again or give up), < 0 on error.
 *  Also 1 once the watcher is closed. */
int memwatch_pending_wait(memwatch_pending_t *p, uint32_t timeout_ms,
                          memwatch_change_event_t **out_events, size_t *out_count);
/** Frees a pending check. NULL is fine. */
void memwatch_pending_free(memwatch_pending_t *p);

/** For a binding's exit hook: with a callback set, detects changes now and
 *  waits up to timeout_ms for the callback to have them. 1 if it did (or no
 *  callback is set, or the watcher is closed), 0 on timeout, < 0 on error.
 *  Without a callback pending events stay for check_changes. */
int memwatch_watcher_flush(memwatch_watcher_t *w, uint32_t timeout_ms);

/** Called on the delivery thread for each event; event is valid only during the call. */
typedef void (*memwatch_callback_t)(const memwatch_change_event_t *event, void *user_ctx);

/** Releases a callback's user_ctx once memwatch no longer uses it (see
 *  memwatch_watcher_set_callback_with_finalizer). */
typedef void (*memwatch_finalizer_t)(void *user_ctx);

/** Sets (cb != NULL) or clears (cb == NULL) the callback. user_ctx stays the
 *  caller's; memwatch_watcher_set_callback_with_finalizer says when memwatch
 *  is done with it. */
int memwatch_watcher_set_callback(memwatch_watcher_t *w, memwatch_callback_t cb, void *user_ctx);

/**
 * memwatch_watcher_set_callback that takes ownership of user_ctx: finalizer
 * (may be NULL) is called with user_ctx exactly once, when memwatch last uses
 * it, and never while cb can still run with it:
 *   - the callback is replaced (by either set_callback function) or cleared:
 *     at once, or, if cb is running at that moment, right after it returns;
 *   - the watcher is closed or freed (memwatch_watcher_close/_free,
 *     memwatch_shutdown for the default watcher): after the running call, if
 *     any, returns;
 *   - cb == NULL, or the call fails (NULL or closed watcher): before this
 *     function returns.
 * It runs on the thread that caused it or on the delivery thread, under no
 * memwatch lock, so it may call memwatch functions. (In a forked child an
 * inherited watcher's finalizer is never called.)
 */
int memwatch_watcher_set_callback_with_finalizer(memwatch_watcher_t *w, memwatch_callback_t cb,
                                                 void *user_ctx, memwatch_finalizer_t finalizer);

/** memwatch_watcher_set_callback on the default watcher. */
int memwatch_set_callback(memwatch_callback_t cb, void *user_ctx);

/** memwatch_watcher_set_callback_with_finalizer on the default watcher. */
int memwatch_set_callback_with_finalizer(memwatch_callback_t cb, void *user_ctx,
                                         memwatch_finalizer_t finalizer);

/** Counts one failed callback in stats.callback_errors. For bindings whose
 *  callback trampolines catch their own language's exceptions. */
int memwatch_watcher_report_callback_error(memwatch_watcher_t *w);

/* ==== stats ============================================================= */

/** Counters of one watcher (faults and dropped_wheres are process-wide). */
typedef struct memwatch_stats {
    const char *backend;          /* static string: "protect", "poll", ... */
    char backend_reason[256];     /* why a better backend was not used; "" if none */
    uint64_t regions;
    uint64_t protected_pages;
    uint64_t faults;
    uint64_t events;
    uint64_t dropped_wheres;
    uint64_t native_bytes;
    uint64_t snapshot_bytes;
    uint64_t pending_events;
    uint64_t callback_errors;
    uint64_t latency_p50_ns;
    uint64_t latency_p99_ns;
    uint64_t fallback_regions;    /* writewatch regions userfaultfd refused, on protect instead */
    uint64_t gone_regions;        /* regions dropped: memory unmapped while watched (process-wide) */
    uint64_t shared_regions;      /* MAP_SHARED regions on protect/writewatch: other processes'
                                     writes are invisible to them (reason in backend_reason) */
    uint64_t reprotect_failures;  /* protect pages that could not be re-armed (process-wide;
                                     polled instead, no write missed) */
    uint64_t coalesced_events;    /* changes merged into a pending event (queue held 1024) */
    uint64_t hot_pages;           /* pages written nonstop, left writable and polled every poll
                                     interval, no writer located (process-wide; 0 when quiet) */
} memwatch_stats_t;

/** Fills *out with the watcher's statistics. */
int memwatch_watcher_get_stats(memwatch_watcher_t *w, memwatch_stats_t *out);

/** memwatch_watcher_get_stats on the default watcher. */
int memwatch_get_stats(memwatch_stats_t *out);

/* ==== location (writer of each change, opts.locate_writers) ============= */

/**
 * One frame of a writer's stack (memwatch_where_t.frames, innermost first).
 * Strings are never NULL ("" when unknown).
 */
typedef struct memwatch_frame {
    uint64_t ip;             /* the write itself for frame 0; return address - 1 above */
    const char *module;      /* executable or shared library path; "" outside any */
    uint64_t module_offset;  /* ip minus the module's load address (addr2line -e MODULE) */
    const char *function;    /* demangled; "" without symbols */
    const char *file;        /* "" without debug info */
    uint32_t line;           /* 0 = unknown */
    int32_t inlined;         /* 1 = inlined into the next frame (same ip) */
} memwatch_frame_t;

/**
 * Where a located write was made (memwatch_change_event_t.location). Owned by
 * the event: valid exactly as long as the event (during the callback, or
 * until memwatch_events_free()). The event's file/function/line are the
 * "user frame": the innermost frame outside memwatch and memcpy-style
 * helpers (libc's string routines); those stay in `frames`.
 *
 * Only the first write to a page in its writable window faults, so only it
 * is located; unattributed_faults counts the faults on other pages of the
 * region merged into this event without a location. Stacks are walked by
 * frame pointers: build with -fno-omit-frame-pointer for full stacks.
 */
struct memwatch_where {
    const char *thread_name;      /* the writing thread's name (prctl/pthread_setname_np) */
    const char *module;           /* module of the user frame */
    uint64_t module_offset;       /* offset of the user frame in that module */
    uint32_t unattributed_faults;
    uint32_t frame_count;
    const memwatch_frame_t *frames;
};

/** What a resolver fills in for one address (strings NUL-terminated, truncated to fit). */
typedef struct memwatch_resolved_frame {
    char function[256];
    char file[512];
    char module[256];   /* module or script name */
    uint32_t line;
} memwatch_resolved_frame_t;

/**
 * A runtime's own frame resolver (JIT code, interpreters): fill *out and
 * return 1 if `ip` is yours, else return 0 and memwatch resolves it (module
 * + offset, symbols, DWARF). Called for every captured address of a located
 * write, when its event is built: on memwatch's worker thread or in a
 * check_changes() caller, never in the signal handler, with memwatch's
 * engine locked, so it must not call memwatch functions. *out starts zeroed.
 */
typedef int (*memwatch_resolver_t)(uint64_t ip, memwatch_resolved_frame_t *out, void *user_ctx);

/** Sets the process-wide frame resolver (see memwatch_resolver_t); NULL removes it.
 *  user_ctx is passed back to every call. */
int memwatch_register_resolver(memwatch_resolver_t resolver, void *user_ctx);

/** Inside Mono (the C# binding calls it): located writes also carry the
 *  managed frames, first in the stack (frames[0] is the innermost managed
 *  frame), captured in the signal handler with mono_stack_walk_async_safe
 *  (found with dlsym here). They are unnamed (module and function ""): each
 *  ip is an address in JIT code, to be named on a thread attached to Mono
 *  (mono_jit_info_table_find, mono_jit_info_get_method,
 *  mono_method_full_name, mono_debug_lookup_source_location), as the C#
 *  binding does. Idempotent. MEMWATCH_ERR_UNSUPPORTED when the process does
 *  not run Mono. */
int memwatch_enable_mono_frames(void);

/* ==== store (MemStream) ================================================= */

/*
 * A named key-value store in POSIX shared memory, shared by any number of
 * processes. Readers never block (seqlock reads, never a torn value); writers
 * share a robust process-shared mutex, so a process killed at any moment,
 * even mid-write, leaves the store usable by the others. Keys and values are
 * binary (pointer + length); keys 1..1024 bytes by default, values up to the
 * store's capacity. A handle may be used from several threads at once. Store
 * names: 1..200 characters of [A-Za-z0-9._-], one leading '/' optional; the
 * segment is /dev/shm/<name>, mode 0600. Failures set memwatch_last_error()
 * like every other call. The seed's cache_* names are aliases, declared in
 * memwatch_store.h.
 */

/** Policy when a store is full, chosen at creation. */
#define MEMWATCH_STORE_EVICT_LRU 0 /* evict least recently used entries */
#define MEMWATCH_STORE_REFUSE 1    /* fail the put with MEMWATCH_ERR_FULL */

/** An open store (opaque). */
typedef struct memwatch_store memwatch_store_t;

/** Store-wide statistics. */
typedef struct memwatch_store_stats {
    uint64_t entries;         /* live entries */
    uint64_t max_entries;     /* entry limit */
    uint64_t capacity_bytes;  /* arena size */
    uint64_t bytes_used;      /* arena bytes allocated (headers included) */
    uint64_t data_bytes;      /* sum of key + value lengths */
    uint64_t hits;            /* gets that found their key */
    uint64_t misses;          /* gets that did not */
    uint64_t evictions;       /* LRU evictions */
    uint64_t puts;            /* successful puts */
    uint64_t deletes;         /* successful deletes */
    uint64_t refusals;        /* puts refused because full */
    uint64_t recoveries;      /* repairs after a process died holding the lock */
} memwatch_store_stats_t;

/** Statistics of one key; times in nanoseconds since the Unix epoch. */
typedef struct memwatch_store_key_stats {
    uint64_t value_size;
    uint64_t created_at_ns;   /* first put (kept across overwrites) */
    uint64_t updated_at_ns;   /* last put */
    uint64_t last_access_ns;  /* last get or put */
    uint64_t access_count;    /* gets that found the key */
} memwatch_store_key_stats_t;

/** Creates the store `name` with `capacity` arena bytes (>= 4096) and `policy`
 *  (MEMWATCH_STORE_*), or opens it if it exists (its own capacity and policy
 *  then apply). capacity == 0 only opens. NULL on error. */
memwatch_store_t *memwatch_store_connect(const char *name, uint64_t capacity, int policy);

/** Opens an existing store. NULL on error; memwatch_last_error_code() is
 *  MEMWATCH_ERR_NOT_FOUND when there is no such store. */
memwatch_store_t *memwatch_store_open(const char *name);

/** Stores a copy of value under key, replacing any previous value; readers
 *  see the old or the new value, never a mix. */
int memwatch_store_put(memwatch_store_t *s, const void *key, size_t key_len, const void *value,
                       size_t value_len);

/** memwatch_store_put that never waits for the writer lock: MEMWATCH_ERR_BUSY
 *  (nothing stored) if another writer holds it. For callers holding a lock of
 *  their own: try this, then fall back to the blocking memwatch_store_put. */
int memwatch_store_try_put(memwatch_store_t *s, const void *key, size_t key_len, const void *value,
                           size_t value_len);

/** Copies the value of key into buf if it fits. Returns the value length
 *  (>= 0; when it is > buf_len nothing was copied: retry with a bigger
 *  buffer) or a negative error, MEMWATCH_ERR_NOT_FOUND if absent. buf may be
 *  NULL when buf_len is 0 (to ask for the length). */
int64_t memwatch_store_get(memwatch_store_t *s, const void *key, size_t key_len, void *buf,
                           size_t buf_len);

/** Deletes key: MEMWATCH_OK, or MEMWATCH_ERR_NOT_FOUND. */
int memwatch_store_delete(memwatch_store_t *s, const void *key, size_t key_len);

/** 1 if key is present, 0 if not, negative on error. */
int memwatch_store_contains(memwatch_store_t *s, const void *key, size_t key_len);

/** Fills *out with store-wide statistics. */
int memwatch_store_stats(memwatch_store_t *s, memwatch_store_stats_t *out);

/** Fills *out with the statistics of one key; MEMWATCH_ERR_NOT_FOUND if absent. */
int memwatch_store_key_stats(memwatch_store_t *s, const void *key, size_t key_len,
                             memwatch_store_key_stats_t *out);

/** All keys as a packed list of (uint32 little-endian length, bytes). Returns
 *  the bytes the list needs; it was written only if that is <= buf_len.
 *  Negative on error. */
int64_t memwatch_store_keys(memwatch_store_t *s, void *buf, size_t buf_len);

/** Removes every entry. */
int memwatch_store_clear(memwatch_store_t *s);

/** Closes the handle (NULL is ignored). The store itself stays until unlinked. */
int memwatch_store_close(memwatch_store_t *s);

/** Removes the store's name; open handles keep working until closed. */
int memwatch_store_unlink(const char *name);

/* ==== record (SQLite / PostgreSQL, crates/memwatch-record) ============== */

/** A running recorder (opaque). */
typedef struct memwatch_recorder memwatch_recorder_t;

/** A recorder's counters. Every event produced while it records is in
 *  exactly one of written, dropped, abandoned, queued. */
typedef struct memwatch_recorder_stats {
    uint64_t written;     /* events committed to the database */
    uint64_t dropped;     /* events the full queue could not take (rows in memwatch_losses) */
    uint64_t abandoned;   /* queued but unwritten when the recorder closed, database down */
    uint64_t queued;      /* waiting to be written */
    uint64_t batches;     /* transactions committed */
    uint64_t reconnects;  /* connections made again after a loss */
    int32_t connected;    /* 1 while connected */
    int64_t recording_id; /* this recording in memwatch_recordings */
} memwatch_recorder_stats_t;

/**
 * Records every event of `w` (NULL: the default watcher), whether it goes to
 * the callback or to check_changes, into `url`: a file path or "sqlite:PATH"
 * (SQLite, WAL mode) or "postgresql://user@host:port/db" (PostgreSQL). The
 * schema (memwatch_recordings, memwatch_events, memwatch_losses) is created if
 * missing; see crates/memwatch-record/README.md. Never blocks the watched
 * program: a bounded queue feeds the recorder's own thread; what does not fit
 * is counted (stats.dropped) and written to memwatch_losses; a lost
 * connection is retried with backoff. On success *out is the recorder (free
 * it with memwatch_recorder_free); on failure *out is NULL and the code is
 * MEMWATCH_ERR_INVALID_ARGUMENT (bad URL) or MEMWATCH_ERR_DATABASE (cannot
 * open or reach the database), with the reason in memwatch_last_error().
 */
int memwatch_record_to(memwatch_watcher_t *w, const char *url, memwatch_recorder_t **out);

/** Waits up to timeout_ms until every event queued before the call is
 *  written: 1 if so, 0 on timeout (database down), < 0 on error. */
int memwatch_recorder_flush(memwatch_recorder_t *r, uint32_t timeout_ms);

/** Fills *out with the recorder's counters. */
int memwatch_recorder_stats(memwatch_recorder_t *r, memwatch_recorder_stats_t *out);

/** Stops recording (writing what is queued first, trying up to 5 s while the
 *  database is down) and frees the recorder. NULL is ignored. */
void memwatch_recorder_free(memwatch_recorder_t *r);

#ifdef __cplusplus
}
#endif

/* ==== glass ================================================================ */
/* memglass, typed objects in shared memory observed live from another
 * process, is part of libmemwatch too: memglass.h (memglass_*, codes
 * MEMGLASS_ERR_* from -20, in the same last-error slot). */
#include "memglass.h"

#endif /* MEMWATCH_H */
