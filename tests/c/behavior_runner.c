/*
 * behavior_runner: runs every tests/behavior/ scenario (*.json) through the C ABI
 * (handle API), once per backend the scenario lists, each on a fresh watcher
 * and fresh page-aligned buffers. The JSON files are read at test time.
 *
 * usage: behavior_runner DIR_OR_FILE...
 * Exit status 0 only if every scenario run passed and at least one ran.
 */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "memwatch.h"

#define MAX_BUFFERS 16
#define MAX_REGIONS 64
#define UNKNOWN_REGION_ID 4000000000u

typedef struct {
    char name[64];
    uint8_t *mem;
    size_t size;
    size_t map_len;
} buffer_t;

typedef struct {
    char key[64];
    uint32_t id;
} region_t;

typedef struct {
    const char *scenario;
    const char *backend;
    int step;
    char msg[4096];
    int failed;
} ctx_t;

static size_t g_page;

static void failf(ctx_t *c, const char *fmt, ...) {
    if (c->failed) return; /* keep the first failure */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof c->msg, fmt, ap);
    va_end(ap);
    c->failed = 1;
}

/* Integer or "Np" / "Np+M" / "Np-M". Returns 0 on success. */
static int parse_size(const cJSON *v, long long *out) {
    if (cJSON_IsNumber(v)) {
        *out = (long long)v->valuedouble;
        return 0;
    }
    if (!cJSON_IsString(v)) return -1;
    const char *s = v->valuestring;
    char *end;
    long long n = strtoll(s, &end, 10);
    if (end == s) return -1;
    if (*end == '\0') { *out = n; return 0; }
    if (*end != 'p') return -1;
    long long val = n * (long long)g_page;
    end++;
    if (*end == '\0') { *out = val; return 0; }
    if (*end != '+' && *end != '-') return -1;
    char sign = *end++;
    char *end2;
    long long m = strtoll(end, &end2, 10);
    if (end2 == end || *end2 != '\0') return -1;
    *out = sign == '+' ? val + m : val - m;
    return 0;
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Decodes hex into a fresh buffer. Returns 0 on success. */
static int parse_hex(const char *s, uint8_t **out, size_t *out_len) {
    size_t n = strlen(s);
    if (n % 2) return -1;
    uint8_t *b = malloc(n / 2 + 1);
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) { free(b); return -1; }
        b[i] = (uint8_t)(hi * 16 + lo);
    }
    *out = b;
    *out_len = n / 2;
    return 0;
}

static int parse_byte(const char *s, uint8_t *out) {
    uint8_t *b; size_t n;
    if (!s || parse_hex(s, &b, &n) || n != 1) return -1;
    *out = b[0];
    free(b);
    return 0;
}

/* A value spec: hex string or {len, fill, patches}. Returns 0 on success. */
static int parse_value(const cJSON *v, uint8_t **out, size_t *out_len) {
    if (cJSON_IsString(v)) return parse_hex(v->valuestring, out, out_len);
    if (!cJSON_IsObject(v)) return -1;
    long long len;
    if (parse_size(cJSON_GetObjectItemCaseSensitive(v, "len"), &len) || len < 0) return -1;
    uint8_t fill = 0;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(v, "fill");
    if (f && parse_byte(f->valuestring, &fill)) return -1;
    uint8_t *b = malloc((size_t)len + 1);
    memset(b, fill, (size_t)len);
    const cJSON *patches = cJSON_GetObjectItemCaseSensitive(v, "patches");
    const cJSON *p;
    cJSON_ArrayForEach(p, patches) {
        long long off;
        uint8_t *pb; size_t pn;
        if (cJSON_GetArraySize(p) != 2 || parse_size(cJSON_GetArrayItem(p, 0), &off) ||
            !cJSON_IsString(cJSON_GetArrayItem(p, 1)) ||
            parse_hex(cJSON_GetArrayItem(p, 1)->valuestring, &pb, &pn)) { free(b); return -1; }
        if (off < 0 || (size_t)off + pn > (size_t)len) { free(pb); free(b); return -1; }
        memcpy(b + off, pb, pn);
        free(pb);
    }
    *out = b;
    *out_len = (size_t)len;
    return 0;
}

static void hex_summary(const uint8_t *b, size_t n, char *out, size_t cap) {
    /* Short values in full; long ones as length + the non-zero bytes' first positions. */
    size_t pos = 0;
    if (!b) { snprintf(out, cap, "(absent)"); return; }
    if (n <= 64) {
        for (size_t i = 0; i < n && pos + 3 < cap; i++) pos += (size_t)snprintf(out + pos, cap - pos, "%02x", b[i]);
        if (n == 0) snprintf(out, cap, "(empty)");
        return;
    }
    pos += (size_t)snprintf(out + pos, cap - pos, "len=%zu first=%02x diffs-from-first:", n, b[0]);
    int shown = 0;
    for (size_t i = 0; i < n && shown < 8 && pos + 24 < cap; i++)
        if (b[i] != b[0]) { pos += (size_t)snprintf(out + pos, cap - pos, " [%zu]=%02x", i, b[i]); shown++; }
}

/* Compares an event's bytes with an expected spec (value or null). */
static void cmp_bytes(ctx_t *c, const char *field, const cJSON *spec, const uint8_t *got, size_t got_len) {
    if (cJSON_IsNull(spec)) {
        if (got != NULL || got_len != 0) {
            char a[512]; hex_summary(got, got_len, a, sizeof a);
            failf(c, "%s: expected absent (null), got %s", field, a);
        }
        return;
    }
    uint8_t *want; size_t want_len;
    if (parse_value(spec, &want, &want_len)) { failf(c, "%s: bad value spec in scenario", field); return; }
    int same = got != NULL && got_len == want_len && memcmp(got, want, want_len) == 0;
    if (!same && !(want_len == 0 && got_len == 0)) {
        char a[512], b[512];
        hex_summary(want, want_len, a, sizeof a);
        hex_summary(got, got_len, b, sizeof b);
        failf(c, "%s: expected %s, got %s", field, a, b);
    }
    free(want);
}

static buffer_t *find_buffer(buffer_t *bufs, int n, const char *name) {
    for (int i = 0; i < n; i++) if (name && strcmp(bufs[i].name, name) == 0) return &bufs[i];
    return NULL;
}

static region_t *find_region(region_t *regs, int n, const char *key) {
    for (int i = 0; i < n; i++) if (key && strcmp(regs[i].key, key) == 0) return &regs[i];
    return NULL;
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void compare_events(ctx_t *c, const memwatch_change_event_t *evs, size_t n, const cJSON *expect,
                           region_t *regs, int nregs);

static void do_check(ctx_t *c, memwatch_watcher_t *w, const cJSON *expect, region_t *regs, int nregs) {
    memwatch_change_event_t *evs = NULL;
    size_t n = 0;
    int rc = memwatch_watcher_check_changes(w, &evs, &n);
    if (rc != MEMWATCH_OK) { failf(c, "check_changes failed: %d %s", rc, memwatch_last_error()); return; }
    compare_events(c, evs, n, expect, regs, nregs);
    memwatch_events_free(evs, n);
}

/* ---- callback delivery: the callback keeps deep copies of its events ---- */

static pthread_mutex_t g_cb_mu = PTHREAD_MUTEX_INITIALIZER;
static memwatch_change_event_t g_cb_events[64];
static size_t g_cb_count;
static int g_cb_overflow;

static void *dup_bytes(const void *p, size_t n) {
    if (!p) return NULL;
    void *q = malloc(n ? n : 1);
    memcpy(q, p, n);
    return q;
}

static char *dup_str(const char *s) { return s ? dup_bytes(s, strlen(s) + 1) : NULL; }

static void collect_event(const memwatch_change_event_t *e, void *ctx) {
    (void)ctx;
    pthread_mutex_lock(&g_cb_mu);
    if (g_cb_count == sizeof g_cb_events / sizeof g_cb_events[0]) {
        g_cb_overflow = 1;
    } else {
        memwatch_change_event_t *c = &g_cb_events[g_cb_count++];
        *c = *e;
        c->variable_name = dup_str(e->variable_name);
        c->file = NULL;
        c->function = NULL;
        c->changed_ranges = dup_bytes(e->changed_ranges, e->changed_range_count * sizeof *e->changed_ranges);
        c->old_preview = dup_bytes(e->old_preview, e->old_preview_len);
        c->new_preview = dup_bytes(e->new_preview, e->new_preview_len);
        c->old_value = dup_bytes(e->old_value, e->old_value_len);
        c->new_value = dup_bytes(e->new_value, e->new_value_len);
        c->storage_key_old = NULL;
        c->storage_key_new = NULL;
        c->metadata = dup_str(e->metadata);
    }
    pthread_mutex_unlock(&g_cb_mu);
}

static void clear_collected(void) {
    for (size_t i = 0; i < g_cb_count; i++) {
        memwatch_change_event_t *c = &g_cb_events[i];
        free((void *)c->variable_name);
        free((void *)c->changed_ranges);
        free((void *)c->old_preview);
        free((void *)c->new_preview);
        free((void *)c->old_value);
        free((void *)c->new_value);
        free((void *)c->metadata);
    }
    g_cb_count = 0;
    g_cb_overflow = 0;
}

static void do_check_callback(ctx_t *c, memwatch_watcher_t *w, const cJSON *expect, region_t *regs, int nregs) {
    memwatch_change_event_t *evs = NULL;
    size_t n = 0;
    int rc = memwatch_watcher_check_changes(w, &evs, &n);
    if (rc != MEMWATCH_OK) { failf(c, "check_changes failed: %d %s", rc, memwatch_last_error()); return; }
    memwatch_events_free(evs, n);
    if (n != 0) { failf(c, "with a callback, check_changes returned %zu events", n); return; }
    pthread_mutex_lock(&g_cb_mu);
    if (g_cb_overflow) failf(c, "more than 64 events delivered");
    else compare_events(c, g_cb_events, g_cb_count, expect, regs, nregs);
    clear_collected();
    pthread_mutex_unlock(&g_cb_mu);
}

/* ---- errors and stats ---- */

/* The engine's error kind name (Error::kind_name()) of a C error code. */
static const char *kind_name(int rc) {
    switch (rc) {
    case MEMWATCH_ERR_INVALID_ARGUMENT: return "invalid_argument";
    case MEMWATCH_ERR_UNMAPPED: return "unmapped";
    case MEMWATCH_ERR_READ_ONLY: return "read_only";
    case MEMWATCH_ERR_OVERLAP: return "overlap";
    case MEMWATCH_ERR_UNSUPPORTED: return "unsupported";
    case MEMWATCH_ERR_CLOSED: return "closed";
    case MEMWATCH_ERR_OS: return "os";
    case MEMWATCH_OK: return "ok";
    default: return "internal";
    }
}

static void expect_kind(ctx_t *c, const char *call, int rc, const char *want) {
    if (!want) { failf(c, "%s: step lacks expect", call); return; }
    if (strcmp(kind_name(rc), want) != 0)
        failf(c, "%s: expected a %s error, got %s (%d) %s", call, want, kind_name(rc), rc, rc < 0 ? memwatch_last_error() : "");
    else if (memwatch_last_error_code() != rc)
        failf(c, "%s: memwatch_last_error_code() is %d, not %d", call, memwatch_last_error_code(), rc);
}

/* A stats field by its snake_case name: 1 found (number in *num, or text in *text), 0 unknown. */
static int stat_field(const memwatch_stats_t *s, const char *name, unsigned long long *num, const char **text) {
    *text = NULL;
    if (strcmp(name, "backend") == 0) { *text = s->backend ? s->backend : ""; return 1; }
    if (strcmp(name, "backend_reason") == 0) { *text = s->backend_reason; return 1; }
#define MW_STAT(f) if (strcmp(name, #f) == 0) { *num = (unsigned long long)s->f; return 1; }
    MW_STAT(regions) MW_STAT(protected_pages) MW_STAT(faults) MW_STAT(events) MW_STAT(dropped_wheres)
    MW_STAT(native_bytes) MW_STAT(snapshot_bytes) MW_STAT(pending_events) MW_STAT(callback_errors)
    MW_STAT(latency_p50_ns) MW_STAT(latency_p99_ns) MW_STAT(fallback_regions) MW_STAT(gone_regions)
    MW_STAT(shared_regions) MW_STAT(reprotect_failures) MW_STAT(coalesced_events) MW_STAT(hot_pages)
#undef MW_STAT
    return 0;
}

static void do_stats(ctx_t *c, memwatch_watcher_t *w, const cJSON *spec) {
    memwatch_stats_t s;
    int rc = memwatch_watcher_get_stats(w, &s);
    if (rc != MEMWATCH_OK) { failf(c, "get_stats failed: %d %s", rc, memwatch_last_error()); return; }
    unsigned long long num;
    const char *text;
    const cJSON *f;
    cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(spec, "fields")) {
        if (!cJSON_IsString(f) || !stat_field(&s, f->valuestring, &num, &text)) {
            failf(c, "stats field %s missing", cJSON_IsString(f) ? f->valuestring : "?");
            return;
        }
    }
    cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(spec, "equal")) {
        if (!stat_field(&s, f->string, &num, &text)) { failf(c, "stats field %s missing", f->string); return; }
        if (cJSON_IsString(f) ? (!text || strcmp(text, f->valuestring) != 0)
                              : (text || !cJSON_IsNumber(f) || num != (unsigned long long)f->valuedouble)) {
            failf(c, "stats field %s: expected %s%g, got %s%llu", f->string, cJSON_IsString(f) ? f->valuestring : "", cJSON_IsString(f) ? 0.0 : f->valuedouble, text ? text : "", text ? 0ULL : num);
            return;
        }
    }
}

static void compare_events(ctx_t *c, const memwatch_change_event_t *evs, size_t n, const cJSON *expect,
                           region_t *regs, int nregs) {
    size_t want_n = (size_t)cJSON_GetArraySize(expect);
    if (n != want_n) {
        char got[1024] = "";
        size_t pos = 0;
        for (size_t i = 0; i < n && pos + 80 < sizeof got; i++)
            pos += (size_t)snprintf(got + pos, sizeof got - pos, " {region_id=%u name=%s ranges=%zu}",
                                    evs[i].region_id, evs[i].variable_name, evs[i].changed_range_count);
        failf(c, "expected %zu events, got %zu:%s", want_n, n, got);
        return;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, expect) {
        const char *key = jstr(e, "region");
        region_t *r = find_region(regs, nregs, key);
        if (!r) { failf(c, "scenario names unknown region %s", key ? key : "(null)"); break; }
        const memwatch_change_event_t *ev = NULL;
        int matches = 0;
        for (size_t i = 0; i < n; i++) if (evs[i].region_id == r->id) { ev = &evs[i]; matches++; }
        if (matches != 1) { failf(c, "region %s (id %u): expected 1 event, got %d", key, r->id, matches); break; }
        const cJSON *v;
        if ((v = cJSON_GetObjectItemCaseSensitive(e, "variable_name")) && cJSON_IsString(v) &&
            strcmp(v->valuestring, ev->variable_name) != 0)
            failf(c, "region %s variable_name: expected \"%s\", got \"%s\"", key, v->valuestring, ev->variable_name);
        if ((v = cJSON_GetObjectItemCaseSensitive(e, "how_big"))) {
            long long hb;
            if (parse_size(v, &hb)) failf(c, "bad how_big spec");
            else if ((size_t)hb != ev->how_big) failf(c, "region %s how_big: expected %lld, got %zu", key, hb, ev->how_big);
        }
        if ((v = cJSON_GetObjectItemCaseSensitive(e, "coalesced")) &&
            (!cJSON_IsNumber(v) || (uint32_t)v->valuedouble != ev->coalesced))
            failf(c, "region %s coalesced: expected %g, got %u", key, cJSON_IsNumber(v) ? v->valuedouble : -1.0, ev->coalesced);
        if ((v = cJSON_GetObjectItemCaseSensitive(e, "changed_ranges"))) {
            size_t wn = (size_t)cJSON_GetArraySize(v);
            char want[1024] = "", got[1024] = "";
            size_t wp = 0, gp = 0;
            int same = wn == ev->changed_range_count;
            size_t i = 0;
            const cJSON *rg;
            cJSON_ArrayForEach(rg, v) {
                long long off, len;
                if (parse_size(cJSON_GetArrayItem(rg, 0), &off) || parse_size(cJSON_GetArrayItem(rg, 1), &len)) {
                    failf(c, "bad changed_ranges spec"); break;
                }
                if (wp + 48 < sizeof want) wp += (size_t)snprintf(want + wp, sizeof want - wp, "[%lld,%lld]", off, len);
                if (i < ev->changed_range_count &&
                    (ev->changed_ranges[i].offset != (size_t)off || ev->changed_ranges[i].length != (size_t)len))
                    same = 0;
                i++;
            }
            for (size_t j = 0; j < ev->changed_range_count && gp + 48 < sizeof got; j++)
                gp += (size_t)snprintf(got + gp, sizeof got - gp, "[%zu,%zu]", ev->changed_ranges[j].offset,
                                       ev->changed_ranges[j].length);
            if (!same) failf(c, "region %s changed_ranges: expected %s, got %s", key, want, got);
        }
        if ((v = cJSON_GetObjectItemCaseSensitive(e, "old_value"))) cmp_bytes(c, "old_value", v, ev->old_value, ev->old_value_len);
        if ((v = cJSON_GetObjectItemCaseSensitive(e, "new_value"))) cmp_bytes(c, "new_value", v, ev->new_value, ev->new_value_len);
        if ((v = cJSON_GetObjectItemCaseSensitive(e, "old_preview"))) cmp_bytes(c, "old_preview", v, ev->old_preview, ev->old_preview_len);
        if ((v = cJSON_GetObjectItemCaseSensitive(e, "new_preview"))) cmp_bytes(c, "new_preview", v, ev->new_preview, ev->new_preview_len);
        if ((v = cJSON_GetObjectItemCaseSensitive(e, "metadata"))) {
            if (cJSON_IsNull(v)) {
                if (ev->metadata) failf(c, "region %s metadata: expected null, got \"%s\"", key, ev->metadata);
            } else if (!ev->metadata || strcmp(ev->metadata, v->valuestring) != 0) {
                failf(c, "region %s metadata: expected \"%s\", got %s%s%s", key, v->valuestring,
                      ev->metadata ? "\"" : "", ev->metadata ? ev->metadata : "NULL", ev->metadata ? "\"" : "");
            }
        }
        if (ev->adapter_id != MEMWATCH_ADAPTER_C) failf(c, "adapter_id: expected %u, got %u", MEMWATCH_ADAPTER_C, ev->adapter_id);
        if (c->failed) break;
    }
}

/* Runs one scenario under one backend. Returns 1 on pass. */
static int run_one(const cJSON *sc, const char *scname, const char *backend, char *why, size_t why_cap) {
    ctx_t c = {.scenario = scname, .backend = backend, .step = -1};
    buffer_t bufs[MAX_BUFFERS] = {0};
    region_t regs[MAX_REGIONS] = {0};
    int nbufs = 0, nregs = 0;
    memwatch_watcher_t *w = NULL;

    memwatch_options_t o;
    memwatch_options_default(&o);
    o.backend = backend;
    const cJSON *opts = cJSON_GetObjectItemCaseSensitive(sc, "options");
    const cJSON *v;
    long long n;
    if ((v = cJSON_GetObjectItemCaseSensitive(opts, "max_value_bytes"))) {
        if (parse_size(v, &n)) failf(&c, "bad max_value_bytes"); else o.max_value_bytes = (uint64_t)n;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(opts, "preview_bytes"))) {
        if (parse_size(v, &n)) failf(&c, "bad preview_bytes"); else o.preview_bytes = (uint64_t)n;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(opts, "writable_window_ms"))) {
        if (parse_size(v, &n)) failf(&c, "bad writable_window_ms"); else o.writable_window_ms = (uint32_t)n;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(opts, "snapshots"))) o.snapshots = cJSON_IsTrue(v) ? 1 : 0;

    const cJSON *b;
    cJSON_ArrayForEach(b, cJSON_GetObjectItemCaseSensitive(sc, "buffers")) {
        if (c.failed) break;
        if (nbufs == MAX_BUFFERS) { failf(&c, "too many buffers"); break; }
        buffer_t *bf = &bufs[nbufs];
        const char *name = jstr(b, "name");
        long long size;
        uint8_t fill = 0;
        if (!name || parse_size(cJSON_GetObjectItemCaseSensitive(b, "size"), &size) || size <= 0) { failf(&c, "bad buffer"); break; }
        if (jstr(b, "fill") && parse_byte(jstr(b, "fill"), &fill)) { failf(&c, "bad buffer fill"); break; }
        snprintf(bf->name, sizeof bf->name, "%s", name);
        bf->size = (size_t)size;
        bf->map_len = (bf->size + g_page - 1) / g_page * g_page;
        void *m = mmap(NULL, bf->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) { failf(&c, "mmap: %s", strerror(errno)); break; }
        bf->mem = m;
        memset(bf->mem, fill, bf->size);
        nbufs++;
    }

    if (!c.failed) {
        int rc = memwatch_watcher_new(&o, &w);
        if (rc != MEMWATCH_OK) failf(&c, "watcher_new(backend=%s) failed: %d %s", backend, rc, memwatch_last_error());
    }

    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(sc, "regions")) {
        if (c.failed) break;
        if (nregs == MAX_REGIONS) { failf(&c, "too many regions"); break; }
        const char *key = jstr(r, "key");
        buffer_t *bf = find_buffer(bufs, nbufs, jstr(r, "buffer"));
        long long off, len;
        if (!key || !bf || parse_size(cJSON_GetObjectItemCaseSensitive(r, "offset"), &off) ||
            parse_size(cJSON_GetObjectItemCaseSensitive(r, "length"), &len) || off < 0 || len < 0 ||
            (size_t)(off + len) > bf->size) {
            failf(&c, "bad region spec"); break;
        }
        snprintf(regs[nregs].key, sizeof regs[nregs].key, "%s", key);
        int rc = memwatch_watcher_watch(w, bf->mem + off, (size_t)len, jstr(r, "name"), jstr(r, "metadata"), &regs[nregs].id);
        if (rc != MEMWATCH_OK) { failf(&c, "watch(region %s) failed: %d %s", key, rc, memwatch_last_error()); break; }
        nregs++;
    }

    const cJSON *st;
    int idx = 0;
    cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(sc, "steps")) {
        if (c.failed) break;
        c.step = idx++;
        const cJSON *a;
        if ((a = cJSON_GetObjectItemCaseSensitive(st, "write"))) {
            buffer_t *bf = find_buffer(bufs, nbufs, jstr(a, "buffer"));
            long long off;
            if (!bf || parse_size(cJSON_GetObjectItemCaseSensitive(a, "offset"), &off) || off < 0) { failf(&c, "bad write"); break; }
            if (jstr(a, "hex")) {
                uint8_t *hb; size_t hn;
                if (parse_hex(jstr(a, "hex"), &hb, &hn) || (size_t)off + hn > bf->size) { failf(&c, "bad write hex"); break; }
                for (size_t i = 0; i < hn; i++) ((volatile uint8_t *)bf->mem)[off + (long long)i] = hb[i];
                free(hb);
            } else {
                long long len;
                uint8_t byte;
                if (parse_size(cJSON_GetObjectItemCaseSensitive(a, "len"), &len) || parse_byte(jstr(a, "byte"), &byte) ||
                    len < 0 || (size_t)(off + len) > bf->size) { failf(&c, "bad write fill"); break; }
                memset(bf->mem + off, byte, (size_t)len);
            }
        } else if ((a = cJSON_GetObjectItemCaseSensitive(st, "check"))) {
            do_check(&c, w, a, regs, nregs);
        } else if ((a = cJSON_GetObjectItemCaseSensitive(st, "watch_error"))) {
            const uint8_t *addr = NULL;
            long long off = 0, len;
            if (parse_size(cJSON_GetObjectItemCaseSensitive(a, "length"), &len) || len < 0) { failf(&c, "bad watch_error"); break; }
            if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "null"))) {
                buffer_t *bf = find_buffer(bufs, nbufs, jstr(a, "buffer"));
                if (!bf || parse_size(cJSON_GetObjectItemCaseSensitive(a, "offset"), &off) || off < 0) { failf(&c, "bad watch_error"); break; }
                addr = bf->mem + off;
            }
            uint32_t id = 0;
            int rc = memwatch_watcher_watch(w, addr, (size_t)len, "bad", NULL, &id);
            expect_kind(&c, "watch", rc, jstr(a, "expect"));
        } else if ((a = cJSON_GetObjectItemCaseSensitive(st, "check_error"))) {
            memwatch_change_event_t *evs = NULL;
            size_t n = 0;
            int rc = memwatch_watcher_check_changes(w, &evs, &n);
            if (rc == MEMWATCH_OK) memwatch_events_free(evs, n);
            expect_kind(&c, "check_changes", rc, jstr(a, "expect"));
        } else if (cJSON_GetObjectItemCaseSensitive(st, "close")) {
            int rc = memwatch_watcher_close(w);
            if (rc != MEMWATCH_OK) failf(&c, "close failed: %d %s", rc, memwatch_last_error());
        } else if ((a = cJSON_GetObjectItemCaseSensitive(st, "stats"))) {
            do_stats(&c, w, a);
        } else if ((a = cJSON_GetObjectItemCaseSensitive(st, "set_callback"))) {
            int rc = memwatch_watcher_set_callback(w, cJSON_IsTrue(a) ? collect_event : NULL, NULL);
            if (rc != MEMWATCH_OK) failf(&c, "set_callback failed: %d %s", rc, memwatch_last_error());
        } else if ((a = cJSON_GetObjectItemCaseSensitive(st, "check_callback"))) {
            do_check_callback(&c, w, a, regs, nregs);
        } else if ((a = cJSON_GetObjectItemCaseSensitive(st, "unwatch"))) {
            region_t *rg = find_region(regs, nregs, jstr(a, "region"));
            const cJSON *ex = cJSON_GetObjectItemCaseSensitive(a, "expect");
            if (!rg || !cJSON_IsBool(ex)) { failf(&c, "bad unwatch step"); break; }
            int rc = memwatch_watcher_unwatch(w, rg->id);
            int want = cJSON_IsTrue(ex) ? 1 : 0;
            if (rc != want) failf(&c, "unwatch(%s): expected %d, got %d (%s)", rg->key, want, rc, rc < 0 ? memwatch_last_error() : "");
        } else if ((a = cJSON_GetObjectItemCaseSensitive(st, "constants"))) {
            const cJSON *ms = cJSON_GetObjectItemCaseSensitive(a, "exit_flush_timeout_ms");
            if (!cJSON_IsNumber(ms)) { failf(&c, "bad constants step"); break; }
            uint32_t got = memwatch_exit_flush_timeout_ms();
            if ((double)got != ms->valuedouble)
                failf(&c, "memwatch_exit_flush_timeout_ms() = %u, expected %g", got, ms->valuedouble);
        } else if ((a = cJSON_GetObjectItemCaseSensitive(st, "unwatch_unknown"))) {
            const cJSON *ex = cJSON_GetObjectItemCaseSensitive(a, "expect");
            int want = cJSON_IsTrue(ex) ? 1 : 0;
            int rc = memwatch_watcher_unwatch(w, UNKNOWN_REGION_ID);
            if (rc != want) failf(&c, "unwatch(unknown id): expected %d, got %d", want, rc);
        } else {
            char *txt = cJSON_PrintUnformatted(st);
            failf(&c, "unknown step kind: %s", txt);
            free(txt);
        }
    }

    memwatch_watcher_free(w);
    pthread_mutex_lock(&g_cb_mu);
    clear_collected();
    pthread_mutex_unlock(&g_cb_mu);
    for (int i = 0; i < nbufs; i++) munmap(bufs[i].mem, bufs[i].map_len);
    if (c.failed) {
        if (c.step >= 0) snprintf(why, why_cap, "step %d: %s", c.step, c.msg);
        else snprintf(why, why_cap, "setup: %s", c.msg);
    }
    return !c.failed;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n) { free(s); fclose(f); return NULL; }
    s[n] = 0;
    fclose(f);
    return s;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int g_pass, g_fail;

static void run_file(const char *path) {
    char *txt = read_file(path);
    cJSON *sc = txt ? cJSON_Parse(txt) : NULL;
    free(txt);
    if (!sc) { printf("FAIL %s: cannot read or parse\n", path); g_fail++; return; }
    const char *name = jstr(sc, "name");
    if (!name) name = path;
    const cJSON *backends = cJSON_GetObjectItemCaseSensitive(sc, "backends");
    if (cJSON_GetArraySize(backends) == 0) { printf("FAIL %s: lists no backends\n", name); g_fail++; }
    const cJSON *be;
    cJSON_ArrayForEach(be, backends) {
        char why[4600] = "";
        if (!cJSON_IsString(be)) { printf("FAIL %s: bad backend entry\n", name); g_fail++; continue; }
        if (run_one(sc, name, be->valuestring, why, sizeof why)) {
            printf("ok   %s [%s]\n", name, be->valuestring);
            g_pass++;
        } else {
            printf("FAIL %s [%s] %s\n", name, be->valuestring, why);
            g_fail++;
        }
        fflush(stdout);
    }
    cJSON_Delete(sc);
}

int main(int argc, char **argv) {
    g_page = (size_t)sysconf(_SC_PAGESIZE);
    if (argc < 2) { fprintf(stderr, "usage: %s DIR_OR_FILE...\n", argv[0]); return 2; }
    for (int a = 1; a < argc; a++) {
        struct stat s;
        if (stat(argv[a], &s) != 0) { printf("FAIL %s: %s\n", argv[a], strerror(errno)); g_fail++; continue; }
        if (!S_ISDIR(s.st_mode)) { run_file(argv[a]); continue; }
        DIR *d = opendir(argv[a]);
        struct dirent *de;
        char *names[1024];
        int nn = 0;
        while (d && (de = readdir(d)) && nn < 1024) {
            size_t l = strlen(de->d_name);
            if (l > 5 && strcmp(de->d_name + l - 5, ".json") == 0) {
                char *p = malloc(strlen(argv[a]) + l + 2);
                sprintf(p, "%s/%s", argv[a], de->d_name);
                names[nn++] = p;
            }
        }
        if (d) closedir(d);
        qsort(names, (size_t)nn, sizeof names[0], cmp_str);
        for (int i = 0; i < nn; i++) { run_file(names[i]); free(names[i]); }
    }
    printf("behavior scenarios (C): %d passed, %d failed, %d total\n", g_pass, g_fail, g_pass + g_fail);
    return (g_fail == 0 && g_pass > 0) ? 0 : 1;
}
