/* memglass.h: typed objects in shared memory, observed live from another
 * process (part of libmemwatch; the Rust crate crates/memglass).
 *
 * A producer registers a struct layout (a table of memglass_field_t, built
 * with offsetof) and creates labelled objects; it writes them in place. An
 * observer in another process connects read-only and reads fields by dotted
 * path. Every function returns 0 (or a count) on success and a negative
 * MEMGLASS_ERR_* code on failure; memwatch_last_error() (memwatch.h) then
 * describes it. Segments live in $MEMGLASS_DIR or /dev/shm/memglass-<uid>.
 */
#ifndef MEMGLASS_H
#define MEMGLASS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    MEMGLASS_ERR_INVALID_ARGUMENT = -1,
    MEMGLASS_ERR_OS = -7,
    MEMGLASS_ERR_NOT_FOUND = -20,   /* no such session, object or field */
    MEMGLASS_ERR_EXISTS = -21,      /* session of a live producer, or label taken */
    MEMGLASS_ERR_BAD_SEGMENT = -22, /* truncated, corrupt, foreign or wrongly owned */
    MEMGLASS_ERR_FULL = -23,        /* a capacity is exhausted */
    MEMGLASS_ERR_GONE = -24,        /* the object was destroyed */
    MEMGLASS_ERR_TORN = -25,        /* a seqlock read kept overlapping writes */
    MEMGLASS_ERR_TYPE = -26         /* value does not fit the requested type/buffer */
};

/* Primitive types (memwatch_field_t.prim). */
enum {
    MEMGLASS_BOOL = 1, MEMGLASS_I8 = 2, MEMGLASS_U8 = 3, MEMGLASS_I16 = 4, MEMGLASS_U16 = 5,
    MEMGLASS_I32 = 6, MEMGLASS_U32 = 7, MEMGLASS_I64 = 8, MEMGLASS_U64 = 9,
    MEMGLASS_F32 = 10, MEMGLASS_F64 = 11, MEMGLASS_CHAR = 12 /* char arrays are strings */
};

/* Atomicity: how the producer writes the field. */
enum { MEMGLASS_PLAIN = 0, MEMGLASS_ATOMIC = 1, MEMGLASS_SEQLOCK = 2, MEMGLASS_LOCKED = 3 };

/* Semantics, for metric exporters. */
enum { MEMGLASS_GAUGE = 0, MEMGLASS_COUNTER = 1, MEMGLASS_DISCRETE = 2 };

typedef struct memglass_field {
    const char *path;      /* dotted name, e.g. "quote.bid" (<= 63 bytes) */
    uint32_t offset;       /* offsetof the value */
    uint32_t array_len;    /* 0 for a scalar, else element count */
    uint8_t prim;          /* MEMGLASS_BOOL .. MEMGLASS_CHAR */
    uint8_t atomicity;     /* MEMGLASS_PLAIN .. MEMGLASS_LOCKED */
    uint8_t semantics;     /* MEMGLASS_GAUGE .. MEMGLASS_DISCRETE */
    uint8_t reserved;      /* 0 */
    uint32_t guard_offset; /* seqlock/locked: offset of the 8-byte sequence word */
    const char *unit;      /* or NULL */
    const char *help;      /* or NULL */
} memglass_field_t;

typedef struct memglass_object_id {
    uint32_t slot;
    uint64_t generation;
} memglass_object_id_t;

typedef struct memglass_producer memglass_producer_t;
typedef struct memglass_observer memglass_observer_t;

/* Producer. `dir` NULL = the default directory. A dead producer's session
 * of that name is replaced; a live one gives MEMGLASS_ERR_EXISTS. */
int memglass_producer_init(const char *session, const char *dir, memglass_producer_t **out);
int memglass_register_type(memglass_producer_t *p, const char *name, uint32_t size, uint32_t align,
                           const memglass_field_t *fields, size_t n, uint32_t *type_index);
/* `count` >= 1 zeroed elements; *data is writable until memglass_destroy. */
int memglass_create(memglass_producer_t *p, uint32_t type_index, const char *label, uint32_t count,
                    void **data, memglass_object_id_t *id);
int memglass_destroy(memglass_producer_t *p, memglass_object_id_t id);
/* Publishes len bytes at src into the seqlock-guarded bytes at data (guard:
 * the 8-byte-aligned sequence word; one writer per guard). */
int memglass_seqlock_write(uint64_t *guard, void *data, const void *src, size_t len);
/* Shuts the session down (observers see it dead) and frees p. */
int memglass_producer_free(memglass_producer_t *p);

/* Observer (read-only mapping). */
int memglass_observer_connect(const char *session, const char *dir, memglass_observer_t **out);
int memglass_observer_refresh(memglass_observer_t *o); /* 1 changed, 0 not */
int memglass_object_count(const memglass_observer_t *o);
int memglass_liveness(const memglass_observer_t *o); /* 0 alive, 1 stale, 2 dead */
int memglass_read_f64(const memglass_observer_t *o, const char *label, const char *path, double *out);
int memglass_read_i64(const memglass_observer_t *o, const char *label, const char *path, int64_t *out);
/* Returns the string length; MEMGLASS_ERR_TYPE if it does not fit len. */
int memglass_read_str(const memglass_observer_t *o, const char *label, const char *path, char *buf,
                      size_t len);
void memglass_observer_close(memglass_observer_t *o);

#ifdef __cplusplus
}
#endif
#endif
