/* c_example.c: the C API in a few lines (built and run by run.sh). */
#include <stdio.h>
#include <string.h>
#include "memwatch_store.h"
int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "memstream-c-example";
    cache_t *c = cache_connect(name, 1 << 20, CACHE_POLICY_REFUSE);
    if (!c) { fprintf(stderr, "%s\n", cache_last_error()); return 1; }
    if (cache_put(c, "foo", 3, "bar", 3) != CACHE_OK) return 2;
    char buf[16]; int64_t n = cache_get(c, "foo", 3, buf, sizeof buf);
    cache_stats_t st; cache_stats(c, &st);
    printf("got %.*s (%lld), entries=%llu hits=%llu\n", (int)n, buf, (long long)n, (unsigned long long)st.entries, (unsigned long long)st.hits);
    cache_close(c); cache_unlink(name);
    return n == 3 ? 0 : 3;
}
