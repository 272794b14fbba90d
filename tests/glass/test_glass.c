/* memglass through the C ABI: a C producer (forked child) and a C observer
 * (the parent) in different processes. Prints "N passed, N failed". */
#define _GNU_SOURCE
#include <memglass.h>
#include <memwatch.h>

#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int passed, failed;
#define CHECK(c)                                                                        \
    do {                                                                                \
        if (c) {                                                                        \
            passed++;                                                                   \
        } else {                                                                        \
            failed++;                                                                   \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: %s\n", __FILE__, __LINE__, #c,    \
                    memwatch_last_error());                                             \
        }                                                                               \
    } while (0)

typedef struct {
    double bid, ask;
} quote_t;

typedef struct {
    uint64_t orders;
    uint64_t qseq; /* seqlock word guarding q */
    quote_t q;
    int32_t level;
    char symbol[8];
} book_t;

static const memglass_field_t FIELDS[] = {
    {"orders", offsetof(book_t, orders), 0, MEMGLASS_U64, MEMGLASS_ATOMIC, MEMGLASS_COUNTER, 0, 0, NULL, "orders seen"},
    {"quote.bid", offsetof(book_t, q.bid), 0, MEMGLASS_F64, MEMGLASS_SEQLOCK, MEMGLASS_GAUGE, 0, offsetof(book_t, qseq), "USD", NULL},
    {"quote.ask", offsetof(book_t, q.ask), 0, MEMGLASS_F64, MEMGLASS_SEQLOCK, MEMGLASS_GAUGE, 0, offsetof(book_t, qseq), "USD", NULL},
    {"level", offsetof(book_t, level), 0, MEMGLASS_I32, MEMGLASS_PLAIN, MEMGLASS_GAUGE, 0, 0, NULL, NULL},
    {"symbol", offsetof(book_t, symbol), 8, MEMGLASS_CHAR, MEMGLASS_PLAIN, MEMGLASS_DISCRETE, 0, 0, NULL, NULL},
};

static void producer(int ready_fd, int go_fd) {
    memglass_producer_t *p;
    if (memglass_producer_init("cglass", NULL, &p) != 0) _exit(10);
    uint32_t ti;
    if (memglass_register_type(p, "book_t", sizeof(book_t), _Alignof(book_t), FIELDS, 5, &ti) != 0) _exit(11);
    void *data;
    memglass_object_id_t id;
    if (memglass_create(p, ti, "IBM", 1, &data, &id) != 0) _exit(12);
    book_t *b = data;
    __atomic_store_n(&b->orders, 5, __ATOMIC_RELEASE);
    quote_t q = {10.25, 10.5};
    memglass_seqlock_write(&b->qseq, &b->q, &q, sizeof q);
    b->level = -3;
    strcpy(b->symbol, "IBM");
    char c = 'r';
    if (write(ready_fd, &c, 1) != 1) _exit(13);
    /* second step: update, then wait to be killed */
    if (read(go_fd, &c, 1) != 1) _exit(14);
    __atomic_fetch_add(&b->orders, 1, __ATOMIC_RELEASE);
    q.bid = 11.0;
    memglass_seqlock_write(&b->qseq, &b->q, &q, sizeof q);
    if (write(ready_fd, &c, 1) != 1) _exit(15);
    for (;;) pause();
}

int main(void) {
    int up[2], down[2];
    if (pipe(up) || pipe(down)) return 2;
    pid_t pid = fork();
    if (pid == 0) {
        producer(up[1], down[0]);
        _exit(0);
    }
    char c;
    CHECK(read(up[0], &c, 1) == 1);
    memglass_observer_t *o = NULL;
    CHECK(memglass_observer_connect("cglass", NULL, &o) == 0);
    if (!o) return 1;
    CHECK(memglass_object_count(o) == 1);
    CHECK(memglass_liveness(o) == 0);
    int64_t i = 0;
    double d = 0;
    char s[16];
    CHECK(memglass_read_i64(o, "IBM", "orders", &i) == 0 && i == 5);
    CHECK(memglass_read_f64(o, "IBM", "quote.bid", &d) == 0 && d == 10.25);
    CHECK(memglass_read_f64(o, "IBM", "quote.ask", &d) == 0 && d == 10.5);
    CHECK(memglass_read_i64(o, "IBM", "level", &i) == 0 && i == -3);
    CHECK(memglass_read_str(o, "IBM", "symbol", s, sizeof s) == 3 && strcmp(s, "IBM") == 0);
    /* errors in C idiom: codes + message */
    CHECK(memglass_read_i64(o, "IBM", "nope", &i) == MEMGLASS_ERR_NOT_FOUND);
    CHECK(strstr(memwatch_last_error(), "nope") != NULL);
    CHECK(memglass_read_i64(o, "XYZ", "orders", &i) == MEMGLASS_ERR_NOT_FOUND);
    CHECK(memglass_read_i64(o, "IBM", "quote.bid", &i) == MEMGLASS_ERR_TYPE);
    CHECK(memglass_read_str(o, "IBM", "symbol", s, 2) == MEMGLASS_ERR_TYPE);
    CHECK(memglass_read_f64(o, "IBM", "symbol", &d) == MEMGLASS_ERR_TYPE);
    memglass_observer_t *o2 = NULL;
    CHECK(memglass_observer_connect("bad/name", NULL, &o2) == MEMGLASS_ERR_INVALID_ARGUMENT);
    CHECK(memglass_observer_connect("missing", NULL, &o2) == MEMGLASS_ERR_NOT_FOUND);
    memglass_producer_t *p2 = NULL;
    CHECK(memglass_producer_init("cglass", NULL, &p2) == MEMGLASS_ERR_EXISTS);
    CHECK(memglass_read_i64(NULL, "IBM", "orders", &i) == MEMGLASS_ERR_INVALID_ARGUMENT);
    /* live updates */
    CHECK(write(down[1], "g", 1) == 1);
    CHECK(read(up[0], &c, 1) == 1);
    CHECK(memglass_read_i64(o, "IBM", "orders", &i) == 0 && i == 6);
    CHECK(memglass_read_f64(o, "IBM", "quote.bid", &d) == 0 && d == 11.0);
    /* SIGKILL: dead within 1 s */
    kill(pid, SIGKILL);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int dead = 0;
    for (int k = 0; k < 200 && !dead; k++) {
        dead = memglass_liveness(o) == 2;
        if (!dead) usleep(5000);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    CHECK(dead && secs < 1.0);
    waitpid(pid, NULL, 0);
    CHECK(memglass_read_i64(o, "IBM", "orders", &i) == 0 && i == 6);
    memglass_observer_close(o);
    /* the dead session is replaced by a new producer */
    CHECK(memglass_producer_init("cglass", NULL, &p2) == 0);
    CHECK(memglass_producer_free(p2) == 0);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
