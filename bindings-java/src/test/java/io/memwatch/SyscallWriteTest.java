package io.memwatch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The kernel writes into a direct buffer on FileChannel.read. Under protect the page is
 * read-only to the kernel too, so the read fails with EFAULT ("Bad address"); under poll (and
 * writewatch, where available) the read succeeds and the change is reported.
 */
class SyscallWriteTest {
    @TempDir
    Path dir;

    private Path file() throws IOException {
        Path f = dir.resolve("data.bin");
        Files.write(f, new byte[] {1, 2, 3, 4});
        return f;
    }

    @Test
    void readIntoAProtectedBufferFailsWithBadAddress() throws Exception {
        try (MemoryWatcher w = new MemoryWatcher(Backend.PROTECT);
                FileChannel ch = FileChannel.open(file(), StandardOpenOption.READ)) {
            ByteBuffer buf = MemoryWatcher.allocatePageAligned(16);
            w.watch(buf, "target");
            IOException e = assertThrows(IOException.class, () -> ch.read(buf));
            assertTrue(e.getMessage().contains("Bad address"), e.getMessage());
            assertEquals(List.of(), w.checkChanges());
        }
    }

    @Test
    void readIntoAPolledBufferIsReported() throws Exception {
        for (Backend backend : new Backend[] {Backend.POLL, Backend.WRITEWATCH}) {
            MemoryWatcher w;
            try {
                w = new MemoryWatcher(backend);
            } catch (UnsupportedOperationException unavailable) {
                continue; // writewatch needs Linux 6.7+; poll always runs
            }
            try (w; FileChannel ch = FileChannel.open(file(), StandardOpenOption.READ)) {
                ByteBuffer buf = MemoryWatcher.allocatePageAligned(16);
                int id = w.watch(buf, "target");
                assertEquals(4, ch.read(buf));
                List<ChangeEvent> events = w.checkChanges();
                assertEquals(1, events.size(), backend + ": " + events);
                assertEquals(id, events.get(0).getRegionId());
                assertEquals(List.of(new ByteRange(0, 4)), events.get(0).getChangedRanges());
                byte[] now = new byte[16];
                System.arraycopy(new byte[] {1, 2, 3, 4}, 0, now, 0, 4);
                assertEquals(ByteBuffer.wrap(now), ByteBuffer.wrap(events.get(0).getNewValue()));
            }
        }
    }
}
