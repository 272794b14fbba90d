/*
 * memwatch.h - C API of memwatch: detect and report changes to watched memory.
 *
 * Two layers:
 *   - Handle API (memwatch_watcher_*): any number of independent watchers,
 *     each with its own regions, callback and pending events.
 *   - The seeds' global API (memwatch_init, memwatch_watch, ...): the same
 *     calls on one process-wide default watcher.
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
    MEMWATCH_ERR_DATABASE = -9          /* memwatch_record_to: database unreachable or refused */
} memwatch_error_t;

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

/** A run of changed bytes, relative to the start of the region. */
typedef struct memwatch_range {
    size_t offset;
    size_t length;
} memwatch_range_t;

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
typedef struct memwatch_where {
    const char *thread_name;      /* the writing thread's name (prctl/pthread_setname_np) */
    const char *module;           /* module of the user frame */
    uint64_t module_offset;       /* offset of the user frame in that module */
    uint32_t unattributed_faults;
    uint32_t frame_count;
    const memwatch_frame_t *frames;
} memwatch_where_t;

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
    const char *storage_key_old; /* NULL for now */
    const char *storage_key_new; /* NULL for now */
    const char *metadata;        /* as given to watch, or NULL */
    const memwatch_where_t *location; /* locate_writers: where the write was made, or
                                         NULL (not located: option off, other backend,
                                         fault ring full); same lifetime as the event */
    uint32_t coalesced;      /* changes this event stands for: 1, or more when later
                                changes were merged into it in a full queue (then
                                old_* is the first's, new_* the last's, ranges the union) */
} memwatch_change_event_t;

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
} memwatch_stats_t;

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

/** Called on the delivery thread for each event; event is valid only during the call. */
typedef void (*memwatch_callback_t)(const memwatch_change_event_t *event, void *user_ctx);

typedef struct memwatch_watcher memwatch_watcher_t;

/* ---- errors ---------------------------------------------------------- */

/** Message of the last failure in this thread ("" if none). Like errno, it is
 *  only set by failing calls; the pointer stays valid until the next failing
 *  call in this thread. */
const char *memwatch_last_error(void);
/** Code of the last failure in this thread (MEMWATCH_OK if none). */
int memwatch_last_error_code(void);

/* ---- handle API ------------------------------------------------------ */

/** Fills *opts with the defaults. */
void memwatch_options_default(memwatch_options_t *opts);

/** Sets the process-wide frame resolver (see memwatch_resolver_t); NULL removes it.
 *  user_ctx is passed back to every call. */
int memwatch_register_resolver(memwatch_resolver_t resolver, void *user_ctx);

/** Creates a watcher; opts may be NULL for defaults. */
int memwatch_watcher_new(const memwatch_options_t *opts, memwatch_watcher_t **out);

/** Closes the watcher (unwatching everything) and frees it. NULL is ignored.
 *  May be called from inside its own callback. No other thread may be using
 *  the handle during or after this call (use memwatch_watcher_close() to stop
 *  a watcher that other threads may still touch, and free it afterwards). */
void memwatch_watcher_free(memwatch_watcher_t *w);

/** Starts watching [addr, addr+len). name may be NULL (""), metadata may be NULL. */
int memwatch_watcher_watch(memwatch_watcher_t *w, const void *addr, size_t len,
                           const char *name, const char *metadata, uint32_t *out_id);

/** Stops watching a region: 1 if it was watched, 0 if the id is unknown, <0 on error. */
int memwatch_watcher_unwatch(memwatch_watcher_t *w, uint32_t region_id);

/** Sets (cb != NULL) or clears (cb == NULL) the callback. */
int memwatch_watcher_set_callback(memwatch_watcher_t *w, memwatch_callback_t cb, void *user_ctx);

/**
 * Detects changes now. Every write made before this call is in the result
 * or was already delivered to the callback. With a callback set, events go to
 * it (this call waits until they were delivered) and *out_count is 0.
 * Free the array with memwatch_events_free (NULL/0 is fine).
 */
int memwatch_watcher_check_changes(memwatch_watcher_t *w, memwatch_change_event_t **out_events,
                                   size_t *out_count);

/** Frees an array returned by check_changes. */
void memwatch_events_free(memwatch_change_event_t *events, size_t count);

/** Fills *out with the watcher's statistics. */
int memwatch_watcher_get_stats(memwatch_watcher_t *w, memwatch_stats_t *out);

/* ---- the seeds' global API (one default watcher, backend "auto") ----- */

/** Creates the default watcher if needed. Idempotent. The other global
 *  functions create it on first use too, so calling this is optional. */
int memwatch_init(void);
/** Frees the default watcher (unwatching everything), after delivering the
 *  changes made before the call to the default callback (waiting 2 s at
 *  most; not when called from inside the callback). A later global call
 *  creates a fresh one. May be called from inside the default callback. */
void memwatch_shutdown(void);
/** Watches on the default watcher; returns the region id, or 0 on error. */
uint32_t memwatch_watch(uint64_t addr, size_t size, const char *name, const char *metadata);
/** 1 if the region was watched, 0 if unknown, <0 on error. */
int memwatch_unwatch(uint32_t region_id);
/** memwatch_watcher_set_callback on the default watcher. */
int memwatch_set_callback(memwatch_callback_t cb, void *user_ctx);
/** memwatch_watcher_check_changes on the default watcher; free with memwatch_events_free. */
int memwatch_check_changes(memwatch_change_event_t **out_events, size_t *out_count);
/** memwatch_watcher_get_stats on the default watcher. */
int memwatch_get_stats(memwatch_stats_t *out);

/* ---- additions (after the seeds' API) --------------------------------- */

/** Creates the default watcher with these options (NULL = defaults).
 *  MEMWATCH_ERR_INVALID_ARGUMENT if it already exists: call memwatch_shutdown() first. */
int memwatch_init_with_options(const memwatch_options_t *opts);

/** Closes a watcher (unwatching everything) without freeing the handle; later
 *  calls on it fail with MEMWATCH_ERR_CLOSED. Idempotent. */
int memwatch_watcher_close(memwatch_watcher_t *w);

/**
 * Sends values larger than max_value_bytes to the MemStream store `store_name`
 * (created with `capacity` bytes and LRU eviction if it does not exist; see
 * memwatch_store.h). Events of such regions then carry storage_key_new and,
 * while the store holds it, storage_key_old: keys of the form
 * "memwatch/{adapter_id}/{region_id}/{epoch}" that any process can read with
 * cache_get on the same store. store_name == NULL stops it.
 */
int memwatch_watcher_set_value_store(memwatch_watcher_t *w, const char *store_name, uint64_t capacity);

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

/** Counts one failed callback in stats.callback_errors. For bindings whose
 *  callback trampolines catch their own language's exceptions. */
int memwatch_watcher_report_callback_error(memwatch_watcher_t *w);

/* ---- cancellable check_changes, exit flush ----------------------------- */

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

/* ---- recording into SQLite / PostgreSQL (crates/memwatch-record) ------ */

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

/** The operating system's page size in bytes. */
size_t memwatch_page_size(void);

/** The library version, a static string such as "0.1.0". */
const char *memwatch_version(void);

#ifdef __cplusplus
}
#endif

#endif /* MEMWATCH_H */
