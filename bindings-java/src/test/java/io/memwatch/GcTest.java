package io.memwatch;

import static io.memwatch.TestSupport.assertOneByteEvent;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** Garbage collections move byte[] arrays and free unreachable buffers: watching must not care. */
class GcTest {
    @ParameterizedTest
    @EnumSource(value = Backend.class, names = {"PROTECT", "WRITEWATCH", "POLL"})
    void systemGcAndAllocationPressureWhileWatching(Backend backend) {
        try (MemoryWatcher w = TestBackends.open(backend)) {
            byte[] array = new byte[1000];
            ByteBuffer direct = MemoryWatcher.allocatePageAligned(200);
            int arrayId = w.watch(array, "array");
            // A buffer the test drops: the watcher must keep it (and its memory) alive.
            int droppedId = w.watch(MemoryWatcher.allocatePageAligned(64), "dropped");
            int directId = w.watch(direct, "direct");
            byte[] arrayExpected = new byte[1000];
            byte[] directExpected = new byte[200];
            List<byte[]> survivors = new ArrayList<>();
            long sink = 0;
            for (int round = 0; round < 25; round++) {
                // About 20 MB of garbage per round, some of it kept so it is promoted and old
                // regions get compacted too.
                for (int k = 0; k < 2000; k++) {
                    byte[] g = new byte[10_000];
                    g[k % 10_000] = (byte) k;
                    sink += g[0];
                    if (k % 200 == 0) {
                        survivors.add(g);
                    }
                }
                if (survivors.size() > 100) {
                    survivors.subList(0, 50).clear();
                }
                System.gc();
                byte[] arrayOld = arrayExpected.clone();
                byte[] directOld = directExpected.clone();
                arrayExpected[round * 7] = (byte) (round + 1);
                directExpected[round * 3] = (byte) (round + 1);
                array[round * 7] = (byte) (round + 1);
                direct.put(round * 3, (byte) (round + 1));
                System.gc();
                List<ChangeEvent> events = w.checkChanges();
                assertEquals(2, events.size(), "round " + round + ": " + events);
                Map<Integer, ChangeEvent> byId = new HashMap<>();
                events.forEach(e -> byId.put(e.getRegionId(), e));
                assertOneByteEvent(byId.get(arrayId), arrayId, "array", round * 7, arrayOld, arrayExpected.clone());
                assertOneByteEvent(byId.get(directId), directId, "direct", round * 3, directOld, directExpected.clone());
            }
            assertEquals(3, w.getStats().getRegions());
            assertEquals(true, w.unwatch(droppedId));
            assertEquals(2, w.getStats().getRegions());
            assertEquals(0, sink);
        }
    }
}
