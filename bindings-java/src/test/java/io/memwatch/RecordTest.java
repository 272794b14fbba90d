package io.memwatch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** MemoryWatcher.recordTo: events recorded into SQLite, read back by the sqlite3 shell. */
class RecordTest {
    @TempDir
    Path dir;

    /** Lines of `sqlite3 db sql` (list mode, '|' between columns). */
    static List<String> query(Path db, String sql) throws IOException, InterruptedException {
        ProcessBuilder pb = new ProcessBuilder("sqlite3", db.toString(), sql);
        // The libjsig run preloads the JVM's signal library: not for sqlite3.
        pb.environment().remove("LD_PRELOAD");
        Process p = pb.start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        String err = new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
        assertEquals(0, p.waitFor(), err);
        return out.isEmpty() ? List.of() : Arrays.asList(out.split("\n"));
    }

    static String hex(String s) {
        return HexFormat.of().withUpperCase().formatHex(s.getBytes(StandardCharsets.UTF_8));
    }

    @Test
    void directBufferAndByteArrayEventsAreRecordedWithExactBytes() throws Exception {
        Path db = dir.resolve("events.db");
        try (MemoryWatcher w = new MemoryWatcher(Backend.POLL)) {
            ByteBuffer buf = MemoryWatcher.allocatePageAligned(4);
            buf.put(0, (byte) 'a').put(1, (byte) 'b').put(2, (byte) 'c').put(3, (byte) 'd');
            w.watch(buf, "direct");
            byte[] arr = new byte[3];
            w.watch(arr, "array");
            Recorder rec = w.recordTo(db.toString());
            buf.put(1, (byte) 'X');
            assertEquals(1, w.checkChanges().size());
            arr[2] = 9;
            assertEquals(1, w.checkChanges().size());
            assertTrue(rec.flush(Duration.ofSeconds(10)));
            RecorderStats s = rec.stats();
            assertEquals(2, s.written());
            assertEquals(0, s.dropped());
            assertEquals(0, s.queued());
            assertTrue(s.connected());
            assertEquals(
                    List.of("direct|61626364|61586364|[[1,1]]|4", "array|000000|000009|[[2,1]]|4"),
                    query(db, "SELECT variable_name, hex(old_value), hex(new_value), changed_ranges, adapter"
                            + " FROM memwatch_events ORDER BY seq"));
            assertEquals(List.of(Long.toString(ProcessHandle.current().pid())),
                    query(db, "SELECT pid FROM memwatch_recordings WHERE recording_id = " + s.recordingId()));
            rec.close();
            rec.close();
        }
    }

    @Test
    void hostileNamesAreStoredByteExact() throws Exception {
        Path db = dir.resolve("hostile.db");
        String[] names = {"it's \"q\"", "x'); DROP TABLE memwatch_events; --", "ünï\uDBFF\uDFFF", "nul\0inside"};
        try (MemoryWatcher w = new MemoryWatcher(Backend.POLL)) {
            List<ByteBuffer> bufs = new ArrayList<>();
            for (String n : names) {
                ByteBuffer b = ByteBuffer.allocateDirect(4);
                bufs.add(b);
                w.watch(b, n, "m:" + n);
            }
            try (Recorder rec = w.recordTo("sqlite:" + db)) {
                for (ByteBuffer b : bufs) {
                    b.put(0, (byte) 0x7f);
                }
                assertEquals(names.length, w.checkChanges().size());
                assertTrue(rec.flush(Duration.ofSeconds(10)));
            }
        }
        List<String> got = new ArrayList<>(query(db,
                "SELECT hex(variable_name_bytes) || '|' || hex(metadata_bytes) || '|' || hex(new_value)"
                        + " FROM memwatch_events"));
        List<String> want = new ArrayList<>();
        for (String n : names) {
            want.add(hex(n) + "|" + hex("m:" + n) + "|7F000000");
        }
        got.sort(null);
        want.sort(null);
        assertEquals(want, got);
    }

    @Test
    void badUrlsAndUnreachableDatabasesThrow() {
        MemoryWatcher w = new MemoryWatcher(Backend.POLL);
        for (String bad : new String[] {"", "mysql://localhost/x", "http://example.invalid/"}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> w.recordTo(bad));
            assertTrue(e.getMessage().contains("URL"), e.getMessage());
        }
        assertThrows(IllegalArgumentException.class, () -> w.recordTo(null));
        MemWatchException e = assertThrows(MemWatchException.class,
                () -> w.recordTo("/nonexistent-memwatch-dir/x/events.db"));
        assertTrue(e.getMessage().contains("nonexistent"), e.getMessage());
        e = assertThrows(MemWatchException.class, () -> w.recordTo("postgresql://memwatch@127.0.0.1:1/memwatch"));
        assertTrue(e.getMessage().contains("PostgreSQL"), e.getMessage());
        Recorder rec = w.recordTo(dir.resolve("ok.db").toString());
        assertThrows(IllegalArgumentException.class, () -> rec.flush(Duration.ofSeconds(-1)));
        assertThrows(IllegalArgumentException.class, () -> rec.flush(null));
        w.close();
        assertThrows(IllegalStateException.class, () -> w.recordTo(dir.resolve("late.db").toString()));
    }

    @Test
    void closingTheWatcherEndsTheRecordingAfterWritingItsQueue() throws Exception {
        Path db = dir.resolve("close.db");
        MemoryWatcher w = new MemoryWatcher(Backend.POLL);
        ByteBuffer buf = ByteBuffer.allocateDirect(8);
        w.watch(buf, "b");
        Recorder rec = w.recordTo(db.toString());
        for (int i = 1; i <= 50; i++) {
            buf.put(0, (byte) i);
            assertEquals(1, w.checkChanges().size());
        }
        w.close();
        RecorderStats s = rec.stats();
        assertEquals(50, s.written());
        assertEquals(0, s.queued());
        assertEquals(List.of("50"), query(db, "SELECT count(*) FROM memwatch_events"));
        assertTrue(Files.size(db) > 0);
    }
}
