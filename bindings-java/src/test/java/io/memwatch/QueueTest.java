package io.memwatch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.locks.LockSupport;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The queue of a watcher nobody drains stays bounded by merging changes, losing none. */
@Timeout(120)
class QueueTest {
    private static long u64(byte[] b) {
        return ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
    }

    @Test
    void anUndrainedQueueMergesLaterChangesIntoACoalescedEvent() {
        WatcherOptions options = new WatcherOptions().backend(Backend.POLL).pollInterval(Duration.ofMillis(1));
        try (MemoryWatcher w = new MemoryWatcher(options)) {
            ByteBuffer buf = MemoryWatcher.allocatePageAligned(8).order(ByteOrder.LITTLE_ENDIAN);
            w.watch(buf, "counter");
            long i = 0;
            while (w.getStats().getCoalescedEvents() < 50) {
                i++;
                buf.putLong(0, i);
                LockSupport.parkNanos(300_000);
                assertTrue(i < 1_000_000, "never coalesced: " + w.getStats());
            }
            // The inbox holds 1024; one more may be on its way from the engine's delivery thread.
            long pending = w.getStats().getPendingEvents();
            assertTrue(pending == 1024 || pending == 1025, pending + " pending");
            List<ChangeEvent> events = w.checkChanges();
            assertTrue(events.size() == 1024 || events.size() == 1025, events.size() + " events");
            assertEquals(0, u64(events.get(0).getOldValue()));
            for (int k = 1; k < events.size(); k++) {
                assertEquals(u64(events.get(k - 1).getNewValue()), u64(events.get(k).getOldValue()),
                        "event " + k + ": its old value is the previous new value");
            }
            assertEquals(i, u64(events.get(events.size() - 1).getNewValue()));
            Stats stats = w.getStats();
            long merged = events.stream().mapToLong(ChangeEvent::getCoalesced).sum();
            assertEquals(stats.getEvents(), merged, "every detected change is in some event");
            assertEquals(stats.getCoalescedEvents(), merged - events.size());
            assertTrue(events.stream().anyMatch(e -> e.getCoalesced() > 1));
            assertTrue(events.subList(0, 1023).stream().allMatch(e -> e.getCoalesced() == 1));
        }
    }
}
