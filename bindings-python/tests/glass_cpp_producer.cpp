// A C++ producer (memglass.hpp) for test_glass.py's C++ -> Python test.
// argv[1]: session. Prints "ready", then answers each stdin command with "ok":
// "trade" (fills +1, quote.bid +1 and quote.ask +1 under the seqlock,
// quantity = 42), "quit" (destroys the object, shuts the session down).
#include <memglass.hpp>

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

struct Quote {
    double bid;
    double ask;
};

struct Position {
    std::atomic<uint64_t> fills;
    int64_t quantity;
    double avg_price;
    char symbol[8];
    int16_t levels[3];
    bool open;
    float ratio;
    uint64_t quote_seq;  // seqlock sequence word of `quote`
    Quote quote;
};

static memglass_field_t seqlock_field(const char *path, size_t offset, size_t guard,
                                      const char *unit) {
    memglass_field_t f = memglass::field<double>(path, offset, MEMGLASS_GAUGE, unit);
    f.atomicity = MEMGLASS_SEQLOCK;
    f.guard_offset = static_cast<uint32_t>(guard);
    return f;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    try {
        memglass::producer p(argv[1]);
        const size_t g = offsetof(Position, quote_seq);
        auto t = p.register_type<Position>(
            "Position",
            {MEMGLASS_FIELD(Position, fills, MEMGLASS_COUNTER, nullptr, "fills seen"),
             MEMGLASS_FIELD(Position, quantity), MEMGLASS_FIELD(Position, avg_price, MEMGLASS_GAUGE, "USD"),
             MEMGLASS_FIELD(Position, symbol), MEMGLASS_FIELD(Position, levels),
             MEMGLASS_FIELD(Position, open), MEMGLASS_FIELD(Position, ratio),
             seqlock_field("quote.bid", offsetof(Position, quote) + offsetof(Quote, bid), g, "USD"),
             seqlock_field("quote.ask", offsetof(Position, quote) + offsetof(Quote, ask), g, "USD")});
        auto pos = p.create<Position>(t, "AAPL");
        pos->fills.store(2);
        pos->quantity = -300;
        pos->avg_price = 189.25;
        std::strcpy(pos->symbol, "AAPL");
        pos->levels[0] = 1;
        pos->levels[1] = -2;
        pos->levels[2] = 300;
        pos->open = true;
        pos->ratio = 0.75f;
        Quote q{189.5, 190.0};
        memglass::check(memglass_seqlock_write(&pos->quote_seq, &pos->quote, &q, sizeof q));
        std::cout << "ready" << std::endl;
        std::string line;
        while (std::getline(std::cin, line)) {
            if (line == "quit") break;
            if (line == "trade") {
                pos->fills.fetch_add(1);
                q.bid += 1.0;
                q.ask += 1.0;
                memglass::check(memglass_seqlock_write(&pos->quote_seq, &pos->quote, &q, sizeof q));
                pos->quantity = 42;
            }
            std::cout << "ok" << std::endl;
        }
    } catch (const memglass::error &e) {
        std::fprintf(stderr, "producer: %s (%d)\n", e.what(), e.code);
        return 1;
    }
    return 0;
}
