/*
 * test_capi: C tests of libmemwatch through the C ABI (each test in its own process).
 *
 * Each test runs in its own process (ctest runs `test_capi NAME`), because
 * the engine is process-wide: the fault ring is sized when it starts and the
 * SIGSEGV handler is installed once.
 *
 * usage: test_capi NAME        run one test
 *        test_capi --list      print the test names
 *        test_capi --check-registered NAME...
 *                              fail if a test exists that is not in the list
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "memwatch.h"
#include "memwatch_store.h"

#include "check.h"

static size_t page(void) { return (size_t)sysconf(_SC_PAGESIZE); }

static uint8_t *map_pages(size_t n, int prot) {
    void *p = mmap(NULL, n * page(), prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(2); }
    return p;
}

static uint32_t my_tid(void) { return (uint32_t)syscall(SYS_gettid); }

static memwatch_watcher_t *new_watcher(const char *backend) {
    memwatch_options_t o;
    memwatch_options_default(&o);
    o.backend = backend;
    memwatch_watcher_t *w = NULL;
    int rc = memwatch_watcher_new(&o, &w);
    if (rc != MEMWATCH_OK) {
        fprintf(stderr, "watcher_new(%s): %d %s\n", backend, rc, memwatch_last_error());
        exit(2);
    }
    return w;
}

static void store(volatile uint8_t *p, uint8_t v) { *p = v; }

static int all_bytes(const uint8_t *p, size_t n, uint8_t v) {
    for (size_t i = 0; i < n; i++) if (p[i] != v) return 0;
    return p != NULL;
}

/* Events for one region may come as a chain when writes span several
   writable windows: each event's old value is the previous one's new value,
   seq increases, the first starts at `initial` and the last ends at `final`.
   Returns the number of events of the region, or -1 (and reports) when the
   chain is broken. `changed` (len bytes, may be NULL) gets 1 for every byte
   inside any changed range. */
static int check_chain(const memwatch_change_event_t *ev, size_t n, uint32_t region, const uint8_t *initial,
                       const uint8_t *final, size_t len, uint8_t *changed) {
    const memwatch_change_event_t *prev = NULL;
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        const memwatch_change_event_t *e = &ev[i];
        if (e->region_id != region) continue;
        count++;
        if (e->old_value_len != len || e->new_value_len != len) {
            fprintf(stderr, "region %u: value lengths %zu/%zu, expected %zu\n", region, e->old_value_len, e->new_value_len, len);
            g_failures++;
            return -1;
        }
        const uint8_t *want_old = prev ? prev->new_value : initial;
        if (memcmp(e->old_value, want_old, len) != 0) {
            fprintf(stderr, "region %u: event %d's old value is not the previous new value\n", region, count);
            g_failures++;
            return -1;
        }
        if (prev && e->seq <= prev->seq) {
            fprintf(stderr, "region %u: seq not increasing\n", region);
            g_failures++;
            return -1;
        }
        for (size_t r = 0; changed && r < e->changed_range_count; r++)
            memset(changed + e->changed_ranges[r].offset, 1, e->changed_ranges[r].length);
        prev = e;
    }
    if (prev && memcmp(prev->new_value, final, len) != 0) {
        fprintf(stderr, "region %u: last new value is not the final bytes\n", region);
        g_failures++;
        return -1;
    }
    return count;
}

/* ---- one byte changed ------------------------------------------------------ */

static void one_byte(const char *backend) {
    memwatch_watcher_t *w = new_watcher(backend);
    uint8_t *buf = map_pages(1, PROT_READ | PROT_WRITE);
    uint32_t id = 0;
    REQUIRE(memwatch_watcher_watch(w, buf, 64, "counter", "unit=bytes", &id) == MEMWATCH_OK);
    CHECK(id >= 1);
    store(buf + 3, 42);
    memwatch_change_event_t *ev = NULL;
    size_t n = 99;
    REQUIRE(memwatch_watcher_check_changes(w, &ev, &n) == MEMWATCH_OK);
    REQUIRE(n == 1);
    CHECK_EQ(ev[0].region_id, id);
    CHECK(strcmp(ev[0].variable_name, "counter") == 0);
    CHECK(ev[0].metadata && strcmp(ev[0].metadata, "unit=bytes") == 0);
    CHECK_EQ(ev[0].adapter_id, MEMWATCH_ADAPTER_C);
    CHECK_EQ(ev[0].how_big, 64);
    REQUIRE(ev[0].changed_range_count == 1);
    CHECK_EQ(ev[0].changed_ranges[0].offset, 3);
    CHECK_EQ(ev[0].changed_ranges[0].length, 1);
    REQUIRE(ev[0].old_value_len == 64 && ev[0].new_value_len == 64);
    CHECK(all_bytes(ev[0].old_value, 64, 0));
    CHECK_EQ(ev[0].new_value[3], 42);
    CHECK(all_bytes(ev[0].new_value, 3, 0) && all_bytes(ev[0].new_value + 4, 60, 0));
    CHECK_EQ(ev[0].old_preview_len, 64);
    CHECK_EQ(ev[0].new_preview_len, 64);
    CHECK(ev[0].storage_key_old == NULL && ev[0].storage_key_new == NULL);
    CHECK(ev[0].file != NULL && ev[0].function != NULL);
    CHECK(ev[0].seq >= 1);
    CHECK(ev[0].timestamp_ns > 0);
    if (strcmp(backend, "protect") == 0) {
        CHECK_EQ(ev[0].thread_id, my_tid());
        CHECK(ev[0].fault_ip != 0);
    } else {
        CHECK_EQ(ev[0].thread_id, 0);
        CHECK_EQ(ev[0].fault_ip, 0);
    }
    memwatch_events_free(ev, n);
    /* Nothing new: an empty result with a NULL array. */
    REQUIRE(memwatch_watcher_check_changes(w, &ev, &n) == MEMWATCH_OK);
    CHECK_EQ(n, 0);
    CHECK(ev == NULL);
    memwatch_events_free(ev, n);
    memwatch_watcher_free(w);
    munmap(buf, page());
}
static void t_one_byte_changed_protect(void) { one_byte("protect"); }
static void t_one_byte_changed_poll(void) { one_byte("poll"); }
static void t_one_byte_changed_writewatch(void) { one_byte("writewatch"); }

/* ---- the global API (one default watcher) --------------------------------------------------- */

/* memwatch_shutdown() delivers what is pending to the callback first. */
static int g_shutdown_seen;
static uint8_t g_shutdown_value;
static void shutdown_cb(const memwatch_change_event_t *e, void *ctx) {
    (void)ctx;
    g_shutdown_seen++;
    g_shutdown_value = e->new_value ? e->new_value[3] : 0;
}

static void t_shutdown_delivers_pending(void) {
    uint8_t *buf = map_pages(1, PROT_READ | PROT_WRITE);
    memwatch_options_t o;
    memwatch_options_default(&o);
    o.backend = "poll";
    o.poll_interval_ms = 60000; /* only shutdown's flush can see the write */
    REQUIRE(memwatch_init_with_options(&o) == MEMWATCH_OK);
    REQUIRE(memwatch_set_callback(shutdown_cb, NULL) == MEMWATCH_OK);
    REQUIRE(memwatch_watch((uint64_t)(uintptr_t)buf, 8, "pending", NULL) >= 1);
    store(buf + 3, 99);
    memwatch_shutdown();
    CHECK_EQ(g_shutdown_seen, 1);
    CHECK_EQ(g_shutdown_value, 99);
    munmap(buf, page());
}

/* A check_changes() waiting for a slow callback can be given up and resumed;
 * the event is delivered all the same. memwatch_watcher_flush waits bounded. */
static atomic_int g_slow_release, g_slow_seen;
static uint8_t g_slow_value;
static void slow_cb(const memwatch_change_event_t *e, void *ctx) {
    (void)ctx;
    while (!atomic_load(&g_slow_release)) usleep(1000);
    g_slow_value = e->new_value ? e->new_value[2] : 0;
    atomic_fetch_add(&g_slow_seen, 1);
}

static void t_check_changes_start_wait_and_flush(void) {
    uint8_t *buf = map_pages(1, PROT_READ | PROT_WRITE);
    memwatch_options_t o;
    memwatch_options_default(&o);
    o.backend = "poll";
    o.poll_interval_ms = 60000; /* only the calls below detect the writes */
    memwatch_watcher_t *w = NULL;
    REQUIRE(memwatch_watcher_new(&o, &w) == MEMWATCH_OK);
    uint32_t id = 0;
    REQUIRE(memwatch_watcher_watch(w, buf, 8, "slow", NULL, &id) == MEMWATCH_OK);
    memwatch_change_event_t *ev = (memwatch_change_event_t *)1;
    size_t n = 7;
    memwatch_pending_t *p = (memwatch_pending_t *)1;
    /* No callback: the events at once, no pending handle. */
    store(buf + 1, 5);
    REQUIRE(memwatch_watcher_check_changes_start(w, &ev, &n, &p) == MEMWATCH_OK);
    CHECK(p == NULL);
    CHECK_EQ(n, 1);
    CHECK_EQ(ev[0].coalesced, 1);
    memwatch_events_free(ev, n);
    CHECK_EQ(memwatch_watcher_check_changes_start(w, &ev, &n, NULL), MEMWATCH_ERR_INVALID_ARGUMENT);
    /* A slow callback: the wait times out (0) until it returns, then 1. */
    atomic_store(&g_slow_release, 0);
    REQUIRE(memwatch_watcher_set_callback(w, slow_cb, NULL) == MEMWATCH_OK);
    store(buf + 2, 42);
    REQUIRE(memwatch_watcher_check_changes_start(w, &ev, &n, &p) == MEMWATCH_OK);
    REQUIRE(p != NULL);
    CHECK_EQ(n, 0);
    CHECK_EQ(memwatch_pending_wait(p, 50, &ev, &n), 0);
    CHECK_EQ(atomic_load(&g_slow_seen), 0);
    CHECK_EQ(memwatch_watcher_flush(w, 50), 0); /* bounded: the callback still runs */
    atomic_store(&g_slow_release, 1);
    CHECK_EQ(memwatch_pending_wait(p, 10000, &ev, &n), 1);
    CHECK_EQ(n, 0);
    CHECK_EQ(atomic_load(&g_slow_seen), 1);
    CHECK_EQ(g_slow_value, 42);
    memwatch_pending_free(p);
    memwatch_pending_free(NULL);
    CHECK_EQ(memwatch_pending_wait(NULL, 1, &ev, &n), MEMWATCH_ERR_INVALID_ARGUMENT);
    /* flush: a write, then flush delivers it before returning 1. */
    store(buf + 2, 43);
    CHECK_EQ(memwatch_watcher_flush(w, 10000), 1);
    CHECK_EQ(atomic_load(&g_slow_seen), 2);
    CHECK_EQ(g_slow_value, 43);
    CHECK_EQ(memwatch_watcher_flush(NULL, 1), MEMWATCH_ERR_INVALID_ARGUMENT);
    memwatch_watcher_free(w);
    munmap(buf, page());
}

static void t_global_api(void) {
    uint8_t *buf = map_pages(1, PROT_READ | PROT_WRITE);
    /* Works without memwatch_init (lazily created), and init is idempotent. */
    uint32_t id = memwatch_watch((uint64_t)(uintptr_t)buf, 100, "buffer", NULL);
    REQUIRE(id >= 1);
    CHECK_EQ(memwatch_init(), MEMWATCH_OK);
    CHECK_EQ(memwatch_init(), MEMWATCH_OK);
    CHECK_EQ(memwatch_init_with_options(NULL), MEMWATCH_ERR_INVALID_ARGUMENT);
    store(buf + 0, 42);
    memwatch_change_event_t *ev = NULL;
    size_t n = 0;
    REQUIRE(memwatch_check_changes(&ev, &n) == MEMWATCH_OK);
    REQUIRE(n == 1);
    CHECK_EQ(ev[0].region_id, id);
    CHECK(ev[0].metadata == NULL);
    CHECK_EQ(ev[0].new_value[0], 42);
    CHECK_EQ(ev[0].old_value[0], 0);
    memwatch_events_free(ev, n);
    memwatch_stats_t st;
    REQUIRE(memwatch_get_stats(&st) == MEMWATCH_OK);
    CHECK_EQ(st.regions, 1);
    CHECK_EQ(st.events, 1);
    CHECK(strcmp(st.backend, "none") != 0);
    CHECK_EQ(memwatch_unwatch(id), 1);
    CHECK_EQ(memwatch_unwatch(id), 0);
    /* Errors: 0 and a message. */
    CHECK_EQ(memwatch_watch(0, 10, "null", NULL), 0);
    CHECK_EQ(memwatch_last_error_code(), MEMWATCH_ERR_INVALID_ARGUMENT);
    CHECK(strlen(memwatch_last_error()) > 0);
    memwatch_shutdown();
    memwatch_shutdown(); /* idempotent */
    CHECK_EQ(memwatch_unwatch(id), 0);
    /* A fresh default watcher with chosen options. */
    memwatch_options_t o;
    memwatch_options_default(&o);
    o.backend = "poll";
    REQUIRE(memwatch_init_with_options(&o) == MEMWATCH_OK);
    uint32_t id2 = memwatch_watch((uint64_t)(uintptr_t)buf, 8, "again", "m");
    REQUIRE(id2 > id);
    store(buf + 1, 7);
    REQUIRE(memwatch_check_changes(&ev, &n) == MEMWATCH_OK);
    REQUIRE(n == 1);
    CHECK_EQ(ev[0].region_id, id2);
    CHECK_EQ(ev[0].changed_ranges[0].offset, 1);
    CHECK_EQ(ev[0].thread_id, 0); /* poll knows no writer */
    memwatch_events_free(ev, n);
    REQUIRE(memwatch_get_stats(&st) == MEMWATCH_OK);
    CHECK(strcmp(st.backend, "poll") == 0);
    memwatch_shutdown();
    munmap(buf, page());
}

/* ---- unwatch ------------------------------------------------------------------- */

static void t_unwatch_unknown_and_free_after(void) {
    memwatch_watcher_t *w = new_watcher("protect");
    uint8_t *buf = map_pages(2, PROT_READ | PROT_WRITE);
    uint32_t a = 0, b = 0;
    REQUIRE(memwatch_watcher_watch(w, buf, 16, "a", NULL, &a) == MEMWATCH_OK);
    REQUIRE(memwatch_watcher_watch(w, buf + page(), 16, "b", NULL, &b) == MEMWATCH_OK);
    CHECK(b > a);
    CHECK_EQ(memwatch_watcher_unwatch(w, 4000000000u), 0);
    CHECK_EQ(memwatch_watcher_unwatch(w, 0), 0);
    CHECK_EQ(memwatch_watcher_unwatch(w, a), 1);
    CHECK_EQ(memwatch_watcher_unwatch(w, a), 0);
    /* The unwatched page is writable again and can be freed. */
    store(buf, 1);
    CHECK_EQ(memwatch_watcher_unwatch(w, b), 1);
    CHECK(munmap(buf, 2 * page()) == 0);
    memwatch_change_event_t *ev = NULL;
    size_t n = 5;
    REQUIRE(memwatch_watcher_check_changes(w, &ev, &n) == MEMWATCH_OK);
    CHECK_EQ(n, 0);
    memwatch_events_free(ev, n);
    /* New memory (maybe at the same address) is not watched. */
    uint8_t *again = map_pages(2, PROT_READ | PROT_WRITE);
    store(again, 3);
    store(again + page(), 3);
    REQUIRE(memwatch_watcher_check_changes(w, &ev, &n) == MEMWATCH_OK);
    CHECK_EQ(n, 0);
    memwatch_events_free(ev, n);
    memwatch_stats_t st;
    REQUIRE(memwatch_watcher_get_stats(w, &st) == MEMWATCH_OK);
    CHECK_EQ(st.regions, 0);
    memwatch_watcher_free(w);
    munmap(again, 2 * page());
}

/* ---- bad input gets clear errors ------------------------------------------- */

static void expect_err(int rc, int code, const char *what) {
    if (rc != code) {
        fprintf(stderr, "%s: expected %d, got %d (%s)\n", what, code, rc, memwatch_last_error());
        g_failures++;
        return;
    }
    CHECK_EQ(memwatch_last_error_code(), code);
    if (strlen(memwatch_last_error()) == 0) {
        fprintf(stderr, "%s: empty error message\n", what);
        g_failures++;
    }
}

static void errors(const char *backend) {
    memwatch_watcher_t *w = new_watcher(backend);
    uint8_t *buf = map_pages(1, PROT_READ | PROT_WRITE);
    uint32_t id = 77;
    expect_err(memwatch_watcher_watch(w, buf, 0, "zero", NULL, &id), MEMWATCH_ERR_INVALID_ARGUMENT, "zero length");
    CHECK_EQ(id, 77); /* untouched on failure */
    expect_err(memwatch_watcher_watch(w, NULL, 16, "null", NULL, &id), MEMWATCH_ERR_INVALID_ARGUMENT, "null address");
    uint8_t *gone = map_pages(1, PROT_READ | PROT_WRITE);
    munmap(gone, page());
    expect_err(memwatch_watcher_watch(w, gone, 16, "unmapped", NULL, &id), MEMWATCH_ERR_UNMAPPED, "unmapped");
    /* Partly mapped: the second page is gone. */
    uint8_t *half = map_pages(2, PROT_READ | PROT_WRITE);
    munmap(half + page(), page());
    expect_err(memwatch_watcher_watch(w, half + page() - 8, 16, "half", NULL, &id), MEMWATCH_ERR_UNMAPPED, "partly unmapped");
    uint8_t *ro = map_pages(1, PROT_READ);
    expect_err(memwatch_watcher_watch(w, ro, 16, "ro", NULL, &id), MEMWATCH_ERR_READ_ONLY, "read-only");
    static const char rodata[64] = "constant";
    expect_err(memwatch_watcher_watch(w, rodata, sizeof rodata, "rodata", NULL, &id), MEMWATCH_ERR_READ_ONLY, "rodata");
    REQUIRE(memwatch_watcher_watch(w, buf + 16, 16, "ok", NULL, &id) == MEMWATCH_OK);
    uint32_t id2 = 0;
    expect_err(memwatch_watcher_watch(w, buf + 20, 4, "inside", NULL, &id2), MEMWATCH_ERR_OVERLAP, "overlap inside");
    expect_err(memwatch_watcher_watch(w, buf + 8, 9, "tail", NULL, &id2), MEMWATCH_ERR_OVERLAP, "overlap at start");
    expect_err(memwatch_watcher_watch(w, buf + 16, 16, "same", NULL, &id2), MEMWATCH_ERR_OVERLAP, "same range");
    /* Touching but not overlapping is fine. */
    CHECK_EQ(memwatch_watcher_watch(w, buf + 32, 16, "next", NULL, &id2), MEMWATCH_OK);
    /* NULL out pointers and handles. */
    size_t n;
    memwatch_change_event_t *ev;
    expect_err(memwatch_watcher_check_changes(w, NULL, &n), MEMWATCH_ERR_INVALID_ARGUMENT, "check NULL out_events");
    expect_err(memwatch_watcher_check_changes(w, &ev, NULL), MEMWATCH_ERR_INVALID_ARGUMENT, "check NULL out_count");
    expect_err(memwatch_watcher_get_stats(w, NULL), MEMWATCH_ERR_INVALID_ARGUMENT, "stats NULL");
    expect_err(memwatch_watcher_watch(NULL, buf, 1, "x", NULL, &id2), MEMWATCH_ERR_INVALID_ARGUMENT, "NULL watcher");
    expect_err(memwatch_watcher_unwatch(NULL, 1), MEMWATCH_ERR_INVALID_ARGUMENT, "unwatch NULL watcher");
    expect_err(memwatch_watcher_new(NULL, NULL), MEMWATCH_ERR_INVALID_ARGUMENT, "new NULL out");
    /* An invalid UTF-8 name. */
    expect_err(memwatch_watcher_watch(w, buf + 100, 4, "\xff\xfe", NULL, &id2), MEMWATCH_ERR_INVALID_ARGUMENT, "bad utf-8 name");
    /* The valid regions still work after all that. */
    store(buf + 17, 9);
    REQUIRE(memwatch_watcher_check_changes(w, &ev, &n) == MEMWATCH_OK);
    CHECK_EQ(n, 1);
    if (n == 1) CHECK_EQ(ev[0].region_id, id);
    memwatch_events_free(ev, n);
    /* Closed watcher. */
    CHECK_EQ(memwatch_watcher_close(w), MEMWATCH_OK);
    CHECK_EQ(memwatch_watcher_close(w), MEMWATCH_OK);
    expect_err(memwatch_watcher_watch(w, buf + 200, 4, "late", NULL, &id2), MEMWATCH_ERR_CLOSED, "watch after close");
    expect_err(memwatch_watcher_check_changes(w, &ev, &n), MEMWATCH_ERR_CLOSED, "check after close");
    expect_err(memwatch_watcher_unwatch(w, id), MEMWATCH_ERR_CLOSED, "unwatch after close");
    /* After close the pages are writable again (nothing protected). */
    store(buf + 18, 1);
    memwatch_watcher_free(w);
    munmap(buf, page());
    munmap(ro, page());
    munmap(half, page());
}
static void t_errors_protect(void) { errors("protect"); }
static void t_errors_poll(void) { errors("poll"); }
static void t_errors_writewatch(void) { errors("writewatch"); }

static void t_bad_options(void) {
    memwatch_options_t o;
    memwatch_watcher_t *w = (memwatch_watcher_t *)0x1;
    memwatch_options_default(&o);
    o.backend = "magic";
    expect_err(memwatch_watcher_new(&o, &w), MEMWATCH_ERR_INVALID_ARGUMENT, "unknown backend");
    CHECK(w == NULL);
    CHECK(strstr(memwatch_last_error(), "magic") != NULL);
    memwatch_options_default(&o);
    o.snapshots = 7;
    expect_err(memwatch_watcher_new(&o, &w), MEMWATCH_ERR_INVALID_ARGUMENT, "snapshots=7");
    memwatch_options_default(&o);
    o.poll_interval_ms = 0;
    expect_err(memwatch_watcher_new(&o, &w), MEMWATCH_ERR_INVALID_ARGUMENT, "poll interval 0");
    /* writewatch: available, or a clear Unsupported with a reason. */
    memwatch_options_default(&o);
    o.backend = "writewatch";
    int rc = memwatch_watcher_new(&o, &w);
    if (rc == MEMWATCH_OK) {
        memwatch_watcher_free(w);
    } else {
        expect_err(rc, MEMWATCH_ERR_UNSUPPORTED, "writewatch");
    }
    /* Defaults as documented. */
    memwatch_options_default(&o);
    CHECK(strcmp(o.backend, "auto") == 0);
    CHECK_EQ(o.writable_window_ms, 5);
    CHECK_EQ(o.poll_interval_ms, 100);
    CHECK_EQ(o.max_value_bytes, 4096);
    CHECK_EQ(o.preview_bytes, 256);
    CHECK_EQ(o.ring_capacity, 32768);
    CHECK_EQ(o.snapshots, 1);
    CHECK_EQ(o.adapter_id, MEMWATCH_ADAPTER_C);
    CHECK_EQ(memwatch_page_size(), page());
    CHECK_EQ(memwatch_exit_flush_timeout_ms(), 2000);
    CHECK(strlen(memwatch_version()) > 0);
    memwatch_watcher_free(NULL); /* ignored */
    memwatch_events_free(NULL, 0);
}

/* ---- ABI layout: the header and the library agree ------------------------- */

static void t_abi_layout(void) {
#if defined(__x86_64__) || defined(__aarch64__)
    /* The Rust side asserts the same numbers in its unit tests. */
    CHECK_EQ(sizeof(memwatch_options_t), 56);
    CHECK_EQ(sizeof(memwatch_where_t), 40);
    CHECK_EQ(sizeof(memwatch_frame_t), 48);
    CHECK_EQ(sizeof(memwatch_resolved_frame_t), 1028);
    CHECK_EQ(offsetof(memwatch_change_event_t, location), 184);
    CHECK_EQ(sizeof(memwatch_range_t), 16);
    CHECK_EQ(sizeof(memwatch_change_event_t), 200);
    CHECK_EQ(offsetof(memwatch_change_event_t, coalesced), 192);
    CHECK_EQ(offsetof(memwatch_change_event_t, fault_ip), 40);
    CHECK_EQ(offsetof(memwatch_change_event_t, how_big), 72);
    CHECK_EQ(offsetof(memwatch_change_event_t, metadata), 176);
    CHECK_EQ(sizeof(memwatch_stats_t), 400);
    CHECK_EQ(offsetof(memwatch_stats_t, shared_regions), 368);
    CHECK_EQ(offsetof(memwatch_stats_t, coalesced_events), 384);
    CHECK_EQ(offsetof(memwatch_stats_t, hot_pages), 392);
    CHECK_EQ(offsetof(memwatch_stats_t, regions), 264);
    CHECK_EQ(sizeof(memwatch_store_stats_t), 96);
    CHECK_EQ(sizeof(memwatch_store_key_stats_t), 40);
    CHECK_EQ(offsetof(memwatch_store_key_stats_t, access_count), 32);
#endif
    /* Field by field through the library: defaults land where the header says. */
    memwatch_options_t o;
    memset(&o, 0xAB, sizeof o);
    memwatch_options_default(&o);
    CHECK_EQ(o.ring_capacity, 32768);
    CHECK_EQ(o.adapter_id, MEMWATCH_ADAPTER_C);
    CHECK_EQ(o.locate_writers, 0);
    CHECK_EQ(o.stack_depth, 8);
}

/* ---- SIGSEGV handlers installed before memwatch keep working ----------------- */

static sigjmp_buf g_jmp;
static volatile sig_atomic_t g_own_faults;
static void *volatile g_last_addr;

static void own_siginfo_handler(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)uc;
    g_own_faults++;
    g_last_addr = si->si_addr;
    siglongjmp(g_jmp, 1);
}

static void own_plain_handler(int sig) {
    (void)sig;
    g_own_faults++;
    siglongjmp(g_jmp, 1);
}

static void prior_handler(int siginfo_style) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    if (siginfo_style) {
        sa.sa_sigaction = own_siginfo_handler;
        sa.sa_flags = SA_SIGINFO;
    } else {
        sa.sa_handler = own_plain_handler;
    }
    REQUIRE(sigaction(SIGSEGV, &sa, NULL) == 0);

    /* memwatch starts after the program's own handler. */
    memwatch_options_t o;
    memwatch_options_default(&o);
    o.backend = "protect";
    o.max_value_bytes = 2 * page();
    memwatch_watcher_t *w = NULL;
    REQUIRE(memwatch_watcher_new(&o, &w) == MEMWATCH_OK);
    uint8_t *buf = map_pages(2, PROT_READ | PROT_WRITE);
    uint8_t *guard = map_pages(1, PROT_NONE);
    uint32_t id = 0;
    REQUIRE(memwatch_watcher_watch(w, buf, 2 * page(), "watched", NULL, &id) == MEMWATCH_OK);

    const int rounds = 2000;
    for (int i = 0; i < rounds; i++) {
        if (sigsetjmp(g_jmp, 1) == 0) {
            store(guard + (size_t)(i % 64), 1); /* faults: PROT_NONE */
            fprintf(stderr, "write to PROT_NONE page did not fault\n");
            g_failures++;
            break;
        }
        /* A watched write between the program's own faults. */
        if (i == 500) store(buf + 5, 0x55);
        if (i == 1500) store(buf + page() + 7, 0x77);
    }
    CHECK_EQ(g_own_faults, rounds);
    if (siginfo_style) CHECK(g_last_addr == guard + ((rounds - 1) % 64));

    memwatch_change_event_t *ev = NULL;
    size_t n = 0;
    REQUIRE(memwatch_watcher_check_changes(w, &ev, &n) == MEMWATCH_OK);
    /* The two writes may fall into one writable window or two: one event
       with both ranges, or a chain of two. */
    CHECK(n == 1 || n == 2);
    size_t len = 2 * page();
    uint8_t *zeros = calloc(1, len), *changed = calloc(1, len);
    CHECK_EQ(check_chain(ev, n, id, zeros, buf, len, changed), (int)n);
    for (size_t i = 0; i < len; i++) {
        int want = (i == 5 || i == page() + 7);
        if (changed[i] != want) { fprintf(stderr, "byte %zu: changed=%d, expected %d\n", i, changed[i], want); g_failures++; break; }
    }
    CHECK_EQ(buf[5], 0x55);
    CHECK_EQ(buf[page() + 7], 0x77);
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ(ev[i].region_id, id);
        CHECK_EQ(ev[i].thread_id, my_tid());
    }
    free(zeros);
    free(changed);
    memwatch_events_free(ev, n);

    /* And once more after memwatch is gone. */
    memwatch_watcher_free(w);
    int before = g_own_faults;
    if (sigsetjmp(g_jmp, 1) == 0) store(guard, 2);
    CHECK_EQ(g_own_faults, before + 1);
    munmap(buf, 2 * page());
    munmap(guard, page());
}
static void t_prior_sigsegv_handler_siginfo(void) { prior_handler(1); }
static void t_prior_sigsegv_handler_plain(void) { prior_handler(0); }

/* A prior SA_SIGINFO handler that leaves by siglongjmp (never returning to
   memwatch) gets every fault that is not memwatch's: 100 000 raised, 100 000
   real ones. Then, in a child with no handler before memwatch, a real crash
   still kills within 1 s. */
static volatile sig_atomic_t g_user_sent;

static void jumping_handler(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)uc;
    g_own_faults++;
    if (si->si_code <= 0) g_user_sent++;
    siglongjmp(g_jmp, 1);
}

static void wait_child_deadline(pid_t pid, int *status, double limit_s, int *timed_out);

static void t_prior_handler_siglongjmp_100k(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_sigaction = jumping_handler;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    REQUIRE(sigaction(SIGSEGV, &sa, NULL) == 0);
    memwatch_watcher_t *w = new_watcher("protect");
    uint8_t *buf = map_pages(1, PROT_READ | PROT_WRITE);
    uint8_t *guard = map_pages(1, PROT_NONE);
    uint32_t id = 0;
    REQUIRE(memwatch_watcher_watch(w, buf, 8, "watched", NULL, &id) == MEMWATCH_OK);
    const int n = 100000;
    volatile int missed = 0; /* volatile: live across siglongjmp */
    for (volatile int i = 0; i < n; i++) {
        if (sigsetjmp(g_jmp, 1) == 0) {
            raise(SIGSEGV);
            missed++;
        }
    }
    CHECK_EQ(missed, 0);
    CHECK_EQ(g_own_faults, n);
    CHECK_EQ(g_user_sent, n);
    for (volatile int i = 0; i < n; i++) {
        if (sigsetjmp(g_jmp, 1) == 0) {
            store(guard + (size_t)(i % 64), 1);
            missed++;
        }
    }
    CHECK_EQ(missed, 0);
    CHECK_EQ(g_own_faults, 2 * n);
    CHECK_EQ(g_user_sent, n);
    store(buf + 3, 0x33);
    memwatch_change_event_t *ev = NULL;
    size_t count = 0;
    REQUIRE(memwatch_watcher_check_changes(w, &ev, &count) == MEMWATCH_OK);
    CHECK_EQ(count, 1);
    if (count == 1) {
        CHECK_EQ(ev[0].region_id, id);
        CHECK_EQ(ev[0].old_value[3], 0);
        CHECK_EQ(ev[0].new_value[3], 0x33);
    }
    memwatch_events_free(ev, count);
    CHECK_EQ(g_own_faults, 2 * n); /* memwatch's own fault was not forwarded */

    fflush(NULL);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        struct rlimit nocore = {0, 0};
        setrlimit(RLIMIT_CORE, &nocore);
        signal(SIGSEGV, SIG_DFL);
        if (memwatch_reassert_signal_handler() != 1) _exit(3);
        store(guard, 1); /* a real crash, no handler before memwatch */
        _exit(4);
    }
    int status = 0, timed_out = 0;
    wait_child_deadline(pid, &status, 1.0, &timed_out);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(!timed_out);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
    CHECK((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) < 1000000000L);
    memwatch_watcher_free(w);
}

/* ---- a real crash still crashes ------------------------------------------------ */

static void wait_child_deadline(pid_t pid, int *status, double limit_s, int *timed_out) {
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    *timed_out = 0;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid) return;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double el = (double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9;
        if (el > limit_s) {
            *timed_out = 1;
            kill(pid, SIGKILL);
            waitpid(pid, status, 0);
            return;
        }
        struct timespec d = {0, 2 * 1000 * 1000};
        nanosleep(&d, NULL);
    }
}

static void t_unmapped_write_kills_child(void) {
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        struct rlimit nocore = {0, 0};
        setrlimit(RLIMIT_CORE, &nocore);
        memwatch_watcher_t *w = new_watcher("protect");
        uint8_t *buf = map_pages(1, PROT_READ | PROT_WRITE);
        uint32_t id;
        if (memwatch_watcher_watch(w, buf, 64, "buf", NULL, &id) != MEMWATCH_OK) _exit(3);
        store(buf, 1); /* memwatch's own fault, handled */
        /* Unmapped right before the write, so no later mapping can reuse it. */
        uint8_t *gone = map_pages(1, PROT_READ | PROT_WRITE);
        munmap(gone, page());
        store(gone + 10, 1); /* a real crash */
        _exit(4);
    }
    int status = 0, timed_out = 0;
    wait_child_deadline(pid, &status, 1.0, &timed_out);
    CHECK(!timed_out);
    CHECK(WIFSIGNALED(status));
    if (WIFSIGNALED(status)) CHECK_EQ(WTERMSIG(status), SIGSEGV);
    else fprintf(stderr, "child exited with %d\n", WEXITSTATUS(status));
}

/* A write to a read-only mapping memwatch never watched is a real crash too. */
static void t_readonly_write_kills_child(void) {
    uint8_t *ro = map_pages(1, PROT_READ);
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        struct rlimit nocore = {0, 0};
        setrlimit(RLIMIT_CORE, &nocore);
        memwatch_watcher_t *w = new_watcher("protect");
        uint8_t *buf = map_pages(1, PROT_READ | PROT_WRITE);
        uint32_t id;
        if (memwatch_watcher_watch(w, buf, 64, "buf", NULL, &id) != MEMWATCH_OK) _exit(3);
        store(ro + 1, 1);
        _exit(4);
    }
    int status = 0, timed_out = 0;
    wait_child_deadline(pid, &status, 1.0, &timed_out);
    CHECK(!timed_out);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
    munmap(ro, page());
}

/* ---- fork --------------------------------------------------------------------------- */

static void t_fork_child_writes(void) {
    memwatch_watcher_t *w = new_watcher("protect");
    uint8_t *buf = map_pages(1, PROT_READ | PROT_WRITE);
    uint32_t id = 0;
    REQUIRE(memwatch_watcher_watch(w, buf, 64, "shared", NULL, &id) == MEMWATCH_OK);
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        for (int i = 0; i < 64; i++) store(buf + i, (uint8_t)(i + 1));
        for (int i = 0; i < 64; i++) if (buf[i] != (uint8_t)(i + 1)) _exit(5);
        _exit(0);
    }
    int status = 0, timed_out = 0;
    wait_child_deadline(pid, &status, 5.0, &timed_out);
    CHECK(!timed_out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* The child's writes were to its own copy: nothing changed here. */
    memwatch_change_event_t *ev = NULL;
    size_t n = 9;
    REQUIRE(memwatch_watcher_check_changes(w, &ev, &n) == MEMWATCH_OK);
    CHECK_EQ(n, 0);
    memwatch_events_free(ev, n);
    CHECK_EQ(buf[0], 0);
    /* The parent still watches. */
    store(buf + 2, 9);
    REQUIRE(memwatch_watcher_check_changes(w, &ev, &n) == MEMWATCH_OK);
    REQUIRE(n == 1);
    CHECK_EQ(ev[0].changed_ranges[0].offset, 2);
    CHECK_EQ(ev[0].new_value[2], 9);
    memwatch_events_free(ev, n);
    memwatch_watcher_free(w);
    munmap(buf, page());
}

/* ---- 8 threads x 100 000 writes ------------------------------------------------------ */

#define NTHREADS 8
#define NWRITES 100000
#define SLOT 64

typedef struct {
    uint8_t *slot;
    int index;
} writer_arg_t;

/* ---- fork with live watchers ---------------------------------------------------------- */

static void noop_cb(const memwatch_change_event_t *ev, void *ctx) { (void)ev; (void)ctx; }

static double elapsed_s(const struct timespec *t0) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

/* A child writes watched memory (its own copy), sees every call but free
   fail with MEMWATCH_ERR_UNSUPPORTED, frees the inherited watchers (and the
   global one) and exits normally (exit(3): atexit handlers and all), within
   1 s; every backend, callback set or not. */
static void t_fork_child_frees_and_exits(void) {
    const char *backends[] = {"protect", "writewatch", "poll"};
    for (int b = 0; b < 3; b++) {
        for (int with_cb = 0; with_cb < 2; with_cb++) {
            memwatch_watcher_t *w = new_watcher(backends[b]);
            if (with_cb) REQUIRE(memwatch_watcher_set_callback(w, noop_cb, NULL) == MEMWATCH_OK);
            REQUIRE(memwatch_init() == MEMWATCH_OK);
            uint8_t *buf = map_pages(1, PROT_READ | PROT_WRITE);
            uint32_t id = 0;
            REQUIRE(memwatch_watcher_watch(w, buf, 64, "inherited", NULL, &id) == MEMWATCH_OK);
            REQUIRE(memwatch_watch((uint64_t)(uintptr_t)(buf + 64), 64, "global", NULL) != 0);
            store(buf + 1, 1);
            struct timespec t0;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            fflush(NULL);
            pid_t pid = fork();
            REQUIRE(pid >= 0);
            if (pid == 0) {
                for (int i = 0; i < 128; i++) store(buf + i, 0xC0);
                for (int i = 0; i < 128; i++) if (buf[i] != 0xC0) _exit(5);
                memwatch_change_event_t *ev = NULL;
                size_t n = 0;
                if (memwatch_watcher_check_changes(w, &ev, &n) != MEMWATCH_ERR_UNSUPPORTED) _exit(6);
                if (memwatch_watcher_unwatch(w, id) != MEMWATCH_ERR_UNSUPPORTED) _exit(7);
                memwatch_watcher_t *fresh = NULL;
                if (memwatch_watcher_new(NULL, &fresh) != MEMWATCH_ERR_UNSUPPORTED) _exit(8);
                memwatch_watcher_free(w);
                memwatch_shutdown();
                exit(0);
            }
            int status = 0, timed_out = 0;
            wait_child_deadline(pid, &status, 1.0, &timed_out);
            if (timed_out || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fprintf(stderr, "%s callback=%d: timed_out=%d status=%#x\n", backends[b], with_cb, timed_out, status);
            CHECK(!timed_out);
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
            CHECK(elapsed_s(&t0) < 1.0);
            CHECK_EQ(buf[0], 0);
            CHECK_EQ(buf[1], 1);
            if (!with_cb) {
                memwatch_change_event_t *ev = NULL;
                size_t n = 0;
                REQUIRE(memwatch_watcher_check_changes(w, &ev, &n) == MEMWATCH_OK);
                CHECK_EQ(n, 1);
                if (n == 1) {
                    CHECK_EQ(ev[0].region_id, id);
                    CHECK_EQ(ev[0].new_value[1], 1);
                    CHECK_EQ(ev[0].new_value[0], 0);
                }
                memwatch_events_free(ev, n);
            }
            memwatch_watcher_free(w);
            memwatch_shutdown();
            munmap(buf, page());
        }
    }
}

struct busy { uint8_t *buf; size_t len; atomic_int stop; };

static void *busy_writer(void *p) {
    struct busy *b = p;
    size_t i = 0;
    while (!atomic_load(&b->stop)) {
        store(b->buf + (i * 4099) % b->len, (uint8_t)i);
        i++;
    }
    return NULL;
}

/* 300 forks per backend while a parent thread writes watched memory (the
   worker and the delivery thread busy with it): every child frees the
   inherited watcher and exits within 1 s. */
static void t_fork_300_while_writing(void) {
    const char *backends[] = {"protect", "writewatch", "poll"};
    for (int b = 0; b < 3; b++) {
        memwatch_watcher_t *w = new_watcher(backends[b]);
        REQUIRE(memwatch_watcher_set_callback(w, noop_cb, NULL) == MEMWATCH_OK);
        struct busy busy = {map_pages(4, PROT_READ | PROT_WRITE), 4 * page(), 0};
        uint32_t id = 0;
        REQUIRE(memwatch_watcher_watch(w, busy.buf, busy.len, "busy", NULL, &id) == MEMWATCH_OK);
        pthread_t th;
        REQUIRE(pthread_create(&th, NULL, busy_writer, &busy) == 0);
        int bad = 0;
        for (int i = 0; i < 300; i++) {
            fflush(NULL);
            pid_t pid = fork();
            REQUIRE(pid >= 0);
            if (pid == 0) {
                store(busy.buf, 0xEE);
                memwatch_watcher_free(w);
                exit(0);
            }
            int status = 0, timed_out = 0;
            wait_child_deadline(pid, &status, 1.0, &timed_out);
            if (timed_out || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                if (!bad) fprintf(stderr, "%s fork %d: timed_out=%d status=%#x\n", backends[b], i, timed_out, status);
                bad++;
            }
        }
        CHECK_EQ(bad, 0);
        atomic_store(&busy.stop, 1);
        pthread_join(th, NULL);
        memwatch_watcher_free(w);
        munmap(busy.buf, busy.len);
    }
}

/* ---- memory unmapped or replaced while watched ------------------------------------------ */

/* The permissions of the page at p in /proc/self/maps ("---p", "r--p"...), or "" if unmapped. */
static void perms_at(const void *p, char out[5]) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    out[0] = 0;
    while (f && fgets(line, sizeof line, f)) {
        unsigned long s, e;
        char perms[5];
        if (sscanf(line, "%lx-%lx %4s", &s, &e, perms) == 3 && s <= (uintptr_t)p && (uintptr_t)p < e) {
            memcpy(out, perms, 5);
            break;
        }
    }
    if (f) fclose(f);
}

#define CHECK_PERMS(p, want, when)                                                            \
    do {                                                                                      \
        char _got[5];                                                                         \
        perms_at(p, _got);                                                                    \
        if (strcmp(_got, want) != 0) {                                                        \
            fprintf(stderr, "%s:%d: %s %s in_window=%d: perms '%s' after %s, want '%s'\n",    \
                    __FILE__, __LINE__, backend, doom_name[how], in_window, _got, when, want); \
            g_failures++;                                                                     \
        }                                                                                     \
    } while (0)

static const char *doom_name[] = {"munmap", "PROT_NONE", "PROT_READ"};

/* how: 0 munmap, 1 MAP_FIXED PROT_NONE, 2 MAP_FIXED PROT_READ. */
static void replaced_case(const char *backend, int how, int in_window, int first_is_check) {
    memwatch_options_t o;
    memwatch_options_default(&o);
    o.backend = backend;
    o.writable_window_ms = 30000; /* a written page stays open until check_changes */
    o.poll_interval_ms = 30000;
    memwatch_watcher_t *w = NULL;
    REQUIRE(memwatch_watcher_new(&o, &w) == MEMWATCH_OK);
    uint8_t *mem = map_pages(3, PROT_READ | PROT_WRITE);
    uint8_t *doomed = mem + page();
    uint32_t id = 0, keep = 0;
    REQUIRE(memwatch_watcher_watch(w, doomed, 64, "doomed", NULL, &id) == MEMWATCH_OK);
    REQUIRE(memwatch_watcher_watch(w, mem, 16, "neighbour", NULL, &keep) == MEMWATCH_OK);
    memwatch_stats_t st;
    REQUIRE(memwatch_watcher_get_stats(w, &st) == MEMWATCH_OK);
    uint64_t gone_before = st.gone_regions;
    store(doomed + 1, 7);
    memwatch_change_event_t *ev = NULL;
    size_t n = 0;
    if (!in_window) {
        REQUIRE(memwatch_watcher_check_changes(w, &ev, &n) == MEMWATCH_OK);
        CHECK_EQ(n, 1);
        memwatch_events_free(ev, n);
    }
    const char *want = how == 0 ? "" : how == 1 ? "---p" : "r--p";
    if (how == 0) REQUIRE(munmap(doomed, page()) == 0);
    else REQUIRE(mmap(doomed, page(), how == 1 ? PROT_NONE : PROT_READ,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == doomed);
    CHECK_PERMS(doomed, want, "the replacement");
    /* writewatch and poll read a readable replacement as the region's memory. */
    int dropped = strcmp(backend, "protect") == 0 || how != 2;
    if (first_is_check) {
        REQUIRE(memwatch_watcher_check_changes(w, &ev, &n) == MEMWATCH_OK);
        CHECK_PERMS(doomed, want, "check_changes");
        for (size_t i = 0; i < n; i++) CHECK_EQ(ev[i].region_id, id);
        memwatch_events_free(ev, n);
        REQUIRE(memwatch_watcher_get_stats(w, &st) == MEMWATCH_OK);
        CHECK_PERMS(doomed, want, "get_stats");
        CHECK_EQ(st.gone_regions - gone_before, dropped ? 1 : 0);
        CHECK_EQ(st.regions, dropped ? 1 : 2);
        CHECK_EQ(memwatch_watcher_unwatch(w, id), dropped ? 0 : 1);
        CHECK_PERMS(doomed, want, "unwatch");
        store(mem + 2, 9);
        REQUIRE(memwatch_watcher_check_changes(w, &ev, &n) == MEMWATCH_OK);
        CHECK_EQ(n, 1);
        if (n == 1) { CHECK_EQ(ev[0].region_id, keep); CHECK_EQ(ev[0].new_value[2], 9); }
        memwatch_events_free(ev, n);
    }
    memwatch_watcher_free(w);
    CHECK_PERMS(doomed, want, "free");
    CHECK_PERMS(mem, "rw-p", "free (the neighbour)");
    store(mem, 1);
    munmap(mem, 3 * page());
}

static void replaced(const char *backend) {
    for (int how = 0; how < 3; how++)
        for (int in_window = 0; in_window < 2; in_window++)
            for (int first_is_check = 0; first_is_check < 2; first_is_check++)
                replaced_case(backend, how, in_window, first_is_check);
}
static void t_replaced_mapping_protect(void) { replaced("protect"); }
static void t_replaced_mapping_writewatch(void) { replaced("writewatch"); }
static void t_replaced_mapping_poll(void) { replaced("poll"); }

static void *writer(void *p) {
    writer_arg_t *a = p;
    volatile uint64_t *word = (volatile uint64_t *)a->slot;
    for (uint64_t i = 1; i <= NWRITES; i++) {
        word[0] = i;
        word[1] = i * 3 + (uint64_t)a->index;
    }
    return NULL;
}

static void threads(const char *backend) {
    memwatch_watcher_t *w = new_watcher(backend);
    /* Two regions per page, over 4 pages: threads share pages. */
    uint8_t *buf = map_pages(4, PROT_READ | PROT_WRITE);
    uint32_t ids[NTHREADS];
    uint8_t *slots[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        slots[t] = buf + (size_t)(t / 2) * page() + (size_t)(t % 2) * 1024;
        char name[16];
        snprintf(name, sizeof name, "slot%d", t);
        REQUIRE(memwatch_watcher_watch(w, slots[t], SLOT, name, NULL, &ids[t]) == MEMWATCH_OK);
    }
    pthread_t th[NTHREADS];
    writer_arg_t args[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        args[t].slot = slots[t];
        args[t].index = t;
        REQUIRE(pthread_create(&th[t], NULL, writer, &args[t]) == 0);
    }
    for (int t = 0; t < NTHREADS; t++) pthread_join(th[t], NULL);

    memwatch_change_event_t *ev = NULL;
    size_t n = 0;
    REQUIRE(memwatch_watcher_check_changes(w, &ev, &n) == MEMWATCH_OK);
    /* All writes happened before the check: every region is reported, as
       one event or a chain (writes span several writable windows), ending
       with its final bytes; none is missed or reported twice. */
    uint8_t zeros[SLOT] = {0};
    for (int t = 0; t < NTHREADS; t++) {
        uint64_t want[8] = {NWRITES, (uint64_t)NWRITES * 3 + (uint64_t)t, 0, 0, 0, 0, 0, 0};
        int c = check_chain(ev, n, ids[t], zeros, (const uint8_t *)want, SLOT, NULL);
        if (c < 1) { fprintf(stderr, "slot%d: %d events\n", t, c); g_failures++; }
    }
    for (size_t i = 0; i < n; i++) {
        int known = 0;
        for (int t = 0; t < NTHREADS; t++) known |= ev[i].region_id == ids[t];
        CHECK(known);
    }
    memwatch_events_free(ev, n);
    REQUIRE(memwatch_watcher_check_changes(w, &ev, &n) == MEMWATCH_OK);
    CHECK_EQ(n, 0);
    memwatch_events_free(ev, n);
    memwatch_watcher_free(w);
    munmap(buf, 4 * page());
}
static void t_threads_protect(void) { threads("protect"); }
static void t_threads_poll(void) { threads("poll"); }
static void t_threads_writewatch(void) { threads("writewatch"); }

/* ---- a tiny ring loses no change ----------------------------------------------- */

#define BURST_PAGES 512
#define BURST_THREADS 4

typedef struct {
    uint8_t *base;
    int first, count;
} burst_arg_t;

static void *burst(void *p) {
    burst_arg_t *a = p;
    for (int i = a->first; i < a->first + a->count; i++) store(a->base + (size_t)i * page() + 1, (uint8_t)(i % 250 + 1));
    return NULL;
}

static void t_tiny_ring_burst(void) {
    memwatch_options_t o;
    memwatch_options_default(&o);
    o.backend = "protect";
    o.ring_capacity = 2; /* this process's engine starts here */
    o.writable_window_ms = 50;
    memwatch_watcher_t *w = NULL;
    REQUIRE(memwatch_watcher_new(&o, &w) == MEMWATCH_OK);
    uint8_t *buf = map_pages(BURST_PAGES, PROT_READ | PROT_WRITE);
    static uint32_t ids[BURST_PAGES];
    for (int i = 0; i < BURST_PAGES; i++)
        REQUIRE(memwatch_watcher_watch(w, buf + (size_t)i * page(), 8, "p", NULL, &ids[i]) == MEMWATCH_OK);
    pthread_t th[BURST_THREADS];
    burst_arg_t args[BURST_THREADS];
    for (int t = 0; t < BURST_THREADS; t++) {
        args[t].base = buf;
        args[t].first = t * (BURST_PAGES / BURST_THREADS);
        args[t].count = BURST_PAGES / BURST_THREADS;
        REQUIRE(pthread_create(&th[t], NULL, burst, &args[t]) == 0);
    }
    for (int t = 0; t < BURST_THREADS; t++) pthread_join(th[t], NULL);
    memwatch_change_event_t *ev = NULL;
    size_t n = 0;
    REQUIRE(memwatch_watcher_check_changes(w, &ev, &n) == MEMWATCH_OK);
    CHECK_EQ(n, BURST_PAGES);
    static int seen[BURST_PAGES];
    size_t no_where = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t k = ev[i].region_id - ids[0];
        REQUIRE(k < BURST_PAGES && ids[k] == ev[i].region_id);
        seen[k]++;
        REQUIRE(ev[i].new_value_len == 8 && ev[i].changed_range_count == 1);
        CHECK_EQ(ev[i].new_value[1], (uint8_t)(k % 250 + 1));
        CHECK_EQ(ev[i].changed_ranges[0].offset, 1);
        if (ev[i].thread_id == 0) no_where++;
    }
    for (int i = 0; i < BURST_PAGES; i++) if (seen[i] != 1) { fprintf(stderr, "page %d: %d events\n", i, seen[i]); g_failures++; break; }
    memwatch_events_free(ev, n);
    memwatch_stats_t st;
    REQUIRE(memwatch_watcher_get_stats(w, &st) == MEMWATCH_OK);
    fprintf(stderr, "tiny ring: %zu events without a where, dropped_wheres=%llu, faults=%llu\n", no_where,
            (unsigned long long)st.dropped_wheres, (unsigned long long)st.faults);
    CHECK(st.dropped_wheres >= 1);
    CHECK_EQ(st.dropped_wheres, no_where);
    CHECK(st.faults >= BURST_PAGES);
    memwatch_watcher_free(w);
    munmap(buf, (size_t)BURST_PAGES * page());
}

/* ---- callbacks ---------------------------------------------------------------------- */

typedef struct {
    pthread_mutex_t mu;
    int count;
    uint32_t region_id;
    uint32_t thread;
    uint8_t new_byte;
    uint8_t old_byte;
    size_t range_off;
    void *ctx_seen;
    int free_inside;
    memwatch_watcher_t *w;
    sem_t done;
} cb_state_t;

static void record_cb(const memwatch_change_event_t *ev, void *ctx) {
    cb_state_t *s = ctx;
    pthread_mutex_lock(&s->mu);
    s->count++;
    s->region_id = ev->region_id;
    s->thread = my_tid();
    s->ctx_seen = ctx;
    s->new_byte = ev->new_value ? ev->new_value[ev->changed_ranges[0].offset] : 0;
    s->old_byte = ev->old_value ? ev->old_value[ev->changed_ranges[0].offset] : 0;
    s->range_off = ev->changed_ranges[0].offset;
    pthread_mutex_unlock(&s->mu);
    if (s->free_inside) memwatch_watcher_free(s->w);
    sem_post(&s->done);
}

static void callback_delivery(const char *backend) {
    memwatch_watcher_t *w = new_watcher(backend);
    uint8_t *buf = map_pages(1, PROT_READ | PROT_WRITE);
    cb_state_t s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.mu, NULL);
    sem_init(&s.done, 0, 0);
    uint32_t id = 0;
    REQUIRE(memwatch_watcher_watch(w, buf, 32, "cb", NULL, &id) == MEMWATCH_OK);
    REQUIRE(memwatch_watcher_set_callback(w, record_cb, &s) == MEMWATCH_OK);
    store(buf + 9, 0x99);
    memwatch_change_event_t *ev = NULL;
    size_t n = 7;
    /* With a callback set, check_changes delivers to it and waits. */
    REQUIRE(memwatch_watcher_check_changes(w, &ev, &n) == MEMWATCH_OK);
    CHECK_EQ(n, 0);
    CHECK(ev == NULL);
    pthread_mutex_lock(&s.mu);
    CHECK_EQ(s.count, 1);
    CHECK_EQ(s.region_id, id);
    CHECK_EQ(s.range_off, 9);
    CHECK_EQ(s.new_byte, 0x99);
    CHECK_EQ(s.old_byte, 0);
    CHECK(s.ctx_seen == &s);
    CHECK(s.thread != my_tid()); /* the delivery thread */
    pthread_mutex_unlock(&s.mu);
    /* Cleared: events go to check_changes again. */
    REQUIRE(memwatch_watcher_set_callback(w, NULL, NULL) == MEMWATCH_OK);
    store(buf + 10, 0xAA);
    REQUIRE(memwatch_watcher_check_changes(w, &ev, &n) == MEMWATCH_OK);
    REQUIRE(n == 1);
    CHECK_EQ(ev[0].changed_ranges[0].offset, 10);
    memwatch_events_free(ev, n);
    CHECK_EQ(s.count, 1);
    memwatch_stats_t st;
    REQUIRE(memwatch_watcher_get_stats(w, &st) == MEMWATCH_OK);
    CHECK_EQ(st.events, 2);
    CHECK_EQ(st.callback_errors, 0);
    CHECK_EQ(memwatch_watcher_report_callback_error(w), MEMWATCH_OK);
    REQUIRE(memwatch_watcher_get_stats(w, &st) == MEMWATCH_OK);
    CHECK_EQ(st.callback_errors, 1);
    memwatch_watcher_free(w);
    munmap(buf, page());
}
static void t_callback_delivery_protect(void) { callback_delivery("protect"); }
static void t_callback_delivery_poll(void) { callback_delivery("poll"); }
static void t_callback_delivery_writewatch(void) { callback_delivery("writewatch"); }

/* The callback frees its own watcher; delivery is driven by the engine alone
   (writable window / poll interval), and the test waits on a semaphore. */
static void free_inside(const char *backend) {
    memwatch_options_t o;
    memwatch_options_default(&o);
    o.backend = backend;
    o.poll_interval_ms = 10;
    memwatch_watcher_t *w = NULL;
    REQUIRE(memwatch_watcher_new(&o, &w) == MEMWATCH_OK);
    uint8_t *buf = map_pages(1, PROT_READ | PROT_WRITE);
    cb_state_t s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.mu, NULL);
    sem_init(&s.done, 0, 0);
    s.free_inside = 1;
    s.w = w;
    uint32_t id = 0;
    REQUIRE(memwatch_watcher_watch(w, buf, 32, "cb", NULL, &id) == MEMWATCH_OK);
    REQUIRE(memwatch_watcher_set_callback(w, record_cb, &s) == MEMWATCH_OK);
    store(buf + 1, 1);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 5;
    REQUIRE(sem_timedwait(&s.done, &dl) == 0);
    CHECK_EQ(s.count, 1);
    /* The watcher is gone: the memory is plain memory again. */
    store(buf + 2, 2);
    /* And a new watcher works. */
    memwatch_watcher_t *w2 = new_watcher(backend);
    uint32_t id2;
    REQUIRE(memwatch_watcher_watch(w2, buf, 32, "again", NULL, &id2) == MEMWATCH_OK);
    store(buf + 3, 3);
    memwatch_change_event_t *ev;
    size_t n;
    REQUIRE(memwatch_watcher_check_changes(w2, &ev, &n) == MEMWATCH_OK);
    CHECK_EQ(n, 1);
    memwatch_events_free(ev, n);
    memwatch_watcher_free(w2);
    munmap(buf, page());
}
static void t_free_inside_callback_protect(void) { free_inside("protect"); }
static void t_free_inside_callback_poll(void) { free_inside("poll"); }
static void t_free_inside_callback_writewatch(void) { free_inside("writewatch"); }

/* ---- callback finalizer ---------------------------------------------------------- */

/* One callback context: how often its callback ran and runs now, and how
   often its finalizer ran (and whether the callback was running then). */
typedef struct {
    atomic_int calls, running, finalized, finalized_while_running;
    sem_t entered, release, done;
    int block; /* the callback waits for `release` */
    void *ptr_w; /* close_inside_cb: the watcher to close */
} fin_ctx_t;

static void fin_ctx_init(fin_ctx_t *c, int block) {
    memset(c, 0, sizeof *c);
    sem_init(&c->entered, 0, 0);
    sem_init(&c->release, 0, 0);
    sem_init(&c->done, 0, 0);
    c->block = block;
}

static void fin_cb(const memwatch_change_event_t *e, void *ctx) {
    (void)e;
    fin_ctx_t *c = ctx;
    atomic_fetch_add(&c->running, 1);
    atomic_fetch_add(&c->calls, 1);
    sem_post(&c->entered);
    if (c->block) sem_wait(&c->release);
    atomic_fetch_sub(&c->running, 1);
}

static void fin_fn(void *ctx) {
    fin_ctx_t *c = ctx;
    if (atomic_load(&c->running)) atomic_fetch_add(&c->finalized_while_running, 1);
    atomic_fetch_add(&c->finalized, 1);
    sem_post(&c->done);
}

static int wait_sem(sem_t *s, int seconds) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += seconds;
    return sem_timedwait(s, &dl) == 0;
}

typedef struct {
    memwatch_watcher_t *w;
    int rc;
} check_args_t;

static void *check_thread(void *arg) {
    check_args_t *a = arg;
    memwatch_change_event_t *ev = NULL;
    size_t n = 0;
    a->rc = memwatch_watcher_check_changes(a->w, &ev, &n);
    memwatch_events_free(ev, n);
    return NULL;
}

/* The finalizer runs exactly once when its context is last used: replaced
   (while the callback runs: only after it returns), cleared, the watcher
   closed or freed, the default watcher shut down, a failing call; and
   never while its callback can still run. */
static void t_callback_finalizer(void) {
    memwatch_watcher_t *w = new_watcher("protect");
    uint8_t *buf = map_pages(1, PROT_READ | PROT_WRITE);
    uint32_t id;
    REQUIRE(memwatch_watcher_watch(w, buf, 64, "fin", NULL, &id) == MEMWATCH_OK);

    /* 1. Replaced while the callback is running: finalized after it returns. */
    fin_ctx_t a, b, c, d;
    fin_ctx_init(&a, 1);
    fin_ctx_init(&b, 0);
    REQUIRE(memwatch_watcher_set_callback_with_finalizer(w, fin_cb, &a, fin_fn) == MEMWATCH_OK);
    store(buf + 1, 1);
    check_args_t args = {w, 1};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, check_thread, &args) == 0);
    REQUIRE(wait_sem(&a.entered, 10)); /* a's callback runs and blocks */
    CHECK_EQ(memwatch_watcher_set_callback_with_finalizer(w, fin_cb, &b, fin_fn), MEMWATCH_OK);
    CHECK_EQ(atomic_load(&a.finalized), 0); /* still running: not yet */
    sem_post(&a.release);
    REQUIRE(wait_sem(&a.done, 10));
    pthread_join(th, NULL);
    CHECK_EQ(args.rc, MEMWATCH_OK);
    CHECK_EQ(atomic_load(&a.calls), 1);
    CHECK_EQ(atomic_load(&a.finalized), 1);
    CHECK_EQ(atomic_load(&a.finalized_while_running), 0);

    /* The new context gets the next event; the old one never again. */
    store(buf + 2, 2);
    memwatch_change_event_t *ev = NULL;
    size_t n = 0;
    CHECK_EQ(memwatch_watcher_check_changes(w, &ev, &n), MEMWATCH_OK);
    CHECK_EQ(n, 0);
    CHECK_EQ(atomic_load(&b.calls), 1);
    CHECK_EQ(atomic_load(&a.calls), 1);

    /* 2. Cleared: finalized before set_callback returns (nothing running). */
    CHECK_EQ(atomic_load(&b.finalized), 0);
    CHECK_EQ(memwatch_watcher_set_callback(w, NULL, NULL), MEMWATCH_OK);
    CHECK_EQ(atomic_load(&b.finalized), 1);
    CHECK_EQ(atomic_load(&b.finalized_while_running), 0);
    /* Replacing by a callback without a finalizer also releases the old one. */
    fin_ctx_init(&d, 0);
    CHECK_EQ(memwatch_watcher_set_callback_with_finalizer(w, fin_cb, &d, fin_fn), MEMWATCH_OK);
    CHECK_EQ(memwatch_watcher_set_callback(w, fin_cb, &d), MEMWATCH_OK);
    CHECK_EQ(atomic_load(&d.finalized), 1);
    CHECK_EQ(memwatch_watcher_set_callback(w, NULL, NULL), MEMWATCH_OK);
    CHECK_EQ(atomic_load(&d.finalized), 1); /* its own call had none */

    /* 3. Closed: finalized by close, not again by free. */
    fin_ctx_init(&c, 0);
    CHECK_EQ(memwatch_watcher_set_callback_with_finalizer(w, fin_cb, &c, fin_fn), MEMWATCH_OK);
    store(buf + 3, 3);
    CHECK_EQ(memwatch_watcher_check_changes(w, &ev, &n), MEMWATCH_OK);
    CHECK_EQ(atomic_load(&c.calls), 1);
    CHECK_EQ(memwatch_watcher_close(w), MEMWATCH_OK);
    CHECK_EQ(atomic_load(&c.finalized), 1);
    CHECK_EQ(atomic_load(&c.finalized_while_running), 0);

    /* A failing call (closed watcher) still takes ownership: finalized now. */
    fin_ctx_t e;
    fin_ctx_init(&e, 0);
    CHECK_EQ(memwatch_watcher_set_callback_with_finalizer(w, fin_cb, &e, fin_fn), MEMWATCH_ERR_CLOSED);
    CHECK_EQ(atomic_load(&e.finalized), 1);
    CHECK_EQ(memwatch_watcher_set_callback_with_finalizer(NULL, fin_cb, &e, fin_fn), MEMWATCH_ERR_INVALID_ARGUMENT);
    CHECK_EQ(atomic_load(&e.finalized), 2); /* one per call */
    /* cb == NULL: nothing will use user_ctx, finalized at once. */
    fin_ctx_t f;
    fin_ctx_init(&f, 0);
    memwatch_watcher_t *w2 = new_watcher("poll");
    CHECK_EQ(memwatch_watcher_set_callback_with_finalizer(w2, NULL, &f, fin_fn), MEMWATCH_OK);
    CHECK_EQ(atomic_load(&f.finalized), 1);
    /* Freed without close: finalized once by free. */
    fin_ctx_t g;
    fin_ctx_init(&g, 0);
    CHECK_EQ(memwatch_watcher_set_callback_with_finalizer(w2, fin_cb, &g, fin_fn), MEMWATCH_OK);
    memwatch_watcher_free(w2);
    CHECK_EQ(atomic_load(&g.finalized), 1);
    memwatch_watcher_free(w);
    CHECK_EQ(atomic_load(&c.finalized), 1);

    /* The default watcher: finalized by memwatch_shutdown. */
    fin_ctx_t h;
    fin_ctx_init(&h, 0);
    CHECK_EQ(memwatch_set_callback_with_finalizer(fin_cb, &h, fin_fn), MEMWATCH_OK);
    REQUIRE(memwatch_watch((uint64_t)(uintptr_t)buf, 64, "global", NULL) != 0);
    store(buf + 4, 4);
    CHECK_EQ(memwatch_check_changes(&ev, &n), MEMWATCH_OK);
    CHECK_EQ(atomic_load(&h.calls), 1);
    CHECK_EQ(atomic_load(&h.finalized), 0);
    memwatch_shutdown();
    CHECK_EQ(atomic_load(&h.finalized), 1);
    CHECK_EQ(atomic_load(&h.finalized_while_running), 0);
    munmap(buf, page());
}

/* The callback closes its own watcher: its context is finalized only after
   that call returned, on the delivery thread. */
static void close_inside_cb(const memwatch_change_event_t *e, void *ctx) {
    (void)e;
    fin_ctx_t *c = ctx;
    atomic_fetch_add(&c->running, 1);
    atomic_fetch_add(&c->calls, 1);
    memwatch_watcher_close((memwatch_watcher_t *)c->ptr_w);
    atomic_fetch_sub(&c->running, 1);
}

static void t_callback_finalizer_close_inside(void) {
    memwatch_watcher_t *w = new_watcher("protect");
    uint8_t *buf = map_pages(1, PROT_READ | PROT_WRITE);
    uint32_t id;
    REQUIRE(memwatch_watcher_watch(w, buf, 64, "fin", NULL, &id) == MEMWATCH_OK);
    fin_ctx_t c;
    fin_ctx_init(&c, 0);
    c.ptr_w = w;
    REQUIRE(memwatch_watcher_set_callback_with_finalizer(w, close_inside_cb, &c, fin_fn) == MEMWATCH_OK);
    store(buf + 1, 1);
    REQUIRE(wait_sem(&c.done, 10)); /* delivered by the engine alone */
    CHECK_EQ(atomic_load(&c.calls), 1);
    CHECK_EQ(atomic_load(&c.finalized), 1);
    CHECK_EQ(atomic_load(&c.finalized_while_running), 0);
    memwatch_watcher_free(w);
    CHECK_EQ(atomic_load(&c.finalized), 1);
    munmap(buf, page());
}

/* ---- several watchers -------------------------------------------------------------- */

static void t_two_watchers_share_a_page(void) {
    memwatch_watcher_t *a = new_watcher("protect");
    memwatch_watcher_t *b = new_watcher("protect");
    uint8_t *buf = map_pages(1, PROT_READ | PROT_WRITE);
    uint32_t ia, ib, ib2;
    REQUIRE(memwatch_watcher_watch(a, buf, 16, "a", NULL, &ia) == MEMWATCH_OK);
    REQUIRE(memwatch_watcher_watch(b, buf + 16, 16, "b", NULL, &ib) == MEMWATCH_OK);
    /* Overlap across watchers is allowed. */
    REQUIRE(memwatch_watcher_watch(b, buf, 4, "b-over-a", NULL, &ib2) == MEMWATCH_OK);
    store(buf + 1, 1);
    store(buf + 17, 2);
    memwatch_change_event_t *ev;
    size_t n;
    REQUIRE(memwatch_watcher_check_changes(a, &ev, &n) == MEMWATCH_OK);
    REQUIRE(n == 1);
    CHECK_EQ(ev[0].region_id, ia);
    memwatch_events_free(ev, n);
    REQUIRE(memwatch_watcher_check_changes(b, &ev, &n) == MEMWATCH_OK);
    REQUIRE(n == 2);
    int got_b = 0, got_over = 0;
    for (size_t i = 0; i < n; i++) {
        if (ev[i].region_id == ib) got_b++;
        if (ev[i].region_id == ib2) got_over++;
    }
    CHECK(got_b == 1 && got_over == 1);
    memwatch_events_free(ev, n);
    /* Freeing one watcher leaves the other's protection in place. */
    memwatch_watcher_free(a);
    store(buf + 20, 3);
    REQUIRE(memwatch_watcher_check_changes(b, &ev, &n) == MEMWATCH_OK);
    REQUIRE(n == 1);
    CHECK_EQ(ev[0].region_id, ib);
    CHECK_EQ(ev[0].changed_ranges[0].offset, 4);
    memwatch_events_free(ev, n);
    memwatch_watcher_free(b);
    munmap(buf, page());
}

/* ---- stats ----------------------------------------------------------------------------- */

static void t_stats(void) {
    memwatch_watcher_t *w = new_watcher("protect");
    uint8_t *buf = map_pages(3, PROT_READ | PROT_WRITE);
    uint32_t id;
    for (int i = 0; i < 3; i++) REQUIRE(memwatch_watcher_watch(w, buf + (size_t)i * page(), 128, "s", NULL, &id) == MEMWATCH_OK);
    memwatch_stats_t st;
    REQUIRE(memwatch_watcher_get_stats(w, &st) == MEMWATCH_OK);
    CHECK(strcmp(st.backend, "protect") == 0);
    CHECK_EQ(st.regions, 3);
    CHECK_EQ(st.protected_pages, 3);
    CHECK_EQ(st.events, 0);
    CHECK_EQ(st.pending_events, 0);
    CHECK(st.snapshot_bytes >= 3 * 128);
    CHECK(st.native_bytes >= st.snapshot_bytes);
    CHECK(memchr(st.backend_reason, 0, sizeof st.backend_reason) != NULL);
    store(buf, 1);
    store(buf + page(), 1);
    memwatch_change_event_t *ev;
    size_t n;
    REQUIRE(memwatch_watcher_check_changes(w, &ev, &n) == MEMWATCH_OK);
    CHECK_EQ(n, 2);
    memwatch_events_free(ev, n);
    REQUIRE(memwatch_watcher_get_stats(w, &st) == MEMWATCH_OK);
    CHECK_EQ(st.events, 2);
    CHECK(st.faults >= 2);
    CHECK_EQ(st.dropped_wheres, 0);
    memwatch_watcher_free(w);
    munmap(buf, 3 * page());
}

/* ---- documented: a syscall writing into a protected page gets EFAULT ---------- */

static void t_syscall_write_efault_protect(void) {
    memwatch_watcher_t *w = new_watcher("protect");
    uint8_t *buf = map_pages(1, PROT_READ | PROT_WRITE);
    uint32_t id;
    REQUIRE(memwatch_watcher_watch(w, buf, 16, "target", NULL, &id) == MEMWATCH_OK);
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    REQUIRE(write(fds[1], "hello", 5) == 5);
    errno = 0;
    ssize_t r = read(fds[0], buf, 5);
    /* Documented limitation of the protect backend (memwatch.h). */
    CHECK_EQ(r, -1);
    CHECK_EQ(errno, EFAULT);
    close(fds[0]);
    close(fds[1]);
    memwatch_watcher_free(w);
    munmap(buf, page());
}

/* ---- a handler installed after memwatch, then memwatch_reassert_signal_handler ---- */

static struct sigaction g_late_saved;
static volatile sig_atomic_t g_late_calls;

/* Like Python's faulthandler: note the crash, restore the predecessor, re-raise. */
static void late_handler(int sig, siginfo_t *si, void *ctx) {
    (void)si;
    (void)ctx;
    g_late_calls++;
    sigaction(sig, &g_late_saved, NULL);
    raise(sig);
}

static void t_late_handler_reassert(void) {
    memwatch_watcher_t *w = new_watcher("protect");
    uint8_t *buf = map_pages(1, PROT_READ | PROT_WRITE);
    uint32_t id;
    REQUIRE(memwatch_watcher_watch(w, buf, 16, "x", NULL, &id) == MEMWATCH_OK);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = late_handler;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    REQUIRE(sigaction(SIGSEGV, &sa, &g_late_saved) == 0);
    CHECK_EQ(memwatch_reassert_signal_handler(), 1);
    CHECK_EQ(memwatch_reassert_signal_handler(), 0);
    for (int i = 0; i < 100; i++) buf[i % 16] = (uint8_t)(i + 1);
    memwatch_change_event_t *ev = NULL;
    size_t n = 0;
    REQUIRE(memwatch_watcher_check_changes(w, &ev, &n) == MEMWATCH_OK);
    CHECK(n >= 1);
    if (n >= 1) CHECK_EQ(ev[n - 1].new_value[99 % 16], 100);
    memwatch_events_free(ev, n);
    CHECK_EQ(g_late_calls, 0);
    /* A real crash in a child: the late handler runs once, the child dies of SIGSEGV. */
    uint8_t *gone = map_pages(1, PROT_READ | PROT_WRITE);
    munmap(gone, page());
    pid_t pid = fork();
    if (pid == 0) {
        *(volatile uint8_t *)gone = 1;
        _exit(g_late_calls == 1 ? 0 : 3); /* not reached: the crash is fatal */
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
    memwatch_watcher_free(w);
    munmap(buf, page());
}

/* ---- writewatch: a syscall writing into watched memory succeeds and is reported --- */

static void t_syscall_read_reported_writewatch(void) {
    memwatch_watcher_t *w = new_watcher("writewatch");
    uint8_t *buf = map_pages(1, PROT_READ | PROT_WRITE);
    uint32_t id;
    REQUIRE(memwatch_watcher_watch(w, buf + 64, 16, "rx", NULL, &id) == MEMWATCH_OK);
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    REQUIRE(write(fds[1], "from the kernel!", 16) == 16);
    CHECK_EQ(read(fds[0], buf + 64, 16), 16);
    close(fds[0]);
    close(fds[1]);
    memwatch_change_event_t *ev = NULL;
    size_t n = 0;
    REQUIRE(memwatch_watcher_check_changes(w, &ev, &n) == MEMWATCH_OK);
    CHECK_EQ(n, 1);
    if (n == 1) {
        CHECK_EQ(ev[0].region_id, id);
        CHECK_EQ(ev[0].new_value_len, 16);
        CHECK(memcmp(ev[0].new_value, "from the kernel!", 16) == 0);
        CHECK_EQ(ev[0].changed_range_count, 1);
        CHECK_EQ(ev[0].changed_ranges[0].offset, 0);
        CHECK_EQ(ev[0].changed_ranges[0].length, 16);
    }
    memwatch_events_free(ev, n);
    memwatch_watcher_free(w);
    munmap(buf, page());
}

/* ---- large values in the MemStream store, read back by another client ---------- */

static void t_value_store_large_values(void) {
    char name[64];
    snprintf(name, sizeof name, "mw-c-values-%d", (int)getpid());
    memwatch_options_t o;
    memwatch_options_default(&o);
    o.max_value_bytes = 16;
    memwatch_watcher_t *w = NULL;
    REQUIRE(memwatch_watcher_new(&o, &w) == MEMWATCH_OK);
    REQUIRE(memwatch_watcher_set_value_store(w, name, 4u << 20) == MEMWATCH_OK);
    uint8_t *buf = map_pages(1, PROT_READ | PROT_WRITE);
    memset(buf, 0x11, 100);
    uint32_t id;
    REQUIRE(memwatch_watcher_watch(w, buf, 100, "big", NULL, &id) == MEMWATCH_OK);
    buf[42] = 0x99;
    memwatch_change_event_t *ev = NULL;
    size_t n = 0;
    REQUIRE(memwatch_watcher_check_changes(w, &ev, &n) == MEMWATCH_OK);
    CHECK_EQ(n, 1);
    if (n == 1) {
        CHECK(ev[0].new_value == NULL && ev[0].old_value == NULL);
        REQUIRE(ev[0].storage_key_old && ev[0].storage_key_new);
        /* Another client of the same store: the cache_* C names. */
        cache_t *c = cache_open(name);
        REQUIRE(c != NULL);
        uint8_t got[100];
        CHECK_EQ(cache_get(c, ev[0].storage_key_old, strlen(ev[0].storage_key_old), got, sizeof got), 100);
        CHECK(got[42] == 0x11 && got[0] == 0x11);
        CHECK_EQ(cache_get(c, ev[0].storage_key_new, strlen(ev[0].storage_key_new), got, sizeof got), 100);
        CHECK(got[42] == 0x99 && got[41] == 0x11);
        cache_close(c);
    }
    memwatch_events_free(ev, n);
    REQUIRE(memwatch_watcher_set_value_store(w, NULL, 0) == MEMWATCH_OK);
    memwatch_watcher_free(w);
    munmap(buf, page());
    CHECK_EQ(cache_unlink(name), CACHE_OK);
    /* Gone now: opening it says why by code, not only by message. */
    CHECK(cache_open(name) == NULL);
    CHECK_EQ(cache_last_error_code(), CACHE_ERR_NOT_FOUND);
    CHECK(cache_open("bad/name") == NULL);
    CHECK_EQ(cache_last_error_code(), CACHE_ERR_INVALID);
}

/* ---- the store under memwatch_store_*, the cache_* aliases, one error slot ---- */

static void t_store_names_and_aliases(void) {
    char name[64];
    snprintf(name, sizeof name, "mw-c-store-%d", (int)getpid());
    memwatch_store_t *s = memwatch_store_connect(name, 1u << 20, MEMWATCH_STORE_REFUSE);
    REQUIRE(s != NULL);
    CHECK_EQ(memwatch_store_put(s, "key", 3, "value", 5), MEMWATCH_OK);
    char got[16] = {0};
    CHECK_EQ(memwatch_store_get(s, "key", 3, got, sizeof got), 5);
    CHECK(memcmp(got, "value", 5) == 0);
    CHECK_EQ(memwatch_store_get(s, "key", 3, NULL, 0), 5); /* length only */
    CHECK_EQ(memwatch_store_contains(s, "key", 3), 1);
    CHECK_EQ(memwatch_store_try_put(s, "k2", 2, "v2", 2), MEMWATCH_OK);
    memwatch_store_stats_t st;
    CHECK_EQ(memwatch_store_stats(s, &st), MEMWATCH_OK);
    CHECK_EQ(st.entries, 2);
    CHECK_EQ(st.puts, 2);
    memwatch_store_key_stats_t ks;
    CHECK_EQ(memwatch_store_key_stats(s, "key", 3, &ks), MEMWATCH_OK);
    CHECK_EQ(ks.value_size, 5);
    CHECK_EQ(ks.access_count, 2);
    CHECK_EQ(memwatch_store_keys(s, NULL, 0), 4 + 3 + 4 + 2);

    /* A store failure: a memwatch_error_t, in the library's one slot. */
    CHECK_EQ(memwatch_store_get(s, "nope", 4, got, sizeof got), MEMWATCH_ERR_NOT_FOUND);
    CHECK_EQ(memwatch_last_error_code(), MEMWATCH_ERR_NOT_FOUND);
    CHECK(strstr(memwatch_last_error(), "not found") != NULL);
    CHECK_EQ(memwatch_store_delete(s, "nope", 4), MEMWATCH_ERR_NOT_FOUND);
    CHECK_EQ(memwatch_store_put(s, "", 0, "v", 1), MEMWATCH_ERR_INVALID_ARGUMENT);
    CHECK_EQ(memwatch_store_put(NULL, "k", 1, "v", 1), MEMWATCH_ERR_INVALID_ARGUMENT);
    CHECK(strstr(memwatch_last_error(), "NULL") != NULL);
    CHECK_EQ(memwatch_store_stats(s, NULL), MEMWATCH_ERR_INVALID_ARGUMENT);
    char big[2000];
    memset(big, 'k', sizeof big);
    CHECK_EQ(memwatch_store_put(s, big, sizeof big, "v", 1), MEMWATCH_ERR_KEY_TOO_LONG);
    CHECK(memwatch_store_connect(name, 1u << 20, 7) == NULL);
    CHECK_EQ(memwatch_last_error_code(), MEMWATCH_ERR_INVALID_ARGUMENT);

    /* The aliases: the same store through the seed's names and numbers. */
    cache_t *c = cache_open(name);
    REQUIRE(c != NULL);
    CHECK_EQ(cache_get(c, "k2", 2, got, sizeof got), 2);
    CHECK(memcmp(got, "v2", 2) == 0);
    CHECK_EQ(cache_get(c, "nope", 4, got, sizeof got), CACHE_ERR_NOT_FOUND);
    CHECK_EQ(cache_last_error_code(), CACHE_ERR_NOT_FOUND);
    CHECK_EQ(memwatch_last_error_code(), MEMWATCH_ERR_NOT_FOUND); /* one slot */
    CHECK(cache_last_error() == memwatch_last_error());
    CHECK_EQ(cache_put(c, big, sizeof big, "v", 1), CACHE_ERR_KEY_TOO_LONG);
    CHECK_EQ(cache_delete(c, "key", 3), CACHE_OK);
    CHECK_EQ(memwatch_store_contains(s, "key", 3), 0); /* same segment */
    cache_stats_t cst;
    CHECK_EQ(cache_stats(c, &cst), CACHE_OK);
    CHECK_EQ(cst.entries, 1);
    CHECK(strcmp(cache_version(), memwatch_version()) == 0);
    CHECK_EQ(cache_close(c), CACHE_OK);

    /* A watcher failure lands in the same slot the cache_* names read. */
    memwatch_watcher_t *w = new_watcher("poll");
    CHECK_EQ(memwatch_watcher_watch(w, NULL, 8, "null", NULL, NULL), MEMWATCH_ERR_INVALID_ARGUMENT);
    CHECK_EQ(cache_last_error_code(), CACHE_ERR_INVALID);
    CHECK(strcmp(cache_last_error(), memwatch_last_error()) == 0);
    memwatch_watcher_free(w);

    CHECK_EQ(memwatch_store_close(s), MEMWATCH_OK);
    CHECK_EQ(memwatch_store_close(NULL), MEMWATCH_OK);
    CHECK_EQ(memwatch_store_unlink(name), MEMWATCH_OK);
    CHECK_EQ(memwatch_store_unlink(name), MEMWATCH_ERR_NOT_FOUND);
    CHECK(memwatch_store_open(name) == NULL);
    CHECK_EQ(memwatch_last_error_code(), MEMWATCH_ERR_NOT_FOUND);
    CHECK_EQ(cache_unlink(name), CACHE_ERR_NOT_FOUND);
}

/* ---- watching the program's own globals -------------------------------------- */

/* Linker-provided bounds of the executable's writable data (.data + .bss). */
extern char __data_start[], _end[];
static volatile uint8_t g_marker;

/* Watches every global of this executable. With libmemwatch.a linked in,
   that range also holds memwatch's own statics, so the engine must keep
   working when the pages its signal handler touches are watched. */
static void t_watch_all_globals(void) {
    uintptr_t lo = (uintptr_t)__data_start, hi = (uintptr_t)_end;
    size_t len = hi - lo;
    memwatch_options_t o;
    memwatch_options_default(&o);
    o.backend = "protect";
    o.max_value_bytes = len;
    memwatch_watcher_t *w = NULL;
    REQUIRE(memwatch_watcher_new(&o, &w) == MEMWATCH_OK);
    uint32_t id = 0;
    REQUIRE(memwatch_watcher_watch(w, (void *)lo, len, "globals", NULL, &id) == MEMWATCH_OK);
    size_t off = (uintptr_t)&g_marker - lo;
    g_marker = 0x5a;
    memwatch_change_event_t *ev = NULL;
    size_t n = 0;
    REQUIRE(memwatch_watcher_check_changes(w, &ev, &n) == MEMWATCH_OK);
    /* Other globals change too (the harness's, libc's, memwatch's): find the
       marker in the region's last event, and its range in one of them. */
    const memwatch_change_event_t *last = NULL;
    int marker_range = 0;
    for (size_t i = 0; i < n; i++) {
        if (ev[i].region_id != id) continue;
        last = &ev[i];
        for (size_t r = 0; r < ev[i].changed_range_count; r++)
            if (ev[i].changed_ranges[r].offset <= off && off < ev[i].changed_ranges[r].offset + ev[i].changed_ranges[r].length)
                marker_range = 1;
    }
    REQUIRE(last != NULL);
    REQUIRE(last->new_value_len == len);
    CHECK_EQ(last->new_value[off], 0x5a);
    CHECK(marker_range);
    memwatch_events_free(ev, n);
    CHECK_EQ(memwatch_watcher_unwatch(w, id), 1);
    memwatch_watcher_free(w);
}

/* Watches the whole main heap ([heap] in /proc/self/maps) with backend
   protect: memwatch's own heap data and malloc's bookkeeping share those
   pages, and everything must keep working. */
static void t_watch_whole_heap_protect(void) {
    memwatch_options_t o;
    memwatch_options_default(&o);
    o.backend = "protect";
    memwatch_watcher_t *w = NULL;
    REQUIRE(memwatch_watcher_new(&o, &w) == MEMWATCH_OK);
    volatile uint8_t *marker = malloc(64);
    uint32_t id = 0;
    /* One watch/unwatch first so the engine's structures exist. */
    REQUIRE(memwatch_watcher_watch(w, (const void *)marker, 8, "warm", NULL, &id) == MEMWATCH_OK);
    CHECK_EQ(memwatch_watcher_unwatch(w, id), 1);
    FILE *f = fopen("/proc/self/maps", "r");
    REQUIRE(f != NULL);
    char line[512];
    uintptr_t lo = 0, hi = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "[heap]")) sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &lo, &hi);
    fclose(f);
    REQUIRE(lo != 0 && hi > lo && (uintptr_t)marker >= lo && (uintptr_t)marker < hi);
    REQUIRE(memwatch_watcher_watch(w, (const void *)lo, hi - lo, "heap", NULL, &id) == MEMWATCH_OK);
    size_t off = (uintptr_t)marker - lo;
    marker[0] = 0x5a;
    void *more[64];
    for (int i = 0; i < 64; i++) more[i] = malloc((size_t)(i + 1) * 24); /* malloc on watched pages */
    for (int i = 0; i < 64; i++) free(more[i]);
    memwatch_change_event_t *ev = NULL;
    size_t n = 0;
    REQUIRE(memwatch_watcher_check_changes(w, &ev, &n) == MEMWATCH_OK);
    int marker_seen = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ(ev[i].region_id, id);
        for (size_t r = 0; r < ev[i].changed_range_count; r++)
            if (ev[i].changed_ranges[r].offset <= off && off < ev[i].changed_ranges[r].offset + ev[i].changed_ranges[r].length)
                marker_seen = 1;
    }
    CHECK(n >= 1);
    CHECK(marker_seen);
    memwatch_events_free(ev, n);
    CHECK_EQ(memwatch_watcher_unwatch(w, id), 1);
    memwatch_watcher_free(w);
    free((void *)marker);
}

/* ---- recording into SQLite (memwatch_record_to) ------------------------------- */

/* Runs `sqlite3 DB SQL` and returns its output (static buffer). */
static const char *sqlite3_shell(const char *db, const char *sql) {
    static char out[4096];
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "sqlite3 '%s' \"%s\"", db, sql);
    FILE *f = popen(cmd, "r");
    if (!f) { perror("popen"); exit(2); }
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = 0;
    pclose(f);
    return out;
}

static void t_record_sqlite(void) {
    char dir[] = "/tmp/memwatch-c-record-XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    char db[256];
    snprintf(db, sizeof db, "%s/events.db", dir);
    memwatch_watcher_t *w = new_watcher("poll");
    uint8_t *buf = map_pages(1, PROT_READ | PROT_WRITE);
    memcpy(buf, "abcd", 4);
    uint32_t id = 0;
    REQUIRE(memwatch_watcher_watch(w, buf, 4, "it's \"c\"", "m'; DROP TABLE x; --", &id) == MEMWATCH_OK);

    /* Bad URLs and unreachable databases are errors with a message, *out NULL. */
    memwatch_recorder_t *r = (memwatch_recorder_t *)1;
    CHECK_EQ(memwatch_record_to(w, "mysql://localhost/x", &r), MEMWATCH_ERR_INVALID_ARGUMENT);
    CHECK(r == NULL);
    CHECK(strstr(memwatch_last_error(), "mysql") != NULL);
    CHECK_EQ(memwatch_record_to(w, NULL, &r), MEMWATCH_ERR_INVALID_ARGUMENT);
    CHECK_EQ(memwatch_record_to(w, "/nonexistent-memwatch-dir/x.db", &r), MEMWATCH_ERR_DATABASE);
    CHECK_EQ(memwatch_record_to(w, "postgresql://u@127.0.0.1:1/x", &r), MEMWATCH_ERR_DATABASE);
    CHECK(strstr(memwatch_last_error(), "PostgreSQL") != NULL);
    CHECK_EQ(memwatch_recorder_flush(NULL, 10), MEMWATCH_ERR_INVALID_ARGUMENT);
    memwatch_recorder_free(NULL);

    REQUIRE(memwatch_record_to(w, db, &r) == MEMWATCH_OK);
    REQUIRE(r != NULL);
    store(buf + 1, 'X');
    memwatch_change_event_t *ev = NULL;
    size_t n = 0;
    REQUIRE(memwatch_watcher_check_changes(w, &ev, &n) == MEMWATCH_OK);
    CHECK_EQ(n, 1);
    memwatch_events_free(ev, n);
    store(buf + 3, 0);
    REQUIRE(memwatch_watcher_check_changes(w, &ev, &n) == MEMWATCH_OK);
    CHECK_EQ(n, 1);
    memwatch_events_free(ev, n);
    CHECK_EQ(memwatch_recorder_flush(r, 10000), 1);
    memwatch_recorder_stats_t st;
    REQUIRE(memwatch_recorder_stats(r, &st) == MEMWATCH_OK);
    CHECK_EQ(st.written, 2);
    CHECK_EQ(st.dropped, 0);
    CHECK_EQ(st.queued, 0);
    CHECK_EQ(st.connected, 1);
    CHECK(st.recording_id != 0);
    const char *rows = sqlite3_shell(db,
        "SELECT hex(old_value), hex(new_value), changed_ranges, variable_name, metadata, adapter "
        "FROM memwatch_events ORDER BY seq");
    CHECK(strcmp(rows,
                 "61626364|61586364|[[1,1]]|it's \"c\"|m'; DROP TABLE x; --|1\n"
                 "61586364|61586300|[[3,1]]|it's \"c\"|m'; DROP TABLE x; --|1\n") == 0);
    if (g_failures) fprintf(stderr, "rows: %s\n", rows);
    memwatch_recorder_free(r);
    memwatch_watcher_free(w);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_EQ(system(cmd), 0);
}

/* ---- registry ------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    void (*fn)(void);
} test_t;

#define T(n) {#n, t_##n}
static const test_t TESTS[] = {
    T(one_byte_changed_protect),
    T(one_byte_changed_poll),
    T(one_byte_changed_writewatch),
    T(global_api),
    T(shutdown_delivers_pending),
    T(check_changes_start_wait_and_flush),
    T(unwatch_unknown_and_free_after),
    T(errors_protect),
    T(errors_poll),
    T(errors_writewatch),
    T(bad_options),
    T(abi_layout),
    T(prior_sigsegv_handler_siginfo),
    T(prior_sigsegv_handler_plain),
    T(prior_handler_siglongjmp_100k),
    T(unmapped_write_kills_child),
    T(readonly_write_kills_child),
    T(fork_child_writes),
    T(fork_child_frees_and_exits),
    T(fork_300_while_writing),
    T(replaced_mapping_protect),
    T(replaced_mapping_writewatch),
    T(replaced_mapping_poll),
    T(threads_protect),
    T(threads_poll),
    T(threads_writewatch),
    T(tiny_ring_burst),
    T(callback_delivery_protect),
    T(callback_delivery_poll),
    T(callback_delivery_writewatch),
    T(free_inside_callback_protect),
    T(free_inside_callback_poll),
    T(free_inside_callback_writewatch),
    T(callback_finalizer),
    T(callback_finalizer_close_inside),
    T(two_watchers_share_a_page),
    T(stats),
    T(syscall_write_efault_protect),
    T(syscall_read_reported_writewatch),
    T(late_handler_reassert),
    T(value_store_large_values),
    T(store_names_and_aliases),
    T(watch_all_globals),
    T(watch_whole_heap_protect),
    T(record_sqlite),
};
#define NTESTS (sizeof TESTS / sizeof TESTS[0])

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < NTESTS; i++) puts(TESTS[i].name);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "--check-registered") == 0) {
        int missing = 0;
        for (size_t i = 0; i < NTESTS; i++) {
            int found = 0;
            for (int a = 2; a < argc; a++) if (strcmp(argv[a], TESTS[i].name) == 0) found = 1;
            if (!found) { fprintf(stderr, "test %s is not registered with ctest\n", TESTS[i].name); missing++; }
        }
        printf("%zu tests, %d not registered\n", NTESTS, missing);
        return missing ? 1 : 0;
    }
    if (argc != 2) { fprintf(stderr, "usage: %s NAME | --list | --check-registered NAME...\n", argv[0]); return 2; }
    for (size_t i = 0; i < NTESTS; i++) {
        if (strcmp(argv[1], TESTS[i].name) == 0) {
            alarm(60); /* a hang fails the test instead of blocking CI */
            TESTS[i].fn();
            printf("%s %s\n", g_failures ? "FAIL" : "PASS", TESTS[i].name);
            return g_failures ? 1 : 0;
        }
    }
    fprintf(stderr, "no test named %s\n", argv[1]);
    return 2;
}
