/*
 * test_location: writer location through the C ABI (locate_writers).
 * Built with -g -O0 -fno-omit-frame-pointer; a stripped copy runs
 * `stripped` and must get module + offset, never a made-up name.
 *
 * usage: test_location NAME
 */
#define _GNU_SOURCE
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "memwatch.h"

#include "check.h"

static int ends_with(const char *s, const char *tail) {
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && strcmp(s + a - b, tail) == 0;
}

static uint8_t *map_page(void) {
    void *p = mmap(NULL, (size_t)sysconf(_SC_PAGESIZE), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE_OR_EXIT(p != MAP_FAILED);
    return p;
}

static memwatch_watcher_t *locating(uint32_t depth) {
    memwatch_options_t o;
    memwatch_options_default(&o);
    o.backend = "protect";
    o.locate_writers = 1;
    o.stack_depth = depth;
    memwatch_watcher_t *w = NULL;
    REQUIRE_OR_EXIT(memwatch_watcher_new(&o, &w) == MEMWATCH_OK);
    return w;
}

/* One event, located; the caller frees it. */
static memwatch_change_event_t *one_event(memwatch_watcher_t *w, size_t *n) {
    memwatch_change_event_t *ev = NULL;
    REQUIRE_OR_EXIT(memwatch_watcher_check_changes(w, &ev, n) == MEMWATCH_OK);
    REQUIRE_OR_EXIT(*n == 1);
    REQUIRE_OR_EXIT(ev[0].location != NULL);
    return ev;
}

static int frame_index(const memwatch_where_t *wh, const char *function) {
    for (uint32_t i = 0; i < wh->frame_count; i++)
        if (strcmp(wh->frames[i].function, function) == 0) return (int)i;
    fprintf(stderr, "%s not in the stack:\n", function);
    for (uint32_t i = 0; i < wh->frame_count; i++)
        fprintf(stderr, "  #%u %s %s:%u (%s+%#llx)\n", i, wh->frames[i].function,
                wh->frames[i].file, wh->frames[i].line, wh->frames[i].module,
                (unsigned long long)wh->frames[i].module_offset);
    return -1;
}

/* The writing statement and __LINE__ share a line. */
__attribute__((noinline)) static int inner_write(uint8_t *p, uint8_t v) {
    p[3] = v; return __LINE__;
}

__attribute__((noinline)) static int outer_call(uint8_t *p, uint8_t v, int *call_line) {
    int line = inner_write(p, v); *call_line = __LINE__;
    return line;
}

/* memcpy (a frameless libc routine) writes; the user frame is its caller. */
__attribute__((noinline)) static int copy_in(uint8_t *p, const uint8_t *src, volatile size_t n) {
    memcpy(p, src, n); return __LINE__;
}

static void t_line_and_stack(void) {
    memwatch_watcher_t *w = locating(8);
    uint8_t *p = map_page();
    uint32_t id = 0;
    REQUIRE(memwatch_watcher_watch(w, p, 64, "buf", NULL, &id) == MEMWATCH_OK);
    int call_line = 0;
    int line = outer_call(p, 0x5a, &call_line);
    size_t n = 0;
    memwatch_change_event_t *ev = one_event(w, &n);
    const memwatch_where_t *wh = ev[0].location;
    CHECK_EQ(ev[0].new_value[3], 0x5a);
    CHECK_EQ(ev[0].line, line);
    CHECK(strcmp(ev[0].function, "inner_write") == 0);
    CHECK(ends_with(ev[0].file, "test_location.c"));
    CHECK(ends_with(wh->module, "test_location") || ends_with(wh->module, "test_location_static"));
    CHECK_EQ(wh->frames[0].ip, ev[0].fault_ip);
    CHECK_EQ(wh->unattributed_faults, 0);
    int a = frame_index(wh, "inner_write"), b = frame_index(wh, "outer_call"),
        c = frame_index(wh, "t_line_and_stack");
    CHECK(a == 0 && b > a && c > b);
    if (b > 0) CHECK_EQ(wh->frames[b].line, call_line);
    memwatch_events_free(ev, n);
    memwatch_watcher_free(w);
}

static void t_memcpy_caller_is_the_user_frame(void) {
    memwatch_watcher_t *w = locating(8);
    uint8_t *p = map_page();
    uint32_t id = 0;
    REQUIRE(memwatch_watcher_watch(w, p, 64, "buf", NULL, &id) == MEMWATCH_OK);
    uint8_t src[24];
    for (int i = 0; i < 24; i++) src[i] = (uint8_t)(i + 1);
    int line = copy_in(p, src, sizeof src);
    size_t n = 0;
    memwatch_change_event_t *ev = one_event(w, &n);
    const memwatch_where_t *wh = ev[0].location;
    CHECK_EQ(ev[0].changed_ranges[0].length, 24);
    CHECK(strcmp(ev[0].function, "copy_in") == 0);
    CHECK_EQ(ev[0].line, line);
    /* The libc routine stays in the stack, below its caller. */
    CHECK(strstr(wh->frames[0].module, "libc") != NULL);
    int a = frame_index(wh, "copy_in"), b = frame_index(wh, "t_memcpy_caller_is_the_user_frame");
    CHECK(a > 0 && b > a);
    memwatch_events_free(ev, n);
    memwatch_watcher_free(w);
}

static void t_thread_name(void);

static uintptr_t g_inner_start;
static int g_resolver_calls;

static int resolver(uint64_t ip, memwatch_resolved_frame_t *out, void *ctx) {
    CHECK(ctx == &g_resolver_calls);
    g_resolver_calls++;
    /* Claims the writing function, as a JIT would claim its code. */
    if (ip >= g_inner_start && ip < g_inner_start + 64) {
        strcpy(out->function, "jit_inner");
        strcpy(out->file, "script.js");
        strcpy(out->module, "[jit]");
        out->line = 42;
        return 1;
    }
    return 0;
}

static void t_resolver_hook(void) {
    g_inner_start = (uintptr_t)&inner_write;
    REQUIRE(memwatch_register_resolver(resolver, &g_resolver_calls) == MEMWATCH_OK);
    memwatch_watcher_t *w = locating(8);
    uint8_t *p = map_page();
    uint32_t id = 0;
    REQUIRE(memwatch_watcher_watch(w, p, 64, "buf", NULL, &id) == MEMWATCH_OK);
    int call_line = 0;
    outer_call(p, 1, &call_line);
    size_t n = 0;
    memwatch_change_event_t *ev = one_event(w, &n);
    const memwatch_where_t *wh = ev[0].location;
    CHECK(strcmp(ev[0].function, "jit_inner") == 0);
    CHECK(strcmp(ev[0].file, "script.js") == 0);
    CHECK_EQ(ev[0].line, 42);
    CHECK(strcmp(wh->module, "[jit]") == 0);
    CHECK_EQ(g_resolver_calls, (int)wh->frame_count);
    /* Frames it declines are resolved by memwatch. */
    CHECK(frame_index(wh, "outer_call") == 1);
    memwatch_events_free(ev, n);
    /* Removed: memwatch resolves everything again. */
    REQUIRE(memwatch_register_resolver(NULL, NULL) == MEMWATCH_OK);
    outer_call(p + 8, 2, &call_line);
    ev = one_event(w, &n);
    CHECK(strcmp(ev[0].function, "inner_write") == 0);
    memwatch_events_free(ev, n);
    memwatch_watcher_free(w);
}

static int find_main_bias(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    *(uintptr_t *)data = info->dlpi_addr; /* the first entry is the program */
    return 1;
}

/* Run on the stripped copy: no symbols, no DWARF. */
static void t_stripped(void) {
    memwatch_watcher_t *w = locating(8);
    uint8_t *p = map_page();
    uint32_t id = 0;
    REQUIRE(memwatch_watcher_watch(w, p, 64, "buf", NULL, &id) == MEMWATCH_OK);
    int call_line = 0;
    outer_call(p, 7, &call_line);
    size_t n = 0;
    memwatch_change_event_t *ev = one_event(w, &n);
    const memwatch_where_t *wh = ev[0].location;
    uintptr_t bias = 0;
    dl_iterate_phdr(find_main_bias, &bias);
    char exe[4096] = {0};
    REQUIRE(readlink("/proc/self/exe", exe, sizeof exe - 1) > 0);
    CHECK(strcmp(wh->module, exe) == 0);
    CHECK_EQ(wh->module_offset, ev[0].fault_ip - bias);
    CHECK(ev[0].fault_ip >= (uintptr_t)&inner_write && ev[0].fault_ip < (uintptr_t)&inner_write + 64);
    /* Nothing made up: no function, file or line. */
    CHECK(strcmp(ev[0].function, "") == 0);
    CHECK(strcmp(ev[0].file, "") == 0);
    CHECK_EQ(ev[0].line, 0);
    CHECK(wh->frame_count >= 2);
    CHECK(strcmp(wh->frames[1].module, exe) == 0);
    memwatch_events_free(ev, n);
    memwatch_watcher_free(w);
}

static void t_bad_options(void) {
    memwatch_options_t o;
    memwatch_options_default(&o);
    memwatch_watcher_t *w = NULL;
    o.locate_writers = 1;
    o.stack_depth = 0;
    CHECK_EQ(memwatch_watcher_new(&o, &w), MEMWATCH_ERR_INVALID_ARGUMENT);
    CHECK(strstr(memwatch_last_error(), "stack_depth") != NULL);
    o.stack_depth = 8;
    o.backend = "poll";
    CHECK_EQ(memwatch_watcher_new(&o, &w), MEMWATCH_ERR_INVALID_ARGUMENT);
    CHECK(strstr(memwatch_last_error(), "protect") != NULL);
    o.backend = "auto";
    o.locate_writers = 2;
    CHECK_EQ(memwatch_watcher_new(&o, &w), MEMWATCH_ERR_INVALID_ARGUMENT);
    o.locate_writers = 1;
    REQUIRE(memwatch_watcher_new(&o, &w) == MEMWATCH_OK);
    memwatch_stats_t st;
    REQUIRE(memwatch_watcher_get_stats(w, &st) == MEMWATCH_OK);
    CHECK(strstr(st.backend_reason, "locate_writers") != NULL);
    memwatch_watcher_free(w);
}

static void *named_writer(void *arg) {
    pthread_setname_np(pthread_self(), "c-writer");
    int call_line = 0;
    *(int *)((uint8_t **)arg)[1] = outer_call(((uint8_t **)arg)[0], 3, &call_line);
    return NULL;
}

static void t_thread_name(void) {
    memwatch_watcher_t *w = locating(8);
    uint8_t *p = map_page();
    uint32_t id = 0;
    REQUIRE(memwatch_watcher_watch(w, p, 64, "buf", NULL, &id) == MEMWATCH_OK);
    int line = 0;
    void *args[2] = {p, &line};
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, named_writer, args) == 0);
    pthread_join(t, NULL);
    size_t n = 0;
    memwatch_change_event_t *ev = one_event(w, &n);
    CHECK(strcmp(ev[0].location->thread_name, "c-writer") == 0);
    CHECK_EQ(ev[0].line, line);
    memwatch_events_free(ev, n);
    memwatch_watcher_free(w);
}

typedef struct {
    const char *name;
    void (*fn)(void);
} test_t;
#define T(n) {#n, t_##n}
static const test_t TESTS[] = {
    T(line_and_stack), T(memcpy_caller_is_the_user_frame), T(resolver_hook),
    T(stripped), T(bad_options), T(thread_name),
};

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s NAME\n", argv[0]); return 2; }
    for (size_t i = 0; i < sizeof TESTS / sizeof TESTS[0]; i++) {
        if (strcmp(argv[1], TESTS[i].name) == 0) {
            alarm(60);
            TESTS[i].fn();
            printf("%s %s\n", g_failures ? "FAIL" : "PASS", TESTS[i].name);
            return g_failures ? 1 : 0;
        }
    }
    fprintf(stderr, "no test named %s\n", argv[1]);
    return 2;
}
