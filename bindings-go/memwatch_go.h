/* C glue of the Go binding: the callback trampoline that hands events to Go.
 * The watcher's Go state is identified by an integer handle carried in the
 * callback's user_ctx; no Go pointer is ever stored on the C side. */
#ifndef MEMWATCH_GO_H
#define MEMWATCH_GO_H

#include <stdint.h>
#include "memwatch.h"

/* Installs the Go trampoline as w's callback, with handle as its context. */
int memwatch_go_set_callback(memwatch_watcher_t *w, uintptr_t handle);

/* Removes w's callback: events go to check_changes again. */
int memwatch_go_clear_callback(memwatch_watcher_t *w);

#endif
