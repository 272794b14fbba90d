// memglass.hpp: a C++ producer (forked child) and a C++ observer. Prints
// "N passed, N failed".
#include <memglass.hpp>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <sys/wait.h>
#include <unistd.h>

static int passed, failed;
#define CHECK(c)                                                                    \
    do {                                                                            \
        if (c) {                                                                    \
            passed++;                                                               \
        } else {                                                                    \
            failed++;                                                               \
            std::fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #c); \
        }                                                                           \
    } while (0)

struct Position {
    std::atomic<uint64_t> fills;
    int64_t quantity;
    double avg_price;
    char symbol[8];
    int16_t levels[3];
};

static void produce(int up, int down) {
    memglass::producer p("cppglass");
    auto t = p.register_type<Position>(
        "Position", {MEMGLASS_FIELD(Position, fills, MEMGLASS_COUNTER, nullptr, "fills seen"),
                     MEMGLASS_FIELD(Position, quantity), MEMGLASS_FIELD(Position, avg_price, MEMGLASS_GAUGE, "USD"),
                     MEMGLASS_FIELD(Position, symbol), MEMGLASS_FIELD(Position, levels)});
    auto pos = p.create<Position>(t, "AAPL");
    pos->fills.store(2);
    pos->quantity = -300;
    pos->avg_price = 189.25;
    std::strcpy(pos->symbol, "AAPL");
    try {
        p.create<Position>(t, "AAPL");
        _exit(20);
    } catch (const memglass::error &e) {
        if (e.code != MEMGLASS_ERR_EXISTS) _exit(21);
    }
    char c = 'r';
    if (write(up, &c, 1) != 1) _exit(22);
    if (read(down, &c, 1) != 1) _exit(23);
    {
        auto tmp = p.create<Position>(t, "TMP");
        tmp->quantity = 1;
        if (write(up, &c, 1) != 1) _exit(24);
        if (read(down, &c, 1) != 1) _exit(25);
    }  // ~object destroys TMP
    if (write(up, &c, 1) != 1) _exit(26);
    if (read(down, &c, 1) != 1) _exit(27);
}

int main() {
    int up[2], down[2];
    if (pipe(up) || pipe(down)) return 2;
    pid_t pid = fork();
    if (pid == 0) {
        try {
            produce(up[1], down[0]);
        } catch (const std::exception &e) {
            std::fprintf(stderr, "producer: %s\n", e.what());
            _exit(30);
        }
        _exit(0);
    }
    char c;
    CHECK(read(up[0], &c, 1) == 1);
    memglass::observer o("cppglass");
    CHECK(o.object_count() == 1);
    CHECK(o.read_i64("AAPL", "fills") == 2);
    CHECK(o.read_i64("AAPL", "quantity") == -300);
    CHECK(o.read_f64("AAPL", "avg_price") == 189.25);
    CHECK(o.read_str("AAPL", "symbol") == "AAPL");
    try {
        o.read_i64("AAPL", "nope");
        CHECK(false);
    } catch (const memglass::error &e) {
        CHECK(e.code == MEMGLASS_ERR_NOT_FOUND);
    }
    try {
        memglass::observer bad("no/such");
        CHECK(false);
    } catch (const memglass::error &e) {
        CHECK(e.code == MEMGLASS_ERR_INVALID_ARGUMENT);
    }
    CHECK(write(down[1], "g", 1) == 1);
    CHECK(read(up[0], &c, 1) == 1);
    CHECK(o.refresh());
    CHECK(o.object_count() == 2);
    CHECK(o.read_i64("TMP", "quantity") == 1);
    CHECK(write(down[1], "g", 1) == 1);
    CHECK(read(up[0], &c, 1) == 1);  // TMP destroyed by RAII
    CHECK(o.refresh());
    CHECK(o.object_count() == 1);
    CHECK(o.liveness() == 0);
    CHECK(write(down[1], "g", 1) == 1);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(o.liveness() == 2);  // ~producer shut the session down
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
