package io.memwatch;

import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.HexFormat;

/** Child-JVM program for {@link ExitAndInterruptTest}: a callback, a write, and main returns. */
public final class ExitProbe {
    private ExitProbe() {
    }

    /**
     * Watches 8 bytes with a callback that prints each event, writes one byte and returns
     * without checkChanges() or close(): only the exit hook can deliver the change.
     *
     * @param args ignored
     */
    public static void main(String[] args) {
        // Poll with a minute's interval: nothing but the exit hook detects the write.
        MemoryWatcher w = new MemoryWatcher(new WatcherOptions().backend(Backend.POLL).pollInterval(Duration.ofMinutes(1)));
        ByteBuffer data = MemoryWatcher.allocatePageAligned(8);
        w.watch(data, "data");
        w.setCallback(e -> System.out.println("event " + e.getVariableName() + " " + HexFormat.of().formatHex(e.getNewValue())));
        data.put(2, (byte) 0xab);
    }
}
