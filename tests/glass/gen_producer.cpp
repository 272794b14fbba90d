// A C++ producer whose layout comes from memglass-gen's output.
#include "gen_sample_memglass.hpp"

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    memglass::producer p(argv[1]);
    auto t = memglass_register_Order(p);
    auto o = p.create<Order>(t, "ORD");
    o->sent.store(9);
    o->bid = {10.5, 300};
    o->ask = {10.75, -2};
    std::strcpy(o->symbol, "IBM");
    o->history[0] = 1;
    o->history[1] = -2;
    o->history[2] = 3;
    o->live = true;
    std::printf("ready\n");
    std::fflush(stdout);
    std::string line;
    while (std::getline(std::cin, line) && line != "quit") {
    }
    return 0;
}
