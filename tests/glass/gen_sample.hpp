// Sample input of memglass-gen (tools/memglass-gen), used by test_gen.py.
#pragma once
#include <atomic>
#include <cstdint>

struct Level {
    double price;
    int32_t size;
};

struct NotObserved {
    int x;
};

struct [[memglass::observe]] Order {
    // @counter orders sent
    std::atomic<uint64_t> sent;
    // @unit:USD best bid
    Level bid;
    Level ask;
    char symbol[8];
    int16_t history[3];
    bool live;
    // @skip
    void *scratch;
};
