package io.memwatch;

import static io.memwatch.TestSupport.assertOneByteEvent;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** Delivery to a Java callback on the watcher's daemon thread. */
@Timeout(60)
class CallbackTest {
    record Seen(ChangeEvent event, String thread, boolean daemon) {
    }

    @ParameterizedTest
    @EnumSource(value = Backend.class, names = {"PROTECT", "WRITEWATCH", "POLL"})
    void checkChangesWaitsUntilTheCallbackGotEveryEvent(Backend backend) {
        try (MemoryWatcher w = TestBackends.open(backend)) {
            ByteBuffer buf = MemoryWatcher.allocatePageAligned(32);
            byte[] array = new byte[8];
            int bufId = w.watch(buf, "buf", "direct");
            int arrayId = w.watch(array, "array", "heap");
            List<Seen> seen = new CopyOnWriteArrayList<>();
            w.setCallback(e -> seen.add(new Seen(e, Thread.currentThread().getName(), Thread.currentThread().isDaemon())));
            buf.put(5, (byte) 9);
            array[2] = 7;
            assertEquals(List.of(), w.checkChanges(), "with a callback, checkChanges returns nothing");
            assertEquals(2, seen.size(), seen.toString());
            for (Seen s : seen) {
                assertTrue(s.thread().startsWith("memwatch-delivery-"), s.thread());
                assertTrue(s.daemon(), "delivery thread is a daemon");
                if (s.event().getRegionId() == bufId) {
                    byte[] old = new byte[32];
                    byte[] now = old.clone();
                    now[5] = 9;
                    assertOneByteEvent(s.event(), bufId, "buf", 5, old, now);
                    assertEquals("direct", s.event().getMetadata());
                } else {
                    assertOneByteEvent(s.event(), arrayId, "array", 2, new byte[8], new byte[] {0, 0, 7, 0, 0, 0, 0, 0});
                    assertEquals("heap", s.event().getMetadata());
                    assertFalse(s.event().getThreadId().isPresent(), "byte[] events have no writer thread");
                }
                assertEquals(4, s.event().getAdapterId(), "Java adapter id");
            }
            assertEquals(2, w.getStats().getEvents());
            assertEquals(0, w.getStats().getPendingEvents());
        }
    }

    private static java.util.Set<String> deliveryThreads() {
        java.util.Set<String> names = new java.util.HashSet<>();
        for (Thread t : Thread.getAllStackTraces().keySet()) {
            if (t.getName().startsWith("memwatch-delivery-")) {
                assertTrue(t.isDaemon(), t.getName() + " is a daemon");
                names.add(t.getName());
            }
        }
        return names;
    }

    @Test
    void theDeliveryThreadIsAnAttachedDaemonUntilClose() {
        java.util.Set<String> before = deliveryThreads();
        MemoryWatcher w = new MemoryWatcher(Backend.POLL);
        java.util.Set<String> during = deliveryThreads();
        during.removeAll(before);
        assertEquals(1, during.size(), "one delivery thread per watcher, visible to Java: " + during);
        w.close();
        java.util.Set<String> after = deliveryThreads();
        assertFalse(after.contains(during.iterator().next()), "detached (gone) after close: " + after);
    }

    @Test
    void eventsArriveWithoutCheckChanges() throws Exception {
        try (MemoryWatcher w = new MemoryWatcher(new WatcherOptions().backend(Backend.PROTECT)
                .pollInterval(java.time.Duration.ofMillis(20)))) {
            ByteBuffer buf = MemoryWatcher.allocatePageAligned(16);
            byte[] array = new byte[4];
            w.watch(buf, "buf");
            w.watch(array, "array");
            CountDownLatch two = new CountDownLatch(2);
            w.setCallback(e -> two.countDown());
            buf.put(0, (byte) 1);
            array[0] = 1;
            // The delivery thread finds both on its own (writable window / poll interval).
            assertTrue(two.await(30, TimeUnit.SECONDS), "both events delivered without checkChanges");
        }
    }

    @Test
    void aThrowingCallbackIsReportedAndDeliveryGoesOn() {
        try (MemoryWatcher w = new MemoryWatcher(Backend.PROTECT)) {
            ByteBuffer buf = MemoryWatcher.allocatePageAligned(16);
            int id = w.watch(buf, "buf");
            List<Throwable> reported = new CopyOnWriteArrayList<>();
            List<ChangeEvent> seen = new CopyOnWriteArrayList<>();
            RuntimeException boom = new IllegalStateException("boom from the callback");
            w.setCallbackErrorHandler(reported::add);
            w.setCallback(e -> {
                seen.add(e);
                if (seen.size() == 1) {
                    throw boom;
                }
            });
            buf.put(1, (byte) 1);
            w.checkChanges();
            buf.put(2, (byte) 2);
            w.checkChanges();
            assertEquals(2, seen.size());
            assertOneByteEvent(seen.get(1), id, "buf", 2, new byte[] {0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
                    new byte[] {0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
            assertEquals(1, reported.size());
            assertSame(boom, reported.get(0));
            assertEquals(1, w.getStats().getCallbackErrors());
        }
    }

    @Test
    void anErrorThrownByTheCallbackIsCountedToo() {
        try (MemoryWatcher w = new MemoryWatcher(Backend.POLL)) {
            byte[] a = new byte[4];
            w.watch(a, "a");
            AtomicInteger calls = new AtomicInteger();
            w.setCallbackErrorHandler(t -> { });
            w.setCallback(e -> {
                calls.incrementAndGet();
                throw new AssertionError("an Error, not an Exception");
            });
            a[0] = 1;
            w.checkChanges();
            a[1] = 1;
            w.checkChanges();
            assertEquals(2, calls.get());
            assertEquals(2, w.getStats().getCallbackErrors());
        }
    }

    @Test
    void closeWhileTheCallbackRunsWaitsForItAndStopsDelivery() throws Exception {
        MemoryWatcher w = new MemoryWatcher(Backend.PROTECT);
        ByteBuffer buf = MemoryWatcher.allocatePageAligned(16);
        w.watch(buf, "buf");
        CountDownLatch entered = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        AtomicInteger calls = new AtomicInteger();
        AtomicInteger afterClose = new AtomicInteger();
        w.setCallback(e -> {
            if (w.isClosed()) {
                afterClose.incrementAndGet();
            }
            calls.incrementAndGet();
            entered.countDown();
            try {
                release.await(30, TimeUnit.SECONDS);
            } catch (InterruptedException ie) {
                Thread.currentThread().interrupt();
            }
        });
        buf.put(0, (byte) 1);
        Thread checker = new Thread(() -> {
            try {
                w.checkChanges();
            } catch (IllegalStateException closedMeanwhile) {
                // fine: closed while waiting
            }
        });
        checker.start();
        assertTrue(entered.await(30, TimeUnit.SECONDS), "callback started");
        buf.put(1, (byte) 1); // a second change that must never be delivered
        Thread closer = new Thread(w::close, "closer");
        closer.start();
        closer.join(300);
        assertTrue(closer.isAlive(), "close() waits for the running callback");
        assertTrue(w.isClosed());
        release.countDown();
        closer.join(30_000);
        assertFalse(closer.isAlive(), "close() returned after the callback");
        checker.join(30_000);
        assertFalse(checker.isAlive(), "a checkChanges waiting for delivery returns on close");
        assertEquals(1, calls.get(), "nothing delivered after close");
        assertEquals(0, afterClose.get());
        assertThrows(IllegalStateException.class, w::checkChanges);
        w.close(); // idempotent
    }

    @Test
    void closeFromInsideTheCallback() throws Exception {
        MemoryWatcher w = new MemoryWatcher(Backend.PROTECT);
        ByteBuffer buf = MemoryWatcher.allocatePageAligned(16);
        w.watch(buf, "buf");
        AtomicReference<Throwable> failure = new AtomicReference<>();
        CountDownLatch closed = new CountDownLatch(1);
        AtomicInteger calls = new AtomicInteger();
        w.setCallback(e -> {
            calls.incrementAndGet();
            try {
                w.close();
                closed.countDown();
            } catch (Throwable t) {
                failure.set(t);
            }
        });
        buf.put(0, (byte) 1);
        w.checkChanges();
        assertTrue(closed.await(30, TimeUnit.SECONDS), "close() inside the callback returned");
        assertNull(failure.get());
        assertTrue(w.isClosed());
        assertEquals(1, calls.get());
        assertThrows(IllegalStateException.class, () -> w.watch(buf, "again"));
    }

    @Test
    void checkChangesInsideTheCallbackReturnsTheEventsInsteadOfWaiting() {
        try (MemoryWatcher w = new MemoryWatcher(Backend.POLL)) {
            byte[] a = new byte[4];
            byte[] b = new byte[4];
            int ia = w.watch(a, "a");
            int ib = w.watch(b, "b");
            List<ChangeEvent> delivered = new CopyOnWriteArrayList<>();
            List<ChangeEvent> fromInside = new CopyOnWriteArrayList<>();
            w.setCallback(e -> {
                delivered.add(e);
                if (e.getRegionId() == ia) {
                    b[3] = 5; // changed while the callback runs
                    fromInside.addAll(w.checkChanges());
                }
            });
            a[0] = 1;
            w.checkChanges();
            assertEquals(List.of(), w.checkChanges()); // everything pending is delivered by now
            // The change made inside the callback is reported exactly once:
            // returned by the inner checkChanges(), or, when the background
            // poll saw it first, delivered to the callback.
            List<ChangeEvent> forA = delivered.stream().filter(e -> e.getRegionId() == ia).toList();
            List<ChangeEvent> forB = new java.util.ArrayList<>(fromInside);
            delivered.stream().filter(e -> e.getRegionId() == ib).forEach(forB::add);
            assertEquals(1, forA.size());
            assertEquals(1, forB.size(), "b's change reported exactly once");
            assertOneByteEvent(forB.get(0), ib, "b", 3, new byte[4], new byte[] {0, 0, 0, 5});
            assertEquals(1 + (fromInside.isEmpty() ? 1 : 0), delivered.size(),
                    "an event returned inside the callback is not delivered again");
        }
    }

    @Test
    void clearingTheCallbackSendsEventsBackToCheckChanges() {
        try (MemoryWatcher w = new MemoryWatcher(Backend.PROTECT)) {
            ByteBuffer buf = MemoryWatcher.allocatePageAligned(8);
            int id = w.watch(buf, "buf");
            List<ChangeEvent> seen = new CopyOnWriteArrayList<>();
            w.setCallback(seen::add);
            buf.put(0, (byte) 1);
            w.checkChanges();
            assertEquals(1, seen.size());
            w.setCallback(null);
            buf.put(1, (byte) 2);
            List<ChangeEvent> events = w.checkChanges();
            assertEquals(1, events.size());
            assertOneByteEvent(events.get(0), id, "buf", 1, new byte[] {1, 0, 0, 0, 0, 0, 0, 0},
                    new byte[] {1, 2, 0, 0, 0, 0, 0, 0});
            assertEquals(1, seen.size());
        }
    }

    @Test
    void callbacksOfOneWatcherNeverOverlap() {
        try (MemoryWatcher w = new MemoryWatcher(Backend.PROTECT)) {
            ByteBuffer buf = MemoryWatcher.allocatePageAligned(MemoryWatcher.pageSize());
            byte[] array = new byte[64];
            for (int i = 0; i < 8; i++) {
                w.watch(buf.slice(i * 16, 16), "d" + i);
                w.watch(array, i * 8, 8, "a" + i, null);
            }
            AtomicInteger inside = new AtomicInteger();
            AtomicInteger maxInside = new AtomicInteger();
            AtomicInteger count = new AtomicInteger();
            w.setCallback(e -> {
                int now = inside.incrementAndGet();
                maxInside.accumulateAndGet(now, Math::max);
                Thread.onSpinWait();
                count.incrementAndGet();
                inside.decrementAndGet();
            });
            for (int round = 1; round <= 20; round++) {
                for (int i = 0; i < 8; i++) {
                    buf.put(i * 16, (byte) round);
                    array[i * 8] = (byte) round;
                }
                w.checkChanges();
            }
            assertEquals(20 * 16, count.get());
            assertEquals(1, maxInside.get());
        }
    }
}
