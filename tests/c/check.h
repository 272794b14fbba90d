/*
 * check.h: the tiny harness the C test programs share (each test runs in its
 * own process; main() prints PASS/FAIL from g_failures).
 *
 *   CHECK(cond)          count a failure, go on
 *   CHECK_EQ(a, b)       the same, printing both values
 *   REQUIRE(cond)        count a failure and return from the (void) test:
 *                        for preconditions the rest of the test depends on
 *   REQUIRE_OR_EXIT(cond) the same from a helper that returns a value: exit(1)
 * REQUIRE and REQUIRE_OR_EXIT print memwatch's last error.
 */
#ifndef MEMWATCH_TEST_CHECK_H
#define MEMWATCH_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include "memwatch.h"

static int g_failures;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            g_failures++;                                                            \
        }                                                                            \
    } while (0)

#define CHECK_EQ(a, b)                                                                     \
    do {                                                                                   \
        long long _a = (long long)(a), _b = (long long)(b);                                \
        if (_a != _b) {                                                                    \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld != %lld)\n", __FILE__, \
                    __LINE__, #a, #b, _a, _b);                                             \
            g_failures++;                                                                  \
        }                                                                                  \
    } while (0)

#define REQUIRE_REPORT(cond)                                                                \
    fprintf(stderr, "%s:%d: REQUIRE failed: %s (last error: %d %s)\n", __FILE__, __LINE__, \
            #cond, memwatch_last_error_code(), memwatch_last_error())

#define REQUIRE(cond)                \
    do {                             \
        if (!(cond)) {               \
            REQUIRE_REPORT(cond);    \
            g_failures++;            \
            return;                  \
        }                            \
    } while (0)

#define REQUIRE_OR_EXIT(cond)        \
    do {                             \
        if (!(cond)) {               \
            REQUIRE_REPORT(cond);    \
            exit(1);                 \
        }                            \
    } while (0)

#endif
