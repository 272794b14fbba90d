package io.memwatch;

import static io.memwatch.TestSupport.assertOneByteEvent;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * HotSpot uses SIGSEGV itself: implicit null checks in interpreted and JIT-compiled code, stack
 * banging and guard pages for StackOverflowError. With the protect backend's SIGSEGV handler
 * installed, those faults must still reach the JVM, and memwatch must still see exactly its own.
 * The suite runs once without and once with libjsig preloaded (see pom.xml), and the JVM-fault
 * tests run with and without writer location (AsyncGetCallTrace in memwatch's handler).
 */
class RuntimeFaultsTest {
    static final class Box {
        int v;
    }

    /** A field load: the JVM's null check here is a SIGSEGV on address 8, not a compare. */
    static int deref(Box b) {
        return b.v;
    }

    static int recurse(int n) {
        return recurse(n + 1) + 1;
    }

    static MemoryWatcher protect(boolean locate) {
        return new MemoryWatcher(new WatcherOptions().backend(Backend.PROTECT).locateWriters(locate));
    }

    @ParameterizedTest(name = "locateWriters={0}")
    @ValueSource(booleans = {false, true})
    void hundredThousandNullPointerExceptionsInAHotLoopWithProtectActive(boolean locate) {
        try (MemoryWatcher w = protect(locate)) {
            assertEquals(Backend.PROTECT, w.getStats().getBackend());
            ByteBuffer buf = MemoryWatcher.allocatePageAligned(MemoryWatcher.pageSize());
            int id = w.watch(buf.slice(0, 64), "hot");
            long faultsBefore = w.getStats().getFaults();
            Box box = new Box();
            box.v = 1;
            int npes = 0;
            long sum = 0;
            int rounds = 0;
            byte[] expected = new byte[64];
            for (int i = 0; i < 100_000; i++) {
                Box b = (i & 1) == 0 ? null : box;
                try {
                    sum += deref(b);
                } catch (NullPointerException e) {
                    npes++;
                }
                if (i % 10_000 == 9_999) {
                    byte[] old = expected.clone();
                    expected[rounds] = (byte) (0x40 + rounds);
                    int line = new Throwable().getStackTrace()[0].getLineNumber() + 1;
                    buf.put(rounds, expected[rounds]);
                    List<ChangeEvent> events = w.checkChanges();
                    assertEquals(1, events.size(), "round " + rounds + ": " + events);
                    assertOneByteEvent(events.get(0), id, "hot", rounds, old, expected.clone());
                    if (rounds == 0) {
                        // The first write to the page faults; later ones may find it left open by
                        // the engine's hot-page heuristic and be polled (no writer thread then).
                        assertEquals(TestSupport.currentTid(), events.get(0).getThreadId().getAsInt(), "writer tid");
                        Where wh = events.get(0).where();
                        assertEquals(locate ? line : 0, wh.line(), wh.stack().toString());
                        assertEquals(locate ? RuntimeFaultsTest.class.getName()
                                + ".hundredThousandNullPointerExceptionsInAHotLoopWithProtectActive" : "", wh.function());
                    }
                    rounds++;
                }
            }
            assertEquals(50_000, npes);
            assertEquals(50_000, sum);
            assertEquals(10, rounds);
            // memwatch counted only faults on its page (at most a few per round, by its hot-page
            // heuristics), not the JVM's 50 000 null-check faults, which it forwarded.
            long ours = w.getStats().getFaults() - faultsBefore;
            assertTrue(ours >= 1 && ours <= 100, "memwatch faults " + ours);
            assertEquals(List.of(), w.checkChanges());
        }
    }

    @ParameterizedTest(name = "locateWriters={0}")
    @ValueSource(booleans = {false, true})
    void nullPointerExceptionsOnAnotherThreadWhileWritesAreWatched(boolean locate) throws Exception {
        try (MemoryWatcher w = protect(locate)) {
            ByteBuffer buf = MemoryWatcher.allocatePageAligned(MemoryWatcher.pageSize());
            int id = w.watch(buf.slice(0, 256), "shared");
            AtomicBoolean stop = new AtomicBoolean();
            AtomicLong npes = new AtomicLong();
            Thread thrower = new Thread(() -> {
                Box box = new Box();
                long i = 0;
                while (!stop.get()) {
                    try {
                        deref((i++ & 3) == 0 ? null : box);
                    } catch (NullPointerException e) {
                        npes.incrementAndGet();
                    }
                }
            }, "npe-thrower");
            thrower.start();
            byte[] expected = new byte[256];
            for (int round = 0; round < 200; round++) {
                byte[] old = expected.clone();
                int off = round % 256;
                expected[off] = (byte) (expected[off] + 1);
                buf.put(off, expected[off]);
                List<ChangeEvent> events = w.checkChanges();
                assertEquals(1, events.size(), "round " + round);
                assertOneByteEvent(events.get(0), id, "shared", off, old, expected.clone());
            }
            stop.set(true);
            thrower.join();
            assertTrue(npes.get() > 0, "the other thread threw NullPointerExceptions");
        }
    }

    @ParameterizedTest(name = "locateWriters={0}")
    @ValueSource(booleans = {false, true})
    void stackOverflowErrorsWithProtectActive(boolean locate) {
        try (MemoryWatcher w = protect(locate)) {
            ByteBuffer buf = MemoryWatcher.allocatePageAligned(64);
            int id = w.watch(buf, "deep");
            byte[] expected = new byte[64];
            for (int round = 0; round < 10; round++) {
                boolean overflowed = false;
                try {
                    recurse(0);
                } catch (StackOverflowError e) {
                    overflowed = true;
                }
                assertTrue(overflowed);
                byte[] old = expected.clone();
                expected[round] = (byte) 0x7f;
                buf.put(round, (byte) 0x7f);
                List<ChangeEvent> events = w.checkChanges();
                assertEquals(1, events.size());
                assertOneByteEvent(events.get(0), id, "deep", round, old, expected.clone());
            }
        }
    }
}
