package io.memwatch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Bad input gets a clear exception, never a crash, a hang or a silently ignored watch. */
class BadInputTest {
    private static void assertMessage(Throwable t, String part) {
        assertTrue(t.getMessage() != null && t.getMessage().contains(part),
                "message \"" + t.getMessage() + "\" should mention \"" + part + "\"");
    }

    @Test
    void heapByteBufferIsRejectedByThePageBackends() {
        for (Backend b : new Backend[] {Backend.PROTECT, Backend.AUTO}) {
            try (MemoryWatcher w = new MemoryWatcher(b)) {
                IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                        () -> w.watch(ByteBuffer.allocate(64), "heap"));
                assertMessage(e, "heap ByteBuffer");
                assertEquals(0, w.getStats().getRegions());
            }
        }
    }

    @Test
    void heapByteBufferIsPolledByThePollBackend() {
        try (MemoryWatcher w = new MemoryWatcher(Backend.POLL)) {
            ByteBuffer heap = ByteBuffer.allocate(32);
            heap.position(8);
            int id = w.watch(heap, "heap");
            heap.put(10, (byte) 3);
            heap.put(2, (byte) 3); // before the position: not watched
            List<ChangeEvent> events = w.checkChanges();
            assertEquals(1, events.size());
            byte[] now = new byte[24];
            now[2] = 3;
            TestSupport.assertOneByteEvent(events.get(0), id, "heap", 2, new byte[24], now);
        }
    }

    @Test
    void readOnlyBufferIsRejected() {
        try (MemoryWatcher w = new MemoryWatcher(Backend.PROTECT)) {
            ByteBuffer ro = ByteBuffer.allocateDirect(64).asReadOnlyBuffer();
            assertMessage(assertThrows(IllegalArgumentException.class, () -> w.watch(ro, "ro")), "read-only");
            assertMessage(assertThrows(IllegalArgumentException.class,
                    () -> w.watch(ByteBuffer.allocate(8).asReadOnlyBuffer(), "ro")), "read-only");
        }
    }

    @Test
    void nullsAreRejected() {
        try (MemoryWatcher w = new MemoryWatcher(Backend.PROTECT)) {
            assertMessage(assertThrows(IllegalArgumentException.class, () -> w.watch((ByteBuffer) null, "x")), "null");
            assertMessage(assertThrows(IllegalArgumentException.class, () -> w.watch((byte[]) null, "x")), "null");
            assertMessage(assertThrows(IllegalArgumentException.class,
                    () -> w.watch(ByteBuffer.allocateDirect(8), null)), "name");
            assertMessage(assertThrows(IllegalArgumentException.class, () -> w.watch(new byte[8], null)), "name");
            assertMessage(assertThrows(IllegalArgumentException.class, () -> w.watch(0L, 8, "x")), "address");
            assertThrows(IllegalArgumentException.class, () -> new MemoryWatcher((WatcherOptions) null));
            assertEquals(0, w.getStats().getRegions());
        }
    }

    @Test
    void emptyAndOutOfBoundsRangesAreRejected() {
        try (MemoryWatcher w = new MemoryWatcher(Backend.PROTECT)) {
            assertThrows(IllegalArgumentException.class, () -> w.watch(new byte[0], "empty"));
            assertThrows(IllegalArgumentException.class, () -> w.watch(new byte[8], 4, 5, "oob", null));
            assertThrows(IllegalArgumentException.class, () -> w.watch(new byte[8], -1, 2, "neg", null));
            assertThrows(IllegalArgumentException.class, () -> w.watch(new byte[8], 0, 0, "zero", null));
            ByteBuffer d = ByteBuffer.allocateDirect(8);
            d.position(8);
            assertMessage(assertThrows(IllegalArgumentException.class, () -> w.watch(d, "none left")), "nothing");
            long addr = MemoryWatcher.addressOf(MemoryWatcher.allocatePageAligned(8));
            assertThrows(IllegalArgumentException.class, () -> w.watch(addr, 0, "zero"));
            assertThrows(IllegalArgumentException.class, () -> w.watch(addr, -5, "negative"));
            assertEquals(0, w.getStats().getRegions());
        }
    }

    @Test
    void overlappingRegionsAreRejected() {
        try (MemoryWatcher w = new MemoryWatcher(Backend.PROTECT)) {
            ByteBuffer buf = MemoryWatcher.allocatePageAligned(64);
            w.watch(buf.slice(0, 32), "a");
            assertMessage(assertThrows(OverlapException.class, () -> w.watch(buf.slice(16, 32), "b")), "overlap");
            w.watch(buf.slice(32, 32), "c"); // adjacent is fine
            byte[] array = new byte[64];
            w.watch(array, 0, 32, "x", null);
            assertMessage(assertThrows(OverlapException.class, () -> w.watch(array, 31, 2, "y", null)), "overlap");
            w.watch(array, 32, 32, "z", null);
            assertEquals(4, w.getStats().getRegions());
        }
    }

    @Test
    void unmappedAddressIsRejected() {
        try (MemoryWatcher w = new MemoryWatcher(Backend.PROTECT)) {
            // The page right after a mapping of our own is very likely unmapped; page 1 surely is.
            UnmappedException e = assertThrows(UnmappedException.class,
                    () -> w.watch(MemoryWatcher.pageSize(), 16, "low"));
            assertMessage(e, "not mapped");
        }
    }

    @Test
    void readOnlyNativeMemoryIsRejected() throws java.io.IOException {
        java.nio.file.Path file = java.nio.file.Files.createTempFile("memwatch-ro", ".bin");
        try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(file,
                java.nio.file.StandardOpenOption.READ, java.nio.file.StandardOpenOption.WRITE);
                MemoryWatcher w = new MemoryWatcher(Backend.PROTECT)) {
            ch.write(ByteBuffer.allocate(MemoryWatcher.pageSize()));
            ByteBuffer ro = ch.map(java.nio.channels.FileChannel.MapMode.READ_ONLY, 0, MemoryWatcher.pageSize());
            long addr = MemoryWatcher.addressOf(ro);
            assertMessage(assertThrows(ReadOnlyException.class, () -> w.watch(addr, 16, "ro")), "read-only");
            assertEquals(0, w.getStats().getRegions());
        } finally {
            java.nio.file.Files.delete(file);
        }
    }

    @Test
    void eachBadArgumentKindHasItsOwnException() {
        try (MemoryWatcher w = new MemoryWatcher(Backend.PROTECT)) {
            // Checked in Java and in the native library: both throw InvalidArgumentException.
            assertEquals(InvalidArgumentException.class,
                    assertThrows(IllegalArgumentException.class, () -> w.watch(new byte[0], "empty")).getClass());
            assertEquals(InvalidArgumentException.class,
                    assertThrows(IllegalArgumentException.class, () -> w.watch(0L, 8, "x")).getClass());
            assertEquals(InvalidArgumentException.class, assertThrows(IllegalArgumentException.class,
                    () -> new WatcherOptions().ringCapacity(-1)).getClass());
            assertEquals(InvalidArgumentException.class, assertThrows(IllegalArgumentException.class,
                    () -> new MemoryWatcher(new WatcherOptions().ringCapacity(0))).getClass());
        }
    }

    @Test
    void closedWatcherThrowsIllegalState() {
        MemoryWatcher w = new MemoryWatcher(Backend.PROTECT);
        ByteBuffer buf = MemoryWatcher.allocatePageAligned(16);
        int id = w.watch(buf, "buf");
        w.close();
        assertTrue(w.isClosed());
        assertMessage(assertThrows(IllegalStateException.class, () -> w.watch(buf, "again")), "closed");
        assertThrows(IllegalStateException.class, () -> w.watch(new byte[4], "a"));
        assertThrows(IllegalStateException.class, () -> w.watch(MemoryWatcher.addressOf(buf), 4, "a"));
        assertThrows(IllegalStateException.class, () -> w.unwatch(id));
        assertThrows(IllegalStateException.class, w::checkChanges);
        assertThrows(IllegalStateException.class, w::getStats);
        assertThrows(IllegalStateException.class, () -> w.setCallback(e -> { }));
        w.close();
        // The memory is no longer protected: writing it is fine.
        buf.put(0, (byte) 1);
    }

    @Test
    void writewatchWorksOrSaysWhyNot() {
        MemoryWatcher w;
        try {
            w = new MemoryWatcher(Backend.WRITEWATCH);
        } catch (UnsupportedOperationException e) {
            // Kernels before 6.7 (or without userfaultfd for this user) lack it: the reason is given.
            assertFalse(e.getMessage().isEmpty());
            return;
        }
        try (w) {
            assertEquals(Backend.WRITEWATCH, w.getStats().getBackend());
        }
    }

    @Test
    void badOptionsAreRejected() {
        assertThrows(IllegalArgumentException.class, () -> new WatcherOptions().maxValueBytes(-1));
        assertThrows(IllegalArgumentException.class,
                () -> new WatcherOptions().pollInterval(java.time.Duration.ZERO));
        assertThrows(IllegalArgumentException.class,
                () -> new WatcherOptions().writableWindow(java.time.Duration.ofMillis(-1)));
        assertThrows(IllegalArgumentException.class, () -> Backend.fromName("mprotect"));
        assertThrows(IllegalArgumentException.class, () -> MemoryWatcher.addressOf(ByteBuffer.allocate(4)));
        assertThrows(IllegalArgumentException.class, () -> MemoryWatcher.allocatePageAligned(0));
        assertThrows(IllegalArgumentException.class,
                () -> new WatcherOptions().pollInterval(java.time.Duration.ofMillis(-5)));
        assertThrows(IllegalArgumentException.class, () -> new WatcherOptions().ringCapacity(-1));
        // Passes the setter, rejected by the engine's Options::validate().
        IllegalArgumentException zero = assertThrows(IllegalArgumentException.class,
                () -> new MemoryWatcher(new WatcherOptions().writableWindow(java.time.Duration.ZERO)));
        assertTrue(zero.getMessage().contains("writable_window"), zero.getMessage());
        assertThrows(IllegalArgumentException.class,
                () -> new MemoryWatcher(new WatcherOptions().ringCapacity(0)));
    }

    @Test
    void defaultsAreTheEngines() {
        WatcherOptions o = new WatcherOptions();
        assertEquals(Backend.AUTO, o.getBackend());
        assertEquals(java.time.Duration.ofMillis(5), o.getWritableWindow());
        assertEquals(java.time.Duration.ofMillis(100), o.getPollInterval());
        assertEquals(4096, o.getMaxValueBytes());
        assertEquals(256, o.getPreviewBytes());
        assertEquals(32_768, o.getRingCapacity());
        assertTrue(o.getSnapshots());
    }
}
