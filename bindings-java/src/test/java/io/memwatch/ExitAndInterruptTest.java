package io.memwatch;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Pending changes reach the callback at JVM exit; Thread.interrupt() ends a checkChanges() wait. */
@Timeout(120)
class ExitAndInterruptTest {
    @Test
    void pendingChangesAreDeliveredToTheCallbackAtExit() throws Exception {
        Process p = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path"), ExitProbe.class.getName())
                .redirectError(ProcessBuilder.Redirect.INHERIT).start();
        byte[] out = p.getInputStream().readAllBytes();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "the child exits");
        assertEquals(0, p.exitValue(), "exit code");
        assertEquals("event data 0000ab0000000000\n", new String(out, StandardCharsets.UTF_8));
    }

    @Test
    void interruptEndsTheWaitForASlowCallbackAndNoEventIsLost() throws Exception {
        WatcherOptions options = new WatcherOptions().backend(Backend.POLL).pollInterval(Duration.ofMinutes(1));
        try (MemoryWatcher w = new MemoryWatcher(options)) {
            ByteBuffer buf = MemoryWatcher.allocatePageAligned(8);
            w.watch(buf, "slow");
            CountDownLatch release = new CountDownLatch(1);
            List<ChangeEvent> seen = new CopyOnWriteArrayList<>();
            w.setCallback(e -> {
                try {
                    release.await();
                } catch (InterruptedException ie) {
                    Thread.currentThread().interrupt();
                }
                seen.add(e);
            });
            buf.put(2, (byte) 7);
            AtomicReference<Throwable> thrown = new AtomicReference<>();
            AtomicReference<Boolean> stillInterrupted = new AtomicReference<>();
            Thread caller = new Thread(() -> {
                try {
                    w.checkChanges();
                } catch (Throwable t) {
                    thrown.set(t);
                }
                stillInterrupted.set(Thread.currentThread().isInterrupted());
            });
            caller.start();
            Thread.sleep(100); // the caller is now waiting for the blocked callback
            long start = System.nanoTime();
            caller.interrupt();
            caller.join(5000);
            long tookMs = (System.nanoTime() - start) / 1_000_000;
            assertTrue(!caller.isAlive() && tookMs < 2000, "interrupt ended the wait after " + tookMs + " ms");
            CancellationException e = assertInstanceOf(CancellationException.class, thrown.get());
            assertInstanceOf(InterruptedException.class, e.getCause());
            assertEquals(Boolean.TRUE, stillInterrupted.get(), "the interrupt status stays set");
            assertEquals(0, seen.size(), "the callback is still blocked");
            release.countDown();
            assertEquals(List.of(), w.checkChanges());
            assertEquals(1, seen.size(), "the event given up on was delivered once");
            assertEquals("slow", seen.get(0).getVariableName());
            assertArrayEquals(new byte[] {0, 0, 7, 0, 0, 0, 0, 0}, seen.get(0).getNewValue());
            assertArrayEquals(new byte[8], seen.get(0).getOldValue());
        }
    }

    @Test
    void withoutACallbackAnInterruptedThreadStillGetsItsEvents() {
        WatcherOptions options = new WatcherOptions().backend(Backend.POLL).pollInterval(Duration.ofMinutes(1));
        try (MemoryWatcher w = new MemoryWatcher(options)) {
            ByteBuffer buf = MemoryWatcher.allocatePageAligned(8);
            w.watch(buf, "plain");
            buf.put(1, (byte) 3);
            Thread.currentThread().interrupt();
            try {
                List<ChangeEvent> events = w.checkChanges(); // no wait, so nothing to interrupt
                assertEquals(1, events.size());
                assertEquals(1, events.get(0).getCoalesced());
                assertArrayEquals(new byte[] {0, 3, 0, 0, 0, 0, 0, 0}, events.get(0).getNewValue());
            } finally {
                assertTrue(Thread.interrupted(), "the interrupt status is left alone");
            }
            w.close();
            assertThrows(IllegalStateException.class, w::checkChanges);
        }
    }
}
