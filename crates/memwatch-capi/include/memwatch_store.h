/*
 * memwatch_store.h - the seed's names of MemStream's C API (cache_*).
 *
 * The store's C API is memwatch_store_* in memwatch.h (section "store"),
 * exported by libmemwatch. This header keeps the seed's names as documented
 * aliases so existing C code compiles and links unchanged:
 *   - cache_t, cache_stats_t, cache_key_stats_t are memwatch_store_t,
 *     memwatch_store_stats_t, memwatch_store_key_stats_t;
 *   - every cache_* function is the memwatch_store_* function of the same
 *     name (real exported symbols, so FFIs that look them up by name keep
 *     working), except that it returns the seed's CACHE_ERR_* numbers below
 *     instead of memwatch_error_t;
 *   - cache_last_error() is memwatch_last_error(): the library has one
 *     last-error slot per thread, set by every failing call; and
 *     cache_last_error_code() is memwatch_last_error_code() as a CACHE_ERR_*
 *     number (errors of the watcher API read as CACHE_ERR_INVALID).
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

#include "memwatch.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- result codes of the cache_* functions ---- */
#define CACHE_OK                     0
#define CACHE_ERR_NOT_FOUND         -1  /* MEMWATCH_ERR_NOT_FOUND */
#define CACHE_ERR_INVALID           -2  /* MEMWATCH_ERR_INVALID_ARGUMENT */
#define CACHE_ERR_KEY_TOO_LONG      -3  /* MEMWATCH_ERR_KEY_TOO_LONG */
#define CACHE_ERR_VALUE_TOO_LARGE   -4  /* MEMWATCH_ERR_VALUE_TOO_LARGE */
#define CACHE_ERR_FULL              -5  /* MEMWATCH_ERR_FULL */
#define CACHE_ERR_BUFFER_TOO_SMALL  -6  /* MEMWATCH_ERR_BUFFER_TOO_SMALL */
#define CACHE_ERR_CORRUPT           -7  /* MEMWATCH_ERR_CORRUPT */
#define CACHE_ERR_NOT_INITIALIZED   -8  /* MEMWATCH_ERR_NOT_INITIALIZED */
#define CACHE_ERR_LOCK              -9  /* MEMWATCH_ERR_LOCK */
#define CACHE_ERR_TOO_MANY_PINS    -10  /* MEMWATCH_ERR_TOO_MANY_PINS */
#define CACHE_ERR_OS               -11  /* MEMWATCH_ERR_OS */
#define CACHE_ERR_PANIC            -12  /* MEMWATCH_ERR_INTERNAL */
#define CACHE_ERR_BUSY             -13  /* MEMWATCH_ERR_BUSY */

/* ---- policy when full ---- */
#define CACHE_POLICY_EVICT_LRU MEMWATCH_STORE_EVICT_LRU
#define CACHE_POLICY_REFUSE    MEMWATCH_STORE_REFUSE

typedef memwatch_store_t cache_t;
typedef memwatch_store_stats_t cache_stats_t;
typedef memwatch_store_key_stats_t cache_key_stats_t;

/** memwatch_store_connect. */
cache_t *cache_connect(const char *name, uint64_t capacity, int policy);
/** memwatch_store_open. */
cache_t *cache_open(const char *name);
/** memwatch_store_put. */
int cache_put(cache_t *c, const void *key, size_t key_len, const void *value, size_t value_len);
/** memwatch_store_get. */
int64_t cache_get(cache_t *c, const void *key, size_t key_len, void *buf, size_t buf_len);
/** cache_put / cache_get with 32-bit lengths: for FFIs that pass plain ints
 *  without declared argument types (Python ctypes' fast path). */
int cache_put32(cache_t *c, const void *key, uint32_t key_len, const void *value, uint32_t value_len);
/** See cache_put32. */
int64_t cache_get32(cache_t *c, const void *key, uint32_t key_len, void *buf, uint32_t buf_len);
/** memwatch_store_try_put with 32-bit lengths: CACHE_ERR_BUSY if another writer holds the lock. */
int cache_try_put32(cache_t *c, const void *key, uint32_t key_len, const void *value, uint32_t value_len);
/** memwatch_store_delete. */
int cache_delete(cache_t *c, const void *key, size_t key_len);
/** memwatch_store_contains. */
int cache_contains(cache_t *c, const void *key, size_t key_len);
/** memwatch_store_stats. */
int cache_stats(cache_t *c, cache_stats_t *out);
/** memwatch_store_key_stats. */
int cache_key_stats(cache_t *c, const void *key, size_t key_len, cache_key_stats_t *out);
/** memwatch_store_keys. */
int64_t cache_keys(cache_t *c, void *buf, size_t buf_len);
/** memwatch_store_clear. */
int cache_clear(cache_t *c);
/** memwatch_store_close. */
int cache_close(cache_t *c);
/** memwatch_store_unlink. */
int cache_unlink(const char *name);
/** memwatch_last_error (the library's one last-error slot). */
const char *cache_last_error(void);
/** memwatch_last_error_code as a CACHE_ERR_* number. */
int cache_last_error_code(void);
/** memwatch_version. */
const char *cache_version(void);

#ifdef __cplusplus
}
#endif

#endif /* MEMWATCH_STORE_H */
