/* C glue of the Go binding; see memwatch_go.h. */
#include "memwatch_go.h"
#include "_cgo_export.h"

/* Runs on the watcher's delivery thread (a thread Go did not create): cgo
 * attaches it to the Go runtime for the duration of the call. */
static void memwatch_go_trampoline(const memwatch_change_event_t *event, void *ctx) {
    memwatchGoDeliver((memwatch_change_event_t *)event, (uintptr_t)ctx);
}

int memwatch_go_set_callback(memwatch_watcher_t *w, uintptr_t handle) {
    /* The handle is an integer key into the Go registry, not a pointer. */
    return memwatch_watcher_set_callback(w, memwatch_go_trampoline, (void *)handle);
}

int memwatch_go_clear_callback(memwatch_watcher_t *w) {
    return memwatch_watcher_set_callback(w, NULL, NULL);
}
