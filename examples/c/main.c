/*
 * memwatch C example: watch a buffer, change one byte, print the event.
 *
 * Build against an installed memwatch:
 *   cmake -S . -B build -DCMAKE_PREFIX_PATH=/path/to/prefix && cmake --build build && ./build/memwatch_example_c
 * or
 *   cc main.c $(pkg-config --cflags --libs memwatch) -o example && ./example
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

#include <memwatch.h>

static uint8_t data[100];
static int changes_seen;

/* Runs on memwatch's delivery thread, once per change. */
static void handle_change(const memwatch_change_event_t *e, void *user_ctx) {
    (void)user_ctx;
    changes_seen++;
    printf("%s changed (region %" PRIu32 ", %zu bytes, seq %" PRIu64 ")\n", e->variable_name, e->region_id,
           e->how_big, e->seq);
    for (size_t i = 0; i < e->changed_range_count; i++) {
        size_t off = e->changed_ranges[i].offset;
        printf("  bytes [%zu, %zu): old %02x -> new %02x\n", off, off + e->changed_ranges[i].length,
               e->old_value ? e->old_value[off] : 0, e->new_value ? e->new_value[off] : 0);
    }
    if (e->thread_id) printf("  written by thread %" PRIu32 " at ip 0x%" PRIx64 "\n", e->thread_id, e->fault_ip);
    if (e->metadata) printf("  metadata: %s\n", e->metadata);
}

int main(void) {
    if (memwatch_init() != MEMWATCH_OK) {
        fprintf(stderr, "memwatch_init: %s\n", memwatch_last_error());
        return 1;
    }
    uint32_t id = memwatch_watch((uint64_t)(uintptr_t)data, sizeof data, "buffer", "example");
    if (id == 0) {
        fprintf(stderr, "memwatch_watch: %s\n", memwatch_last_error());
        return 1;
    }
    memwatch_set_callback(handle_change, NULL);

    data[0] = 42; /* detected */

    /* Deliver now instead of after the writable window: check_changes waits
       until the callback has seen every change made before it. */
    memwatch_change_event_t *events = NULL;
    size_t count = 0;
    if (memwatch_check_changes(&events, &count) != MEMWATCH_OK) {
        fprintf(stderr, "memwatch_check_changes: %s\n", memwatch_last_error());
        return 1;
    }
    memwatch_events_free(events, count);

    memwatch_stats_t st;
    memwatch_get_stats(&st);
    printf("backend %s: %" PRIu64 " change event(s)\n", st.backend, st.events);

    memwatch_unwatch(id);
    memwatch_shutdown();
    return changes_seen == 1 ? 0 : 1;
}
