package io.memwatch;

import static io.memwatch.TestSupport.assertOneByteEvent;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** The rest of the public API: addresses, statistics, options, event fields. */
class ApiTest {
    @ParameterizedTest
    @EnumSource(value = Backend.class, names = {"PROTECT", "WRITEWATCH", "POLL"})
    void rawAddressWatch(Backend backend) {
        try (MemoryWatcher w = TestBackends.open(backend)) {
            ByteBuffer buf = MemoryWatcher.allocatePageAligned(128);
            long addr = MemoryWatcher.addressOf(buf);
            assertEquals(0, addr % MemoryWatcher.pageSize(), "page aligned");
            int id = w.watch(addr + 64, 16, "raw", "addr");
            buf.put(70, (byte) 0x11);
            buf.put(10, (byte) 0x22); // outside the region
            List<ChangeEvent> events = w.checkChanges();
            assertEquals(1, events.size());
            byte[] now = new byte[16];
            now[6] = 0x11;
            assertOneByteEvent(events.get(0), id, "raw", 6, new byte[16], now);
            assertEquals("addr", events.get(0).getMetadata());
            assertEquals(16, events.get(0).getHowBig());
            assertTrue(w.unwatch(id));
            assertFalse(w.unwatch(id));
        }
    }

    @Test
    void aDirectBufferIsWatchedBetweenPositionAndLimit() {
        try (MemoryWatcher w = new MemoryWatcher(Backend.PROTECT)) {
            ByteBuffer buf = MemoryWatcher.allocatePageAligned(64);
            buf.position(8).limit(24);
            int id = w.watch(buf, "window");
            buf.put(7, (byte) 1);   // before the position
            buf.put(24 - 1, (byte) 2);
            buf.limit(64).put(30, (byte) 3); // after the old limit
            List<ChangeEvent> events = w.checkChanges();
            assertEquals(1, events.size(), events.toString());
            byte[] now = new byte[16];
            now[15] = 2;
            assertOneByteEvent(events.get(0), id, "window", 15, new byte[16], now);
            assertEquals(16, events.get(0).getHowBig());
        }
    }

    @Test
    void defaultWatcherPicksTheBestBackendAndSaysWhich() {
        try (MemoryWatcher w = new MemoryWatcher()) {
            Stats s = w.getStats();
            assertTrue(s.getBackend() == Backend.WRITEWATCH || s.getBackend() == Backend.PROTECT, s.toString());
            if (s.getBackend() == Backend.PROTECT) {
                assertFalse(s.getBackendReason().isEmpty(), "auto says why writewatch was not used");
            }
            assertEquals(Backend.AUTO, w.getOptions().getBackend());
        }
    }

    @Test
    void statsCountRegionsEventsAndMirrorMemory() {
        try (MemoryWatcher w = new MemoryWatcher(Backend.PROTECT)) {
            Stats empty = w.getStats();
            assertEquals(0, empty.getRegions());
            assertEquals(0, empty.getEvents());
            ByteBuffer buf = MemoryWatcher.allocatePageAligned(64);
            byte[] array = new byte[3 * MemoryWatcher.pageSize()];
            w.watch(buf, "buf");
            int a1 = w.watch(array, 0, 8, "a1", null);
            int a2 = w.watch(array, 8, 8, "a2", null);
            Stats s = w.getStats();
            assertEquals(3, s.getRegions());
            // One mirror for the array (3 pages), shared by both of its regions.
            assertTrue(s.getNativeBytes() >= 3L * MemoryWatcher.pageSize() + 64 + 16, s.toString());
            buf.put(0, (byte) 1);
            array[9] = 1;
            assertEquals(2, w.checkChanges().size());
            s = w.getStats();
            assertEquals(2, s.getEvents());
            assertEquals(0, s.getPendingEvents());
            assertEquals(0, s.getCallbackErrors());
            assertTrue(w.unwatch(a1));
            assertTrue(w.unwatch(a2));
            Stats after = w.getStats();
            assertEquals(1, after.getRegions());
            assertTrue(after.getNativeBytes() < 3L * MemoryWatcher.pageSize(), "mirror freed: " + after);
        }
    }

    @Test
    void snapshotsOffAndSmallPreviews() {
        try (MemoryWatcher w = new MemoryWatcher(new WatcherOptions().backend(Backend.POLL).snapshots(false)
                .previewBytes(2))) {
            byte[] array = new byte[8];
            int id = w.watch(array, "nosnap");
            array[5] = 9;
            List<ChangeEvent> events = w.checkChanges();
            assertEquals(1, events.size());
            ChangeEvent e = events.get(0);
            assertEquals(id, e.getRegionId());
            assertNull(e.getOldValue(), "no old value without snapshots");
            assertEquals(0, e.getOldPreview().length);
            assertEquals(2, e.getNewPreview().length);
            assertEquals(ByteBuffer.wrap(new byte[] {0, 0, 0, 0, 0, 9, 0, 0}), ByteBuffer.wrap(e.getNewValue()));
            assertEquals(List.of(new ByteRange(0, 8)), e.getChangedRanges(), "one range covering the region");
        }
    }

    @Test
    void eventGettersReturnCopies() {
        try (MemoryWatcher w = new MemoryWatcher(Backend.POLL)) {
            byte[] array = new byte[4];
            w.watch(array, "copy");
            array[0] = 1;
            ChangeEvent e = w.checkChanges().get(0);
            e.getNewValue()[0] = 42;
            e.getOldPreview()[0] = 42;
            assertEquals(1, e.getNewValue()[0]);
            assertEquals(0, e.getOldPreview()[0]);
            assertTrue(e.getTimestampNs() > 0);
            assertTrue(e.getSeq() > 0);
            assertEquals("", e.getFile());
            assertEquals("", e.getFunction());
            assertEquals(0, e.getLine());
            assertNull(e.getStorageKeyOld());
            assertNull(e.getStorageKeyNew());
            assertFalse(e.getThreadId().isPresent());
            assertFalse(e.getFaultIp().isPresent());
        }
    }

    @Test
    void protectEventsNameTheWriterThread() throws Exception {
        try (MemoryWatcher w = new MemoryWatcher(Backend.PROTECT)) {
            ByteBuffer buf = MemoryWatcher.allocatePageAligned(16);
            w.watch(buf, "tid");
            int[] tid = new int[1];
            Thread writer = new Thread(() -> {
                tid[0] = TestSupport.currentTid();
                buf.put(3, (byte) 3);
            });
            writer.start();
            writer.join();
            ChangeEvent e = w.checkChanges().get(0);
            assertEquals(tid[0], e.getThreadId().getAsInt());
            assertTrue(e.getFaultIp().isPresent());
        }
    }

    @Test
    void unwatchedBufferMayBeDroppedAndCollected() {
        try (MemoryWatcher w = new MemoryWatcher(Backend.PROTECT)) {
            for (int i = 0; i < 50; i++) {
                ByteBuffer b = MemoryWatcher.allocatePageAligned(4096);
                int id = w.watch(b, "tmp" + i);
                b.put(0, (byte) 1);
                assertEquals(1, w.checkChanges().size());
                assertTrue(w.unwatch(id));
            }
            System.gc();
            assertEquals(0, w.getStats().getRegions());
        }
    }
}
