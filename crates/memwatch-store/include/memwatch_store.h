/*
 * memwatch_store.h - C API of MemStream (crate memwatch-store, feature "capi").
 *
 * A named key-value store in POSIX shared memory, shared by any number of
 * processes. Readers never block (seqlock reads, never a torn value); writers
 * share a robust process-shared mutex, so a process killed at any moment,
 * even mid-write, leaves the store usable by the others.
 *
 * Build the library:
 *   cargo rustc -p memwatch-store --release --features capi --lib --crate-type cdylib
 *   -> target/release/libmemwatch_store.so
 * (libmemwatch from crates/memwatch-capi re-exports the same symbols.)
 *
 * Conventions
 *   - Functions return CACHE_OK (0) or a negative CACHE_ERR_* code;
 *     cache_connect/cache_open return NULL on error.
 *   - After an error, cache_last_error() describes it and
 *     cache_last_error_code() gives its code (per thread).
 *   - Keys and values are binary (pointer + length). Keys: 1..1024 bytes by
 *     default. Values: up to the store's capacity.
 *   - A cache_t handle may be used from several threads at once.
 *   - Store names: 1..200 characters of [A-Za-z0-9._-], one leading '/'
 *     optional. The segment is /dev/shm/<name>, mode 0600.
 *
 * Example
 *   cache_t *c = cache_connect("demo", 64 << 20, CACHE_POLICY_EVICT_LRU);
 *   if (!c) { fprintf(stderr, "%s\n", cache_last_error()); return 1; }
 *   cache_put(c, "foo", 3, "bar", 3);
 *   char buf[64];
 *   int64_t n = cache_get(c, "foo", 3, buf, sizeof buf);   // n == 3
 *   cache_close(c);
 */
#ifndef MEMWATCH_STORE_H
#define MEMWATCH_STORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- result codes ---- */
#define CACHE_OK                     0
#define CACHE_ERR_NOT_FOUND         -1  /* key absent; or no such store (open/unlink) */
#define CACHE_ERR_INVALID           -2  /* NULL pointer, bad name/option, empty key */
#define CACHE_ERR_KEY_TOO_LONG      -3
#define CACHE_ERR_VALUE_TOO_LARGE   -4  /* key + value can never fit in this store */
#define CACHE_ERR_FULL              -5  /* policy REFUSE and no room (or all pinned) */
#define CACHE_ERR_BUFFER_TOO_SMALL  -6
#define CACHE_ERR_CORRUPT           -7  /* not a store, wrong version, truncated, corrupt */
#define CACHE_ERR_NOT_INITIALIZED   -8  /* exists but its creator died before finishing */
#define CACHE_ERR_LOCK              -9  /* writer lock timed out (10 s) */
#define CACHE_ERR_TOO_MANY_PINS    -10
#define CACHE_ERR_OS               -11  /* a system call failed; see cache_last_error */
#define CACHE_ERR_PANIC            -12  /* internal error */
#define CACHE_ERR_BUSY             -13  /* writer lock held elsewhere (cache_try_put32) */

/* ---- policy when full, chosen at creation ---- */
#define CACHE_POLICY_EVICT_LRU 0     /* evict least recently used entries */
#define CACHE_POLICY_REFUSE    1     /* fail the put with CACHE_ERR_FULL */

/* Opaque store handle. */
typedef struct CacheHandle cache_t;

/* Store-wide statistics. */
typedef struct cache_stats_t {
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
} cache_stats_t;

/* Per-key statistics; times in nanoseconds since the Unix epoch. */
typedef struct cache_key_stats_t {
    uint64_t value_size;
    uint64_t created_at_ns;   /* first put (kept across overwrites) */
    uint64_t updated_at_ns;   /* last put */
    uint64_t last_access_ns;  /* last get or put */
    uint64_t access_count;    /* gets that found the key */
} cache_key_stats_t;

/* Creates the store `name` with `capacity` arena bytes (>= 4096) and `policy`,
 * or opens it if it exists (its own capacity and policy then apply).
 * capacity == 0 only opens. Returns NULL on error. */
cache_t *cache_connect(const char *name, uint64_t capacity, int policy);

/* Opens an existing store. NULL on error; cache_last_error_code() is
 * CACHE_ERR_NOT_FOUND when there is no such store. */
cache_t *cache_open(const char *name);

/* Stores a copy of value under key, replacing any previous value; readers see
 * the old or the new value, never a mix. */
int cache_put(cache_t *c, const void *key, size_t key_len,
              const void *value, size_t value_len);

/* Copies the value of key into buf if it fits. Returns the value length
 * (>= 0; when it is > buf_len nothing was copied: retry with a bigger buffer)
 * or a negative error, CACHE_ERR_NOT_FOUND if absent. buf may be NULL when
 * buf_len is 0 (to ask for the length). */
int64_t cache_get(cache_t *c, const void *key, size_t key_len,
                  void *buf, size_t buf_len);

/* cache_put / cache_get with 32-bit lengths: for FFIs that pass plain ints
 * without declared argument types (Python ctypes' fast path). */
int cache_put32(cache_t *c, const void *key, uint32_t key_len,
                const void *value, uint32_t value_len);
int64_t cache_get32(cache_t *c, const void *key, uint32_t key_len,
                    void *buf, uint32_t buf_len);

/* cache_put32 that never waits for the writer lock: CACHE_ERR_BUSY (nothing
 * stored) if another writer holds it. For callers holding a lock of their own
 * (Python's GIL): try this, then fall back to the blocking cache_put32. */
int cache_try_put32(cache_t *c, const void *key, uint32_t key_len,
                    const void *value, uint32_t value_len);

/* Deletes key: CACHE_OK, or CACHE_ERR_NOT_FOUND. */
int cache_delete(cache_t *c, const void *key, size_t key_len);

/* 1 if key is present, 0 if not, negative on error. */
int cache_contains(cache_t *c, const void *key, size_t key_len);

/* Store-wide statistics. */
int cache_stats(cache_t *c, cache_stats_t *out);

/* Statistics of one key; CACHE_ERR_NOT_FOUND if absent. */
int cache_key_stats(cache_t *c, const void *key, size_t key_len,
                    cache_key_stats_t *out);

/* All keys as a packed list of (uint32 little-endian length, bytes). Returns
 * the bytes the list needs; it was written only if that is <= buf_len.
 * Negative on error. */
int64_t cache_keys(cache_t *c, void *buf, size_t buf_len);

/* Removes every entry. */
int cache_clear(cache_t *c);

/* Closes the handle (NULL allowed). The store itself stays until unlinked. */
int cache_close(cache_t *c);

/* Removes the store's name; open handles keep working until closed. */
int cache_unlink(const char *name);

/* Message of this thread's last error ("" if none); valid until the next
 * call into the library from this thread. */
const char *cache_last_error(void);

/* Code (CACHE_ERR_*) of this thread's last error, CACHE_OK if none: tells
 * why cache_connect/cache_open returned NULL (CACHE_ERR_NOT_FOUND: no such
 * store). */
int cache_last_error_code(void);

/* Library version string. */
const char *cache_version(void);

#ifdef __cplusplus
}
#endif

#endif /* MEMWATCH_STORE_H */
