package io.memwatch;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/** Helpers shared by the tests. */
final class TestSupport {
    private TestSupport() {
    }

    /** Kernel thread id of the calling thread (from /proc/thread-self). */
    static int currentTid() {
        try {
            Path link = Files.readSymbolicLink(Path.of("/proc/thread-self"));
            return Integer.parseInt(link.getFileName().toString());
        } catch (IOException e) {
            throw new AssertionError("cannot read /proc/thread-self", e);
        }
    }

    /** Asserts one event for one region with exactly one changed byte. */
    static void assertOneByteEvent(ChangeEvent e, int regionId, String name, int offset, byte[] oldValue,
            byte[] newValue) {
        assertEquals(regionId, e.getRegionId(), "region id");
        assertEquals(name, e.getVariableName(), "variable name");
        assertEquals(List.of(new ByteRange(offset, 1)), e.getChangedRanges(), "changed ranges");
        assertArrayEquals(oldValue, e.getOldValue(), "old value");
        assertArrayEquals(newValue, e.getNewValue(), "new value");
    }

    /** Whether this JVM runs with HotSpot's signal-chaining library preloaded. */
    static boolean jsigPreloaded() {
        String preload = System.getenv("LD_PRELOAD");
        return preload != null && preload.contains("libjsig");
    }
}
